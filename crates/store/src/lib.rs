//! granttrail's store, in a SQLite file or a PostgreSQL database ([`db`]: one connection type,
//! one set of SQL, the same answers).
//!
//! Events are the facts; grants are derived from them. Each object is written in one
//! transaction ([`ObjectWriter`]): its events go in once per `eventID`, and
//! before commit every grant a *new* event touched is recomputed from all stored events of
//! that grant. A full [`Store::rebuild`] runs the same recompute for every grant, so an
//! incremental ingest and a rebuild cannot disagree.
#![forbid(unsafe_code)]

mod codes;
mod copy;
mod coverage;
pub mod db;
mod findings;
mod labels;
mod prune;
mod read;
mod records;
mod texts;
mod verification;
mod write;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use db::{Connection, OptionalExtension, TransactionBehavior};
use granttrail_grants::last_usage::{self, KeyLastUsage};
use granttrail_grants::reconcile::{Listing, Snapshot};
use granttrail_grants::{IamSnapshot, Invalidation, Policy, Settings};
use texts::KEY;

pub use copy::Copied;
pub use coverage::{DayCount, GrantUseRow, Silence, Window};
pub use labels::Relabelled;
pub use prune::Pruned;
pub use read::{CallFilter, EventRecord, GrantFilter, StoredCall, StoredEvent};
pub use records::StoredRecords;
pub use verification::{StoredSummary, VerificationRun};
pub use write::{Batch, ObjectCounts, ObjectWriter};

/// The schema version this granttrail writes; older databases are migrated to it when opened.
pub const SCHEMA_VERSION: i64 = 16;

/// Rewrites rows a migration changed the form of, reporting `(done, total)` rows as it goes.
type Rewrite = fn(&Connection, &mut dyn FnMut(u64, u64)) -> Result<()>;

/// One forward-only step of the schema: SQL, then, where rows must be rewritten, the rewrite.
struct Migration {
    sql: &'static str,
    rewrite: Option<Rewrite>,
}

/// Entry `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration { sql: include_str!("schema.sql"), rewrite: None },
    Migration { sql: include_str!("schema_2.sql"), rewrite: None },
    Migration { sql: include_str!("schema_3.sql"), rewrite: None },
    Migration { sql: include_str!("schema_4.sql"), rewrite: None },
    Migration { sql: include_str!("schema_5.sql"), rewrite: None },
    Migration { sql: include_str!("schema_6.sql"), rewrite: None },
    Migration { sql: include_str!("schema_7.sql"), rewrite: Some(records::move_v6_records) },
    Migration { sql: include_str!("schema_8.sql"), rewrite: Some(texts::hash_v7_event_ids) },
    Migration { sql: include_str!("schema_9.sql"), rewrite: None },
    Migration { sql: include_str!("schema_10.sql"), rewrite: None },
    Migration { sql: include_str!("schema_11.sql"), rewrite: None },
    Migration { sql: include_str!("schema_12.sql"), rewrite: None },
    Migration {
        sql: concat!(include_str!("schema_13.sql"), include_str!("new_calls_13.sql")),
        rewrite: None,
    },
    Migration {
        sql: concat!(include_str!("schema_14.sql"), include_str!("record_blocks_14.sql")),
        rewrite: None,
    },
    Migration {
        sql: concat!(include_str!("schema_15.sql"), include_str!("grant_rows_15.sql")),
        rewrite: None,
    },
    Migration { sql: include_str!("schema_16.sql"), rewrite: None },
];

/// PostgreSQL's schema: one step to SQLite's version 12 (`postgres.sql`), then a file per
/// version, numbered as SQLite's are, so a version means the same tables on both engines.
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (12, include_str!("postgres.sql")),
    (13, concat!(include_str!("postgres_13.sql"), include_str!("new_calls_13.sql"))),
    (14, concat!(include_str!("postgres_14.sql"), include_str!("record_blocks_14.sql"))),
    (15, concat!(include_str!("postgres_15.sql"), include_str!("grant_rows_15.sql"))),
    (16, include_str!("postgres_16.sql")),
];

/// The advisory lock PostgreSQL clients hold while they bring the schema up to date.
const POSTGRES_MIGRATION_LOCK: i64 = 0x6772_616e_7473_6368; // "grantsch"

/// Where a granttrail database lives: a SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(std::path::PathBuf),
    /// A `postgres://` or `postgresql://` URL (or a libpq `key=value` string).
    Postgres(String),
}

impl Location {
    /// `postgres://...` and `postgresql://...` name a PostgreSQL database; another URL is an
    /// error (rather than a file of that odd name); anything else is a file.
    pub fn parse(text: &str) -> Result<Location, String> {
        match text.split_once("://") {
            Some((scheme, _)) if scheme == "postgres" || scheme == "postgresql" => {
                Ok(Location::Postgres(text.to_string()))
            }
            Some((scheme, _))
                if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                Err(format!(
                    "{scheme}:// is a URL granttrail cannot store in: give a SQLite file's path or a \
                     postgres:// URL"
                ))
            }
            _ => Ok(Location::File(text.into())),
        }
    }
}

