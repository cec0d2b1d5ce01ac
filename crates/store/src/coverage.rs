//! Read queries about what the logs cover, for reports: where and when KMS events were
//! recorded, where they stop, and the trail configuration changes that can explain it.

use crate::db::{Value, params_from_iter};
use granttrail_grants::{Label, Side};

use crate::codes::Code;
use crate::read::StoredEvent;
use crate::records;
use crate::texts;
use crate::write::{EVENT_COLUMNS, event_from_row};
use crate::{Result, Store};

/// KMS events recorded by one account's trail in one region on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    /// `recipientAccountId` (empty when not logged).
    pub account: String,
    /// `awsRegion` (empty when not logged).
    pub region: String,
    /// Days since the epoch (UTC).
    pub day: i64,
    pub events: u64,
}

/// A stretch without any KMS event in one account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub account: String,
    pub region: String,
    /// The last event before the silence and the first after it (seconds since the epoch).
    pub from: i64,
    pub to: i64,
}

/// A time window; either end may be open. `until` is exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    fn clauses(&self, column: &str, args: &mut Vec<Value>) -> String {
        let mut sql = String::new();
        if let Some(t) = self.since {
            args.push(Value::Integer(t));
            sql.push_str(&format!(" AND {column} >= ?{}", args.len()));
        }
        if let Some(t) = self.until {
            args.push(Value::Integer(t));
            sql.push_str(&format!(" AND {column} < ?{}", args.len()));
        }
        sql
    }
}

