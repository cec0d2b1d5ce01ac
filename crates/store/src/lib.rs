//! granttrail's SQLite store.
//!
//! Events are the facts; grants are derived from them. Each object is written in one
//! transaction ([`ObjectWriter`]): its events go in with `INSERT OR IGNORE` on `eventID`, and
//! before commit every grant a *new* event touched is recomputed from all stored events of
//! that grant. A full [`Store::rebuild`] runs the same recompute for every grant, so an
//! incremental ingest and a rebuild cannot disagree.
#![forbid(unsafe_code)]

mod read;
mod write;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use read::{GrantFilter, StoredEvent};
pub use write::{ObjectCounts, ObjectWriter};

const SCHEMA_VERSION: i64 = 1;
/// Forward-only migrations; entry `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

/// How long a writer waits for another process's transaction before giving up. Ingest holds
/// its transaction while one object is decoded, which can take seconds for a 50 MB object.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("database schema version {found} is newer than this granttrail understands ({SCHEMA_VERSION})")]
    TooNew { found: i64 },
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A granttrail database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        Store::init(conn).map_err(|e| match e {
            StoreError::Sqlite(source) => StoreError::Open { path: path.display().to_string(), source },
            other => other,
        })
    }

    /// A private database in memory, for tests and one-off analyses.
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { found: version });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(Store { conn })
    }

    /// Has an object with this source already been committed?
    pub fn is_ingested(&self, source: &str) -> Result<bool> {
        let found = self.conn.query_row("SELECT 1 FROM objects WHERE source = ?1", [source], |_| Ok(()));
        match found {
            Ok(()) => Ok(true),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts writing one object, or returns `None` when an object of that source is already
    /// committed. Nothing is visible to others until [`ObjectWriter::commit`]; dropping the
    /// writer rolls everything back.
    pub fn begin_object(&mut self, source: &str) -> Result<Option<ObjectWriter<'_>>> {
        ObjectWriter::begin(&mut self.conn, source)
    }

    /// Records an object that was rejected whole, with the reason.
    pub fn record_rejection(&self, source: &str, reason: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO rejected_objects (source, rejected_at, reason) VALUES (?1, ?2, ?3)",
            rusqlite::params![source, now, reason],
        )?;
        Ok(())
    }

    /// Recomputes every derived grant from the stored events, in one transaction.
    pub fn rebuild(&mut self) -> Result<usize> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM grants", [])?;
        let pairs = write::all_grant_pairs(&tx)?;
        let count = write::recompute(&tx, &pairs)?;
        tx.commit()?;
        Ok(count)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}