impl std::fmt::Display for Location {
    /// The file's path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => {
                let Some((scheme, rest)) = url.split_once("://") else { return f.write_str(url) };
                match rest.split_once('@') {
                    Some((credentials, host)) if credentials.contains(':') => {
                        let user = credentials.split(':').next().unwrap_or_default();
                        write!(f, "{scheme}://{user}:***@{host}")
                    }
                    _ => f.write_str(url),
                }
            }
        }
    }
}

/// How far a migration of an existing database has got, for a progress bar: `done` of `total`
/// rows rewritten on the way to schema `version`; `compacting` once the rows are rewritten
/// and the file is being compacted to give back the space they took.
/// KMS's record of a key's last use, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedLastUsage {
    pub key_arn: String,
    /// When it was read.
    pub at: i64,
    /// The file it came from.
    pub source: String,
    pub usage: KeyLastUsage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationProgress {
    pub version: i64,
    pub done: u64,
    pub total: u64,
    pub compacting: bool,
}

/// `PRAGMA auto_vacuum`'s value for incremental vacuum.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// SQLite page size of new databases, in bytes.
pub const PAGE_SIZE: i64 = 16 * 1024;

/// SQLite page cache per connection, in KiB.
pub const CACHE_KIB: i64 = 16 * 1024;

/// WAL pages between automatic checkpoints.
pub const WAL_CHECKPOINT_PAGES: i64 = 4 * 1024;

/// How long a writer waits for another process's transaction before giving up. Ingest holds
/// its transaction while one object is decoded, which can take seconds for a 50 MB object.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

/// Opens more connections to the database of `conn` for reading while `conn` writes, where
/// that works and helps: a file in WAL mode (with a rollback journal, the writer's commit would
/// wait for the reader to finish), and a second core to read on (on one, the reader only takes
/// turns with the writer, and reads the pages the writer has cached again).
fn reader_of(conn: &Connection) -> Result<Option<impl Fn() -> Result<Connection> + Sync + use<>>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let Some(sqlite) = conn.sqlite() else { return Ok(None) };
    let Some(path) = sqlite.path().filter(|p| !p.is_empty() && cores > 1).map(str::to_string) else {
        return Ok(None);
    };
    let mode: String =
        sqlite.pragma_query_value(None, "journal_mode", |r| r.get(0)).map_err(db::Error::from)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Ok(None);
    }
    Ok(Some(move || {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let reader = rusqlite::Connection::open_with_flags(&path, flags).map_err(db::Error::from)?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(db::Error::from)?;
        plan_once(&reader).map_err(db::Error::from)?;
        texts::register_hash(&reader).map_err(db::Error::from)?;
        reader.pragma_update(None, "cache_size", -CACHE_KIB).map_err(db::Error::from)?;
        // One snapshot for every key read, taken at the first read.
        reader.execute_batch("BEGIN").map_err(db::Error::from)?;
        Ok(Connection::from_sqlite(reader))
    }))
}

/// A new SQLite database's tables, as [`MIGRATIONS`] build them from nothing.
const NEW_DATABASE: &str = include_str!("new_database.sql");

/// Makes an empty database a new one of version [`SCHEMA_VERSION`], in one step: each schema
/// change has SQLite parse the whole schema again, and taking every step since version 1 cost
/// more than ingesting a small object.
fn create_new(tx: &Connection) -> Result<()> {
    tx.execute_batch(NEW_DATABASE)?;
    records::store_dictionary(tx)?;
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    Ok(())
}

/// Takes a database from `version` to [`SCHEMA_VERSION`] one step at a time, reporting the
/// rewrites of rows to `progress`. Returns whether rows were rewritten (their old pages are
/// then free inside the file).
fn migrate(tx: &Connection, version: i64, progress: &mut dyn FnMut(MigrationProgress)) -> Result<bool> {
    let mut rewritten = false;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        let to = i as i64 + 1;
        tx.execute_batch(migration.sql)?;
        if let Some(rewrite) = migration.rewrite {
            // An empty database has nothing to rewrite, and no one to tell.
            rewrite(tx, &mut |done, total| {
                if version > 0 {
                    progress(MigrationProgress { version: to, done, total, compacting: false })
                }
            })?;
            rewritten |= version > 0;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {to}"))?;
    }
    Ok(rewritten)
}

/// Has SQLite plan each statement once, whatever its parameters' values. By default it
/// prepares a statement again whenever a parameter a plan looked at (a `LIMIT ?`, or one
/// compared with a partial index's condition) is bound to a new value: relabelling prepared
/// its per-key statements again for every key. granttrail's statements name the conditions of
/// the partial indexes they use, so no plan depends on a value.
fn plan_once(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(|_| ())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] db::Error),
    #[error("database {path}: {source}")]
    Open { path: String, source: db::Error },
    #[error("database schema version {found} is newer than this granttrail understands ({SCHEMA_VERSION})")]
    TooNew { found: i64 },
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
    /// Other writers kept changing what the work depends on; nothing was changed.
    #[error("{0}")]
    Busy(String),
    #[error(
        "the settings differ from those this database was labelled with; run `granttrail rebuild` with the new settings first"
    )]
    SettingsChanged,
    /// Storing one object failed: which one, and why.
    #[error("{object}: {source}")]
    Object { object: String, source: Box<StoreError> },
}