impl Store {
    /// Every (account, region) pair whose trail recorded a KMS event, at any time.
    pub fn kms_event_sources(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn().prepare(
            "SELECT DISTINCT coalesce(recipient_account_id, ''), coalesce(aws_region, '') FROM events
             WHERE event_source = 'kms.amazonaws.com' ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The keys that KMS events in `window` name (a ReEncrypt's destination key included), or
    /// only `key` when given.
    pub fn kms_keys_in(
        &self,
        window: Window,
        key: Option<&str>,
    ) -> Result<std::collections::BTreeSet<String>> {
        let mut args = Vec::new();
        let mut filter = window.clauses("event_time", &mut args);
        if let Some(key) = key {
            args.push(Value::Text(key.to_string()));
            let n = args.len();
            filter.push_str(&format!(" AND (key_arn = ?{n} OR destination_key_arn = ?{n})"));
        }
        let sql = format!(
            "SELECT key_arn, destination_key_arn FROM events WHERE event_source = 'kms.amazonaws.com'{filter}"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut keys = std::collections::BTreeSet::new();
        while let Some(r) = rows.next()? {
            for k in [r.get::<_, Option<String>>(0)?, r.get(1)?].into_iter().flatten() {
                if key.is_none_or(|wanted| wanted == k) && !keys.contains(&k) {
                    keys.insert(k);
                }
            }
        }
        Ok(keys)
    }

    /// KMS events per account, region and UTC day within `window`.
    pub fn kms_events_per_day(&self, window: Window) -> Result<Vec<DayCount>> {
        let mut args = Vec::new();
        let filter = window.clauses("event_time", &mut args);
        let sql = format!(
            "SELECT coalesce(recipient_account_id, ''), coalesce(aws_region, ''), event_time / 86400, count(*)
             FROM events WHERE event_source = 'kms.amazonaws.com'{filter}
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            let n: i64 = r.get(3)?;
            Ok(DayCount { account: r.get(0)?, region: r.get(1)?, day: r.get(2)?, events: n as u64 })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stretches longer than `min_seconds` between consecutive KMS events of one account and
    /// region, within `window`.
    pub fn kms_silences(&self, window: Window, min_seconds: i64) -> Result<Vec<Silence>> {
        let mut args = vec![Value::Integer(min_seconds)];
        let filter = window.clauses("event_time", &mut args);
        let sql = format!(
            "SELECT account, region, previous, event_time FROM (
                SELECT coalesce(recipient_account_id, '') AS account, coalesce(aws_region, '') AS region, event_time,
                       lag(event_time) OVER (PARTITION BY recipient_account_id, aws_region ORDER BY event_time) AS previous
                FROM events WHERE event_source = 'kms.amazonaws.com'{filter}) AS spans
             WHERE previous IS NOT NULL AND event_time - previous > ?1
             ORDER BY account, region, previous"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(Silence { account: r.get(0)?, region: r.get(1)?, from: r.get(2)?, to: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The first and last KMS event time within `window`, if any.
    pub fn kms_event_span(&self, window: Window) -> Result<Option<(i64, i64)>> {
        let mut args = Vec::new();
        let filter = window.clauses("event_time", &mut args);
        let sql = format!(
            "SELECT min(event_time), max(event_time) FROM events WHERE event_source = 'kms.amazonaws.com'{filter}"
        );
        let span: (Option<i64>, Option<i64>) =
            self.conn().query_row(&sql, params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(match span {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        })
    }

    /// Every stored trail configuration change (`PutEventSelectors`, `PutInsightSelectors`)
    /// with its whole record, in time order.
    pub fn trail_selector_changes(&self) -> Result<Vec<(StoredEvent, String)>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, o.source, b.dictionary, b.records, r.record_slot FROM events e
             JOIN objects o ON o.id = e.object_id
             JOIN (SELECT id AS row_id, record_block, record_slot FROM event_rows) r ON r.row_id = e.id
             JOIN record_blocks b ON b.id = r.record_block
             WHERE e.event_source = 'cloudtrail.amazonaws.com' ORDER BY e.event_time, e.event_id"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map([], |r| {
            let object: String = r.get(25)?;
            let dictionary: i64 = r.get(26)?;
            let frame: Vec<u8> = r.get(27)?;
            let slot: i64 = r.get(28)?;
            Ok(event_from_row(r)?.map(|event| (StoredEvent { event, object }, dictionary, frame, slot)))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (stored, dictionary, frame, slot) = row??;
            let record = records::decompress(self.conn(), &stored.event.event_id, dictionary, &frame, slot)?;
            out.push((stored, record));
        }
        Ok(out)
    }
}

/// One use of one grant: a labelled call side that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUseRow {
    pub key_arn: String,
    pub grant_id: String,
    pub event_id: String,
    pub side: Side,
    pub event_time: i64,
    pub label: Label,
}

impl Store {
    /// Every labelled call side that named a grant, within `window` and (when given) on one
    /// key, in time order. Calls that named no grant are left out, so this stays small where
    /// [`Store::calls`] would read every call.
    pub fn grant_uses_in(&self, window: Window, key_arn: Option<&str>) -> Result<Vec<GrantUseRow>> {
        let mut args = Vec::new();
        let mut filter = window.clauses("c.event_time", &mut args);
        if let Some(key) = key_arn {
            args.push(Value::Text(key.to_string()));
            filter.push_str(&format!(" AND c.key = {}", texts::id_of(&format!("?{}", args.len()))));
        }
        let sql = format!(
            "SELECT k.text, g.text, e.event_id, c.side, c.event_time, c.label
             FROM grant_list_members m JOIN call_labels c ON c.grant_ids = m.list
             JOIN texts g ON g.id = m.grant_ref JOIN texts k ON k.id = c.key JOIN event_rows e ON e.id = c.event
             WHERE c.grant_ids <> 0{filter} ORDER BY c.event_time, e.event_id, c.side, g.text, k.text"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(GrantUseRow {
                key_arn: r.get(0)?,
                grant_id: r.get(1)?,
                event_id: r.get(2)?,
                side: r.get::<_, Code<Side>>(3)?.0,
                event_time: r.get(4)?,
                label: r.get::<_, Code<Label>>(5)?.0,
            })
        })?;
        Ok(rows.collect::<crate::db::Result<_>>()?)
    }
}
