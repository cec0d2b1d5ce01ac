//! What `granttrail verify` said of the log files events were read from, as answers show it.

use granttrail_store::Store;

/// The verdict shown for an event's log file: `verified`, `altered`, `unlisted`, `not
/// covered`, or `not checked` (verify never saw the file). Nothing at all is shown while verify
/// has recorded nothing, so answers from databases that were never verified do not change.
pub struct LogFiles<'a> {
    store: &'a Store,
    recorded: bool,
}

impl<'a> LogFiles<'a> {
    pub fn new(store: &'a Store) -> anyhow::Result<LogFiles<'a>> {
        Ok(LogFiles { store, recorded: store.has_verified_log_files()? })
    }

    pub fn recorded(&self) -> bool {
        self.recorded
    }

    /// The verdict on `object` (a path or `s3://` name), once verify has recorded anything.
    pub fn of_object(&self, object: &str) -> anyhow::Result<Option<&'static str>> {
        if !self.recorded {
            return Ok(None);
        }
        Ok(Some(self.store.log_verdict(object)?.map_or("not checked", |f| f.verdict.as_str())))
    }

    /// The verdict on the log file event `event_id` was read from.
    pub fn of_event(&self, event_id: &str) -> anyhow::Result<Option<&'static str>> {
        if !self.recorded {
            return Ok(None);
        }
        match self.store.event(event_id)? {
            Some(stored) => self.of_object(&stored.object),
            None => Ok(None),
        }
    }
}