impl StoreError {
    /// Whether the database undid the work to break a deadlock with another writer: the same
    /// work, done again from the start, may succeed ([`db::Error::is_conflict`]).
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Database(e) => e.is_conflict(),
            StoreError::Object { source, .. } => source.is_conflict(),
            _ => false,
        }
    }

    /// This error, as what went wrong storing `object`.
    pub fn in_object(self, object: &str) -> StoreError {
        match self {
            named @ StoreError::Object { .. } => named,
            other => StoreError::Object { object: object.to_string(), source: Box::new(other) },
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How SQLite keeps a transaction's undo information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// Write-ahead log: readers never block the writer. Needs shared memory between the
    /// processes, so only on a local file system.
    Wal,
    /// Rollback journal: works on network file systems such as EFS (NFS locks, no shared
    /// memory), at the price of readers and the writer taking turns.
    Rollback,
}

impl Journal {
    fn pragma(self) -> &'static str {
        match self {
            Journal::Wal => "WAL",
            Journal::Rollback => "DELETE",
        }
    }
}

/// Creates granttrail's tables in a PostgreSQL database, or brings them up to date. Clients
/// starting at once take turns: the first creates, the others find the tables made.
fn migrate_postgres(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    tx.query_row("SELECT pg_advisory_xact_lock(?1)", [POSTGRES_MIGRATION_LOCK], |_| Ok(()))?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS granttrail_schema (version BIGINT NOT NULL)")?;
    let found: Option<i64> =
        tx.query_row("SELECT version FROM granttrail_schema", [], |r| r.get(0)).optional()?;
    if let Some(found) = found.filter(|&v| v > SCHEMA_VERSION) {
        return Err(StoreError::TooNew { found });
    }
    if found.is_some_and(|v| v < SCHEMA_VERSION) {
        // Writers of the older version still at work finish first: a migration moves what
        // they have marked, and they would mark in the older form after it.
        tx.query_row("SELECT pg_advisory_xact_lock(?1)", [db::WRITER_LOCK], |_| Ok(()))?;
    }
    for &(version, sql) in POSTGRES_MIGRATIONS.iter().filter(|(v, _)| found.is_none_or(|f| *v > f)) {
        tx.execute_batch(sql)?;
        if found.is_none() && version == POSTGRES_MIGRATIONS[0].0 {
            records::store_dictionary(&tx)?;
            tx.execute("INSERT INTO labelled_through (id, event_id) VALUES (1, 0)", [])?;
        }
        tx.execute("DELETE FROM granttrail_schema", [])?;
        tx.execute("INSERT INTO granttrail_schema (version) VALUES (?1)", [version])?;
    }
    tx.commit()?;
    Ok(())
}

/// Relabels what is stale, in `tx`. Beside other writers (the writers' lock shared) it
/// relabels only what it locks: first the accounts whose permission changes it applies, then
/// the keys it relabels (those marked, and those the accounts' principals called), reading the
/// marks again once they are locked. Writers hold the same locks from before they mark until
/// they commit, so a locked key's marks and events are all committed and stay as read. Marks
/// of anything else, and a relabelling of everything, are left to a later pass. Returns what
/// was relabelled and whether a relabelling of everything is still owed.
fn relabel_in(
    tx: db::Transaction<'_>,
    settings: &Settings,
    strategy: labels::Strategy,
) -> Result<(Relabelled, bool)> {
    let seen = labels::stale(&tx)?;
    let alone = !tx.beside_others();
    let accounts = seen.accounts.clone();
    tx.lock(db::Named::Account, accounts.iter().map(String::as_str))?;
    let mut called = BTreeSet::new();
    for account in &accounts {
        called.extend(labels::keys_used_by_account(&tx, account)?);
    }
    let mut keys = labels::keys_marked(&seen);
    keys.extend(called.iter().cloned());
    if !alone && keys.len() > MOST_KEYS_LOCKED {
        // So many keys (a bulk load, an IAM change in a busy account) are relabelled alone
        // instead: each named lock takes a slot of the server's lock table until the commit.
        return Ok((Relabelled::default(), true));
    }
    tx.lock(db::Named::Key, keys.iter().map(String::as_str))?;
    let mut dirty = labels::only(labels::stale(&tx)?, &keys, &accounts, alone);
    let owed = seen.everything && !alone;
    // The accounts' keys were found under the accounts' locks: they are relabelled whole here
    // rather than looked up again.
    let applied = std::mem::take(&mut dirty.accounts);
    if !applied.is_empty() {
        dirty.context_keys.extend(called);
    }
    // This transaction changes no event, grant or import: another connection may read
    // them while this one writes labels.
    let reader = reader_of(&tx)?;
    let read_ahead = reader.as_ref().map(|open| open as labels::OpenReader<'_>);
    let relabelled = labels::recompute(&tx, &dirty, settings, strategy, read_ahead)?;
    labels::mark_labelled(&tx, &keys, &applied, dirty.everything)?;
    tx.commit()?;
    Ok((relabelled, owed))
}

/// The most keys a relabelling beside other writers locks by name; more are relabelled with the
/// writers' lock alone. PostgreSQL's lock table holds `max_locks_per_transaction` (64 by
/// default) times `max_connections` locks across all sessions.
const MOST_KEYS_LOCKED: usize = 1_000;

/// How many times work undone by a deadlock with another writer is done again.
pub const CONFLICT_ATTEMPTS: u32 = 8;

/// A pause before trying again after a deadlock, longer each time and different for each
/// writer, so that the same writers are unlikely to meet in the same order again.
pub fn conflict_pause(attempt: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ u64::from(std::process::id()));
    Duration::from_millis(10 * u64::from(attempt) + jitter % 50)
}

