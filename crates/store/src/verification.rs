//! What `granttrail verify` found, kept so that every answer can say whether the events behind
//! it come from log files CloudTrail vouches for.

use crate::db::{OptionalExtension, params};
use granttrail_grants::integrity::{FileVerdict, LogVerdict, MissingLogFile, file_name};

use crate::codes::{Code, Coded};
use crate::{Result, Store};

impl Coded for LogVerdict {
    const COLUMN: &'static str = "verified_log_files.verdict";
    const ALL: &'static [LogVerdict] = &LogVerdict::ALL;
    fn code(self) -> i64 {
        match self {
            LogVerdict::Verified => 0,
            LogVerdict::Altered => 1,
            LogVerdict::Unlisted => 2,
            LogVerdict::NotCovered => 3,
        }
    }
}

/// One run of `verify`, to record.
#[derive(Debug, Clone, Copy)]
pub struct VerificationRun<'a> {
    pub files: &'a [FileVerdict],
    pub missing: &'a [MissingLogFile],
    /// Per account and region verified: the summary as JSON.
    pub summaries: &'a [(String, String, String)],
    pub at: i64,
}

/// The latest verification summary of an account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSummary {
    pub account: String,
    pub region: String,
    /// As `verify --format json` prints a summary.
    pub summary: String,
    pub verified_at: i64,
}

impl Store {
    /// Records a verification in one transaction. A file's latest verdict replaces an earlier
    /// one; the missing files of each account and region verified are replaced by this run's,
    /// and a file found since is no longer missing. A long run may be recorded in parts, all
    /// with the same `at`: the files as they are judged, the summaries (which retire what
    /// earlier runs found missing) last.
    pub fn record_verification(&mut self, run: VerificationRun<'_>) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut verdict = tx.prepare_cached(
                "INSERT INTO verified_log_files (file_name, verdict, reason, object, verified_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (file_name) DO UPDATE SET verdict = excluded.verdict, reason = excluded.reason,
                     object = excluded.object, verified_at = excluded.verified_at",
            )?;
            let mut found = tx.prepare_cached("DELETE FROM missing_log_files WHERE file_name = ?1")?;
            for f in run.files {
                verdict.execute(params![f.file_name, Code(f.verdict), f.reason, f.object, f.verified_at])?;
                found.execute([&f.file_name])?;
            }
            let mut summary = tx.prepare_cached(
                "INSERT INTO verification_summaries (account, region, summary, verified_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account, region) DO UPDATE SET summary = excluded.summary,
                     verified_at = excluded.verified_at",
            )?;
            // What an earlier run found missing; a run recorded in parts shares one `at`.
            let mut clear = tx.prepare_cached(
                "DELETE FROM missing_log_files WHERE account = ?1 AND region = ?2 AND verified_at < ?3",
            )?;
            for (account, region, json) in run.summaries {
                summary.execute(params![account, region, json, run.at])?;
                clear.execute(params![account, region, run.at])?;
            }
            let mut missing = tx.prepare_cached(
                "INSERT INTO missing_log_files
                 (file_name, object, account, region, listed_by, period_start, period_end, verified_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (file_name) DO UPDATE SET object = excluded.object, account = excluded.account,
                     region = excluded.region, listed_by = excluded.listed_by,
                     period_start = excluded.period_start, period_end = excluded.period_end,
                     verified_at = excluded.verified_at",
            )?;
            for m in run.missing {
                missing.execute(params![
                    m.file_name,
                    m.object,
                    m.account,
                    m.region,
                    m.listed_by,
                    m.period_start,
                    m.period_end,
                    run.at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The verdict on the log file `object` (a path or `s3://` name) was read from, if it was
    /// verified.
    pub fn log_verdict(&self, object: &str) -> Result<Option<FileVerdict>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT file_name, verdict, reason, object, verified_at FROM verified_log_files WHERE file_name = ?1",
        )?;
        Ok(stmt.query_row([file_name(object)], file_verdict).optional()?)
    }

    /// Has `verify` recorded anything? Answers only say what it found once it has.
    pub fn has_verified_log_files(&self) -> Result<bool> {
        Ok(self.conn.query_row("SELECT EXISTS (SELECT 1 FROM verified_log_files)", [], |r| r.get(0))?)
    }

    /// Every verified file whose verdict is altered or unlisted, by file name.
    pub fn untrusted_log_files(&self) -> Result<Vec<FileVerdict>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT file_name, verdict, reason, object, verified_at FROM verified_log_files
             WHERE verdict IN (?1, ?2) ORDER BY file_name",
        )?;
        let rows =
            stmt.query_map(params![Code(LogVerdict::Altered), Code(LogVerdict::Unlisted)], file_verdict)?;
        Ok(rows.collect::<crate::db::Result<_>>()?)
    }

    /// The log files the latest verifications found missing, by object.
    pub fn missing_log_files(&self) -> Result<Vec<MissingLogFile>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT file_name, object, account, region, listed_by, period_start, period_end
             FROM missing_log_files ORDER BY object",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(MissingLogFile {
                file_name: r.get(0)?,
                object: r.get(1)?,
                account: r.get(2)?,
                region: r.get(3)?,
                listed_by: r.get(4)?,
                period_start: r.get(5)?,
                period_end: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<crate::db::Result<_>>()?)
    }

    /// The latest verification summary of each account and region, in that order.
    pub fn verification_summaries(&self) -> Result<Vec<StoredSummary>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT account, region, summary, verified_at FROM verification_summaries ORDER BY account, region",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredSummary {
                account: r.get(0)?,
                region: r.get(1)?,
                summary: r.get(2)?,
                verified_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<crate::db::Result<_>>()?)
    }
}

fn file_verdict(r: &crate::db::Row<'_>) -> crate::db::Result<FileVerdict> {
    Ok(FileVerdict {
        file_name: r.get(0)?,
        verdict: r.get::<_, Code<LogVerdict>>(1)?.0,
        reason: r.get(2)?,
        object: r.get(3)?,
        verified_at: r.get(4)?,
    })
}