/// The settings a database's derived tables were computed with.
fn stored_settings(conn: &Connection) -> Result<Settings> {
    let stored: Option<String> =
        conn.query_row("SELECT value FROM settings WHERE id = 1", [], |r| r.get(0)).optional()?;
    match stored {
        Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("settings: {e}"))),
        None => Ok(Settings::default()),
    }
}

/// A granttrail database.
pub struct Store {
    conn: Connection,
    /// When to relabel a key incrementally rather than whole ([`labels::Strategy`]).
    strategy: labels::Strategy,
    /// The settings the derived tables are computed with.
    settings: Settings,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, Journal::Wal, &mut |_| {})
    }

    /// Opens the database at `path` with the given journal: [`Journal::Rollback`] for a
    /// database on a network file system.
    pub fn open_with_journal(path: &Path, journal: Journal) -> Result<Store> {
        Store::open_with(path, journal, &mut |_| {})
    }

    /// [`Store::open_with_journal`], telling `progress` how a migration of an existing
    /// database is going (rewriting the rows of a large database takes minutes).
    pub fn open_with(
        path: &Path,
        journal: Journal,
        progress: &mut dyn FnMut(MigrationProgress),
    ) -> Result<Store> {
        let conn = rusqlite::Connection::open(path)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source: source.into() })?;
        Store::init(conn, journal, progress).map_err(|e| match e {
            StoreError::Database(source) => StoreError::Open { path: path.display().to_string(), source },
            other => other,
        })
    }

    /// Opens the database at `location`: a SQLite file (see [`Store::open_with`]) or a
    /// PostgreSQL database, whose schema is created or brought up to date.
    pub fn open_at(
        location: &Location,
        journal: Journal,
        progress: &mut dyn FnMut(MigrationProgress),
    ) -> Result<Store> {
        match location {
            Location::File(path) => Store::open_with(path, journal, progress),
            Location::Postgres(url) => {
                let open = |source| StoreError::Open { path: location.to_string(), source };
                let mut conn = Connection::connect_postgres(url).map_err(open)?;
                migrate_postgres(&mut conn).map_err(|e| match e {
                    StoreError::Database(source) => open(source),
                    other => other,
                })?;
                let settings = stored_settings(&conn)?;
                Ok(Store { conn, settings, strategy: labels::Strategy::default() })
            }
        }
    }

    /// The engine this database is in.
    pub fn engine(&self) -> db::Engine {
        self.conn.engine()
    }

    /// Whether other writers may write objects into this database at the same time
    /// (PostgreSQL): a transaction of several objects would then hold their locks on keys and
    /// grants, and so those writers, until its last object is written.
    pub fn writers_share(&self) -> bool {
        self.conn.engine() == db::Engine::Postgres
    }

    /// A private database in memory, for tests and one-off analyses.
    pub fn open_in_memory() -> Result<Store> {
        let conn = rusqlite::Connection::open_in_memory().map_err(db::Error::from)?;
        Store::init(conn, Journal::Wal, &mut |_| {})
    }

    fn init(
        conn: rusqlite::Connection,
        journal: Journal,
        progress: &mut dyn FnMut(MigrationProgress),
    ) -> Result<Store> {
        let sqlite = |e: rusqlite::Error| StoreError::Database(e.into());
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        plan_once(&conn).map_err(sqlite)?;
        // Room for every statement an ingest repeats, the multi-row inserts' shapes included.
        conn.set_prepared_statement_cache_capacity(64);
        texts::register_hash(&conn).map_err(sqlite)?;
        // Refuse a newer schema before anything below changes the file (its journal mode).
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { found });
        }
        // 16 KB pages: fewer, fuller pages for the wide rows (labels, grants). Like
        // auto_vacuum, only takes effect on a new, empty database.
        conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(sqlite)?;
        // Pages freed by `granttrail prune` go back to the file system a batch at a time. Set
        // only where it is not yet: setting it writes the file's header, which made every
        // command, reads too, commit a transaction and sync the file twice.
        let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0)).map_err(sqlite)?;
        if auto_vacuum != AUTO_VACUUM_INCREMENTAL {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(sqlite)?;
        }
        conn.pragma_update(None, "journal_mode", journal.pragma()).map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
        // Off while migrations move rows between tables (SQLite ignores the setting inside a
        // transaction); checked before they commit, and on from then on.
        conn.pragma_update(None, "foreign_keys", "OFF").map_err(sqlite)?;
        // A page cache large enough for the indexes ingest touches; the default (2 MB) turns
        // ingest into millions of small reads. Bounded, so memory stays flat.
        conn.pragma_update(None, "cache_size", -CACHE_KIB).map_err(sqlite)?;
        // Savepoint journals and sorts in temporary files, which the OS caches: in memory, the
        // journal of a run of grant-heavy objects committed together took 100 MB more.
        conn.pragma_update(None, "temp_store", "FILE").map_err(sqlite)?;
        // Checkpoint the WAL every ~64 MB instead of every 4 MB: fewer fsyncs, and index pages
        // that change in many transactions are written back once per checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES).map_err(sqlite)?;
        let mut conn = Connection::from_sqlite(conn);
        // A database of this version has nothing to migrate: reading its settings need not wait
        // for a writer's transaction to end. Versions only grow, so it cannot need a migration
        // by the time the transaction begins.
        let behaviour = if found == SCHEMA_VERSION {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        };
        let tx = conn.transaction_with_behavior(behaviour)?;
        let user_version = |tx: &Connection| tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
        let version: i64 = user_version(&tx)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { found: version });
        }
        let rewritten = if version == 0 {
            create_new(&tx)?;
            false
        } else {
            migrate(&tx, version, progress)?
        };
        if version < SCHEMA_VERSION {
            let broken: Option<String> =
                tx.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional()?;
            if let Some(table) = broken {
                return Err(StoreError::Corrupt(format!(
                    "after migrating, {table} refers to rows that are gone"
                )));
            }
        }
        let settings = stored_settings(&tx)?;
        tx.commit()?;
        if rewritten {
            // The rewritten rows left the old ones' pages free inside the file: give them back
            // (and switch the file to incremental vacuum, which only VACUUM can do).
            progress(MigrationProgress { version: SCHEMA_VERSION, done: 0, total: 0, compacting: true });
            conn.execute_batch("VACUUM")?;
        }
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
        Ok(Store { conn, settings, strategy: labels::Strategy::default() })
    }

    /// The settings the derived tables were computed with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Uses `settings` from now on. Changing the settings of a database that holds events
    /// needs a rebuild (labels depend on them), so that is refused unless `rebuilding`.
    pub fn use_settings(&mut self, settings: &Settings, rebuilding: bool) -> Result<()> {
        if *settings == self.settings {
            return Ok(());
        }
        let (_, events, _) = self.totals()?;
        if events > 0 && !rebuilding {
            return Err(StoreError::SettingsChanged);
        }
        let text = serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn.execute("INSERT INTO settings (id, value) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET value = excluded.value", [text])?;
        self.settings = settings.clone();
        Ok(())
    }

    /// Whether the database's server closed the connection or refused its credentials
    /// ([`db::Connection::is_lost`]): this store can do no more, and is opened again.
    pub fn connection_lost(&self) -> bool {
        self.conn.is_lost()
    }

    /// Has an object with this source already been committed?
    pub fn is_ingested(&self, source: &str) -> Result<bool> {
        let found = self.conn.query_row("SELECT 1 FROM objects WHERE source = ?1", [source], |_| Ok(()));
        match found {
            Ok(()) => Ok(true),
            Err(db::Error::NoRows) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The SHA-256 of the content of the object stored as `source`, if its read hashed it.
    pub fn content_sha256(&self, source: &str) -> Result<Option<[u8; 32]>> {
        let stored: Option<Option<Vec<u8>>> = self
            .conn
            .query_row("SELECT content_sha256 FROM objects WHERE source = ?1", [source], |r| r.get(0))
            .optional()?;
        match stored.flatten() {
            None => Ok(None),
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map(Some).map_err(|_| {
                StoreError::Corrupt(format!(
                    "objects.content_sha256 of {source} is {} bytes, not 32",
                    bytes.len()
                ))
            }),
        }
    }

    /// Starts writing one object, or returns `None` when an object of that source is already
    /// committed. Nothing is visible to others until [`ObjectWriter::commit`]; dropping the
    /// writer rolls everything back.
    pub fn begin_object(&mut self, source: &str) -> Result<Option<ObjectWriter<'_>>> {
        ObjectWriter::begin(&mut self.conn, source)
    }

    /// Takes the write lock for several objects, committed together by [`Batch::commit`]
    /// (for a run of many objects: fewer, larger writes to the log).
    pub fn begin_batch(&mut self) -> Result<Batch<'_>> {
        Batch::begin(&mut self.conn)
    }

    /// Writes a consistent copy of the database to `path` (a new file), compacted, while
    /// other connections may keep writing.
    pub fn snapshot_to(&self, path: &Path) -> Result<()> {
        let target =
            path.to_str().ok_or_else(|| StoreError::Invalid(format!("{}: not UTF-8", path.display())))?;
        if self.conn.engine() != db::Engine::Sqlite {
            return Err(StoreError::Invalid("a copy into a file is made from a SQLite database only".into()));
        }
        self.conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    /// Of `ids`, the findings not yet published, in the order given.
    pub fn unpublished<'a>(&self, ids: &[&'a str]) -> Result<Vec<&'a str>> {
        let mut seen = self.conn.prepare_cached("SELECT 1 FROM published_findings WHERE finding_id = ?1")?;
        let mut out = Vec::new();
        for id in ids {
            if !seen.exists([id])? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Remembers that the finding `id` was published at `at`.
    pub fn mark_published(&self, id: &str, at: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO published_findings (finding_id, published_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            db::params![id, at],
        )?;
        Ok(())
    }

    /// Records an object that was rejected whole, with the reason.
    pub fn record_rejection(&self, source: &str, reason: &str, now: i64) -> Result<()> {
        write::record_rejection(&self.conn, source, reason, now)
    }

    /// Recomputes every derived grant and call label from the stored events and imports, in
    /// one transaction. Returns the number of grants.
    pub fn rebuild(&mut self) -> Result<usize> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            // Grant lists' members stay: they say what a list text names, which never changes.
            "DELETE FROM grant_rows; DELETE FROM call_labels; DELETE FROM stale_labels;
             DELETE FROM observations; DELETE FROM stale_since;",
        )?;
        let pairs = write::all_grant_pairs(&tx)?;
        let count = write::recompute(&tx, &pairs)?;
        let everything = Invalidation { everything: true, ..Invalidation::default() };
        labels::recompute(&tx, &everything, &self.settings, self.strategy, None)?;
        labels::mark_labelled(&tx, &BTreeSet::new(), &BTreeSet::new(), true)?;
        tx.commit()?;
        Ok(count)
    }

    /// Relabels every key that can be relabelled incrementally that way, however small its
    /// history: tests use it to compare the incremental path with a rebuild.
    #[doc(hidden)]
    pub fn always_relabel_incrementally(&mut self) {
        self.strategy.history_per_rechecked_call = 0;
    }

    /// Runs `while_held` while this connection holds the lock of `key` as a writer beside
    /// others does between marking the key and committing: tests use it to show who waits
    /// for whom. Only on PostgreSQL (SQLite has one writer, and this would hold it).
    #[doc(hidden)]
    pub fn holding_key_lock<T>(&mut self, key: &str, while_held: impl FnOnce() -> T) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Shared)?;
        tx.lock(db::Named::Key, [key])?;
        let out = while_held();
        drop(tx);
        Ok(out)
    }

    /// Relabels keys relabelled whole in windows of about `events` events, however short
    /// their history: tests use it to compare windows with a single pass.
    #[doc(hidden)]
    pub fn relabel_in_windows_of(&mut self, events: usize) {
        self.strategy.window_events = events;
    }

    /// Recomputes the labels that ingested objects left stale, in one transaction. Ingest
    /// calls this once at the end of a run; queries call it first, so they never show stale
    /// labels. Beside other writers on PostgreSQL it waits only for the keys it relabels (and
    /// for every writer when an Organizations change means relabelling everything, or when
    /// there are more keys than it locks one by one), and does again what a deadlock undid.
    /// Returns how many keys were relabelled, and how.
    pub fn refresh_labels(&mut self) -> Result<Relabelled> {
        self.refresh(true, false).map(Option::unwrap_or_default)
    }

    /// [`Store::refresh_labels`] with the writers' lock alone, unless other writers are
    /// writing into the same PostgreSQL database: then `None` at once. For a bulk writer (an
    /// `ingest` run) that ends among others: they would relabel the same keys over and over,
    /// each waiting for the keys the others hold, so the last of them, or the next query,
    /// relabels once. A writer of one object at a time (the Lambda) uses
    /// [`Store::refresh_labels`], which waits only for the keys it relabels.
    pub fn refresh_labels_unless_busy(&mut self) -> Result<Option<Relabelled>> {
        if labels::stale(&self.conn)?.is_empty() {
            return Ok(Some(Relabelled::default()));
        }
        self.refresh(false, true)
    }

    /// Relabels in passes: beside other writers (unless `alone` from the start), then (when
    /// one was owed) alone; `None` when that would wait for other writers and `wait_for_all`
    /// is false.
    fn refresh(&mut self, wait_for_all: bool, mut alone: bool) -> Result<Option<Relabelled>> {
        let mut done = Relabelled::default();
        let mut passes = 0;
        let mut attempt = 1;
        loop {
            let stale = labels::stale(&self.conn)?;
            if stale.is_empty() {
                break;
            }
            alone |= stale.everything;
            let tx = match (alone, wait_for_all) {
                (false, _) => self.conn.transaction_with_behavior(TransactionBehavior::Shared).map(Some),
                (true, true) => self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map(Some),
                (true, false) => self.conn.transaction_unless_busy(),
            };
            let pass = match tx {
                Ok(Some(tx)) => relabel_in(tx, &self.settings, self.strategy),
                Ok(None) => return Ok(None),
                Err(e) => Err(e.into()),
            };
            match pass {
                Ok((relabelled, owed)) => {
                    done.add(relabelled);
                    passes += 1;
                    if !owed {
                        break;
                    }
                    alone = true;
                }
                Err(e) if e.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    std::thread::sleep(conflict_pause(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if passes > 0 {
            // The marks forgotten and the labels rewritten leave pages free: give them back, as
            // the file would otherwise keep them until it next grows. (Only after writing: a
            // query on a file it may not write to relabels nothing.)
            self.conn.give_back_free_pages()?;
        }
        Ok(Some(done))
    }

    /// From now on, every read sees the database as it is now, whatever writers
    /// commit meanwhile: a listing or a report made of many queries is of one state. For a
    /// command that only reads from here on (a write would fail).
    pub fn read_snapshot(&mut self) -> Result<()> {
        Ok(self.conn.begin_read_snapshot()?)
    }

    /// Stores a key policy document known from outside the logs (for example the output of
    /// `aws kms get-key-policy`) as in force at `at`, and relabels the key's calls.
    pub fn import_key_policy(&mut self, key_arn: &str, at: i64, policy: &str, source: &str) -> Result<()> {
        Policy::parse(policy).map_err(StoreError::Invalid)?;
        let dirty = Invalidation { context_keys: [key_arn.to_string()].into(), ..Invalidation::default() };
        self.import_and_relabel(&dirty, |tx| {
            tx.execute(
                "INSERT INTO imported_key_policies (key_arn, at, policy, source) VALUES (?1, ?2, ?3, ?4)",
                db::params![key_arn, at, policy, source],
            )
        })
    }

    /// Stores an IAM snapshot (`aws iam get-account-authorization-details` output) of
    /// `account` as of `at`, and relabels the calls of that account's principals.
    pub fn import_iam(&mut self, account: &str, at: i64, document: &str, source: &str) -> Result<usize> {
        let snapshot = IamSnapshot::parse(document).map_err(StoreError::Invalid)?;
        let dirty = Invalidation { accounts: [account.to_string()].into(), ..Invalidation::default() };
        self.import_and_relabel(&dirty, |tx| {
            tx.execute(
                "INSERT INTO imported_iam (account, at, document, source) VALUES (?1, ?2, ?3, ?4)",
                db::params![account, at, document, source],
            )
        })?;
        Ok(snapshot.principals.len())
    }

    /// Stores an import with `insert`, marks what it leaves to relabel (`dirty`), and relabels
    /// as after an ingest, with whatever else is marked: relabelling the import's keys alone
    /// would leave their marks, and a call of an object still marked new be labelled twice.
    fn import_and_relabel(
        &mut self,
        dirty: &Invalidation,
        insert: impl FnOnce(&Connection) -> db::Result<usize>,
    ) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert(&tx)?;
        labels::mark_stale(&tx, 0, dirty)?;
        tx.commit()?;
        self.refresh_labels()?;
        Ok(())
    }

    /// Stores a list-grants snapshot of `key_arn` taken at `at`. Findings compare the latest
    /// snapshot of each key with its rebuilt grants; nothing derived changes.
    pub fn import_grant_list(
        &mut self,
        key_arn: &str,
        at: i64,
        listing: &Listing,
        source: &str,
    ) -> Result<()> {
        let grants =
            serde_json::to_string(&listing.grants).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO imported_grant_lists (key_arn, at, complete, grants, source) VALUES (?1, ?2, ?3, ?4, ?5)",
            db::params![key_arn, at, listing.complete, grants, source],
        )?;
        Ok(())
    }

    /// Stores KMS's record of the last use of `key_arn` (`aws kms get-key-last-usage` output)
    /// as read at `at`.
    pub fn import_key_last_usage(
        &mut self,
        key_arn: &str,
        at: i64,
        document: &str,
        source: &str,
    ) -> Result<()> {
        last_usage::parse(document).map_err(StoreError::Invalid)?;
        self.conn.execute(
            "INSERT INTO imported_key_last_usage (key_arn, at, document, source) VALUES (?1, ?2, ?3, ?4)",
            db::params![key_arn, at, document, source],
        )?;
        Ok(())
    }

    /// The latest imported last-usage record of each key (by time, then by import order), on
    /// `key` only when given: the key, when it was read, where from, and what it says.
    pub fn key_last_usages(&self, key: Option<&str>) -> Result<Vec<ImportedLastUsage>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key_arn, at, source, document FROM imported_key_last_usage l
             WHERE (CAST(?1 AS TEXT) IS NULL OR key_arn = ?1)
               AND id = (SELECT id FROM imported_key_last_usage m WHERE m.key_arn = l.key_arn ORDER BY at DESC, id DESC LIMIT 1)
             ORDER BY key_arn",
        )?;
        let rows = stmt.query_map([key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key_arn, at, source, document) = row?;
            let usage = last_usage::parse(&document)
                .map_err(|e| StoreError::Corrupt(format!("imported key last usage of {key_arn}: {e}")))?;
            out.push(ImportedLastUsage { key_arn, at, source, usage });
        }
        Ok(out)
    }

    /// What the logs hold about a use KMS reported on `key`: whether a successful call with
    /// its eventID is stored on the key, and the time of the latest logged successful call of
    /// an operation KMS tracks.
    pub fn logged_use(&self, key: &str, event_id: Option<&str>) -> Result<last_usage::Logged> {
        let event_stored = match event_id {
            Some(id) => self.conn.prepare_cached(&format!(
                "SELECT 1 FROM event_rows WHERE event_hash = granttrail_hash(?2) AND event_id = ?2 AND error_code IS NULL
                   AND (key = {KEY} OR destination_key = {KEY})"
            ))?
            .exists(db::params![key, id])?,
            None => false,
        };
        let tracked: Vec<String> = last_usage::TRACKED_OPERATIONS.iter().map(|o| format!("'{o}'")).collect();
        let latest_call: Option<i64> = self.conn.query_row(
            &format!(
                "SELECT max(event_time) FROM event_rows
                 WHERE (key = {KEY} OR destination_key = {KEY}) AND error_code IS NULL
                   AND event_source = 'kms.amazonaws.com' AND event_name IN ({})",
                tracked.join(", ")
            ),
            [key],
            |r| r.get(0),
        )?;
        Ok(last_usage::Logged { event_stored, latest_call })
    }

    /// The latest list-grants snapshot of each key (by time, then by import order).
    pub fn grant_lists(&self) -> Result<Vec<Snapshot>> {
        let mut stmt = self.conn.prepare(
            "SELECT key_arn, at, complete, grants, source FROM imported_grant_lists l
             WHERE id = (SELECT id FROM imported_grant_lists m WHERE m.key_arn = l.key_arn ORDER BY at DESC, id DESC LIMIT 1)
             ORDER BY key_arn",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key_arn, at, complete, grants, source) = row?;
            let grants = serde_json::from_str(&grants)
                .map_err(|e| StoreError::Corrupt(format!("imported grant list: {e}")))?;
            out.push(Snapshot { key_arn, at, source, listing: Listing { grants, complete } });
        }
        Ok(out)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Connection, NEW_DATABASE, create_new, migrate, texts};
    use rusqlite::types::Value;

    /// What `new_database.sql` says before its statements.
    const HEADER: &str = "\
-- The tables, indexes and views of a new SQLite database, exactly as the migrations from
-- version 1 (schema.sql, schema_2.sql, ...) leave an empty one, in the order they were
-- created. A new database is made from this file in one step; the test
-- a_new_database_has_the_schema_the_migrations_build keeps the two the same. Not edited by
-- hand: after a new migration, `GRANTTRAIL_BLESS=1 cargo test -p granttrail-store new_database`
-- writes it again.
";

    fn empty() -> Connection {
        let raw = rusqlite::Connection::open_in_memory().unwrap();
        texts::register_hash(&raw).unwrap();
        Connection::from_sqlite(raw)
    }

    /// Every table, index and view with the statement that makes it, in the order made.
    fn schema(conn: &Connection) -> Vec<(String, String, String)> {
        let raw = conn.sqlite().unwrap();
        let mut stmt = raw
            .prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }

    /// A table's name and rows.
    type Table = (String, Vec<Vec<Value>>);

    /// Every row of every table, by table, and the schema version.
    fn contents(conn: &Connection) -> (i64, Vec<Table>) {
        let raw = conn.sqlite().unwrap();
        let version = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        let tables = schema(conn).into_iter().filter(|(kind, _, _)| kind == "table").map(|(_, name, _)| name);
        let rows = tables
            .map(|table| {
                let mut stmt = raw.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1")).unwrap();
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| (0..columns).map(|i| r.get::<_, Value>(i)).collect())
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                (table, rows)
            })
            .collect();
        (version, rows)
    }

    #[test]
    fn a_new_database_has_the_schema_the_migrations_build() {
        let migrated = empty();
        migrate(&migrated, 0, &mut |_| {}).unwrap();
        let statements: String = schema(&migrated).iter().map(|(_, _, sql)| format!("\n{sql};\n")).collect();
        let file = format!("{HEADER}{statements}");
        if file != NEW_DATABASE {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/new_database.sql");
            assert!(
                std::env::var_os("GRANTTRAIL_BLESS").is_some(),
                "{path} is not what the migrations build: run \
                 `GRANTTRAIL_BLESS=1 cargo test -p granttrail-store new_database`, then build again"
            );
            std::fs::write(path, file).unwrap();
        }
        let created = empty();
        create_new(&created).unwrap();
        assert_eq!(schema(&created), schema(&migrated));
        let (version, rows) = contents(&created);
        assert_eq!(version, super::SCHEMA_VERSION);
        assert_eq!((version, rows), contents(&migrated));
    }
}
