//! One connection type over the two engines granttrail stores in: SQLite (embedded, a file) and
//! PostgreSQL (shared by many writers). The store's SQL is written once, in the dialect both
//! understand (`?N` parameters, `ON CONFLICT`, `RETURNING`, no engine-specific functions but
//! `granttrail_hash`, which both define); a PostgreSQL connection renumbers the parameters.
//! Values cross as [`ValueRef`]s, which each engine encodes in its own column types, so the
//! rest of the store neither knows nor cares which engine it talks to.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::cell::{Cell, RefCell};
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex, PoisonError};

use postgres::types::{IsNull, Type};

/// The engine behind a [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

mod tls;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    #[error("{}", postgres_message(.0))]
    Postgres(postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
    #[error("{0}")]
    Tls(String),
    /// Another writer held names of a kind this transaction had come to lock whole
    /// ([`Connection::lock`]): undone, and done again locking the kind whole from the start.
    #[error("another writer held names the transaction had to lock all of")]
    KindBusy,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            other => Error::Sqlite(other),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::Postgres(e)
    }
}

/// The server's own words when there are some (the crate's Display says only "db error").
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut message = format!("PostgreSQL: {}", db.message());
            if let Some(detail) = db.detail() {
                message += &format!(" ({detail})");
            }
            // What to do, when the server says (out of shared memory: raise max_locks_per_transaction).
            if let Some(hint) = db.hint() {
                message += &format!("; {hint}");
            }
            message
        }
        None => match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl Error {
    /// Whether the server undid the transaction to break a deadlock with another writer (or a
    /// serialisation conflict): the same work, done again, may succeed.
    pub fn is_conflict(&self) -> bool {
        use postgres::error::SqlState;
        matches!(self, Error::KindBusy)
            || matches!(self, Error::Postgres(e)
            if e.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE))
    }

    /// Whether the server refused the user name or password it was given (SQLSTATE class 28).
    fn is_refused_credentials(&self) -> bool {
        matches!(self, Error::Postgres(e) if e.code().is_some_and(|c| c.code().starts_with("28")))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value read from or bound to a statement, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value owned, for parameter lists built at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(value: ValueRef<'_>) -> Value {
        match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl ValueRef<'_> {
    fn kind(&self) -> &'static str {
        match self {
            ValueRef::Null => "NULL",
            ValueRef::Integer(_) => "an integer",
            ValueRef::Real(_) => "a real",
            ValueRef::Text(_) => "text",
            ValueRef::Blob(_) => "a blob",
        }
    }

    fn as_i64(&self) -> Result<i64, String> {
        match *self {
            ValueRef::Integer(i) => Ok(i),
            other => Err(format!("expected an integer, found {}", other.kind())),
        }
    }
}

/// A Rust value a statement can take as a parameter.
pub trait ToSql {
    fn to_sql(&self) -> ValueRef<'_>;
}

/// A Rust value a column can be read as. The error says what was found instead.
pub trait FromSql: Sized {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String>;
}

macro_rules! integer_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::from(*self))
            }
        }
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
                let i = value.as_i64()?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
integer_to_sql!(i64, i32, u32, u16, u8);

impl ToSql for usize {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl FromSql for usize {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        let i = value.as_i64()?;
        usize::try_from(i).map_err(|_| format!("{i} is out of range for a count"))
    }
}

impl FromSql for u64 {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        let i = value.as_i64()?;
        u64::try_from(i).map_err(|_| format!("{i} is out of range for a count"))
    }
}

impl ToSql for bool {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Integer(i64::from(*self))
    }
}

impl FromSql for bool {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        Ok(value.as_i64()? != 0)
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl FromSql for f64 {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {}", other.kind())),
        }
    }
}

impl ToSql for str {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToSql for String {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl FromSql for String {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Text(s) => Ok(s.to_string()),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl<const N: usize> ToSql for [u8; N] {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl FromSql for Vec<u8> {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            other => Err(format!("expected a blob, found {}", other.kind())),
        }
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> ValueRef<'_> {
        self.as_ref()
    }
}

impl FromSql for Value {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        Ok(match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> ValueRef<'_> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.to_sql(),
            None => ValueRef::Null,
        }
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn column_result(value: ValueRef<'_>) -> Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::column_result(other).map(Some),
        }
    }
}

/// A statement's parameters: `params![a, b]`, an array of one type, or [`params_from_iter`].
pub trait Params {
    fn values(&self) -> Vec<ValueRef<'_>>;
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|p| p.to_sql()).collect()
    }
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Vec<ValueRef<'_>> {
                self.iter().map(|p| p.to_sql()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// Parameters from a list built at run time.
pub struct ParamsFromIter<T>(Vec<T>);

pub fn params_from_iter<T: ToSql>(values: impl IntoIterator<Item = T>) -> ParamsFromIter<T> {
    ParamsFromIter(values.into_iter().collect())
}

impl<T: ToSql> Params for ParamsFromIter<T> {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.0.iter().map(|p| p.to_sql()).collect()
    }
}

/// `params![a, b, c]`: parameters of different types.
#[macro_export]
#[doc(hidden)]
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::ToSql),+] as &[&dyn $crate::db::ToSql] };
}
pub(crate) use params;

/// How a transaction takes the write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// When it first writes (SQLite), and no lock at all (PostgreSQL).
    Deferred,
    /// Beside other such writers: on PostgreSQL the writers' lock is taken shared, and what
    /// the transaction changes is locked by name as it goes ([`Connection::lock`]). SQLite has
    /// one writer at a time: as [`TransactionBehavior::Immediate`] there.
    Shared,
    /// At once and alone: no other writer, shared or not, runs meanwhile.
    Immediate,
}

/// The advisory lock PostgreSQL writers take where SQLite would take its write lock: shared by
/// the writers of objects and by relabelling, exclusive for the rest (relabelling everything,
/// rebuilds, imports).
pub(crate) const WRITER_LOCK: i64 = 0x6772_616e_7474_7261; // "granttra"

/// What a writer beside others ([`TransactionBehavior::Shared`]) locks by name until its
/// transaction ends, so that the rows of one eventID, text, key or grant are decided by one
/// writer at a time, each seeing what the ones before it committed. Relabelling locks the
/// keys it relabels, and the accounts whose permission changes it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Named {
    EventId = 1,
    Text = 2,
    Key = 3,
    Grant = 4,
    Account = 5,
}

/// Named locks taken by one statement.
const LOCKS_PER_STATEMENT: usize = 128;

/// The most names of one kind a transaction locks one by one. Each lock takes a slot of the
/// server's lock table until the commit, and the table is shared: `max_locks_per_transaction`
/// (64 by default) times the connections. Past this many, the transaction locks the whole
/// kind instead ([`Connection::lock`]): a writer's locks are bounded whatever its object's
/// size, though enough writers at once can still fill a stock server's table.
const MOST_NAMES_LOCKED: usize = 512;

/// What a transaction beside others holds of one kind of name.
enum Held {
    /// The kind shared, and these names (their lock ids) alone.
    Names(HashSet<i64>),
    /// The whole kind: no other writer locks a name of it until the commit.
    Kind,
}

/// The lock id of `name` of `kind`: the kind in the high half, the name's 32-bit hash in the
/// low half.
fn name_lock(kind: Named, name: &str) -> i64 {
    ((kind as i64) << 32) | crate::texts::hash(name)
}

/// The lock id of the whole of `kind`, taken shared by a transaction before it locks names of
/// the kind, and exclusively by one that locks too many to name. Apart from every name's.
fn kind_lock(kind: Named) -> i64 {
    (0x100 | kind as i64) << 32
}

/// Statements kept prepared per PostgreSQL connection before the cache starts again.
const PG_STATEMENT_CACHE: usize = 512;

/// The rows a listing fetches from its cursor at once ([`Connection::for_each_row`]): few
/// enough to hold, many enough that a round trip per fetch is little beside reading them.
const ROWS_PER_FETCH: usize = 1000;

/// A PostgreSQL transaction that reads one state of the database to its end.
const BEGIN_READ_ONLY: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

pub struct Connection {
    inner: Inner,
    ids: RefCell<Remembered>,
    /// Whether the open transaction writes beside others ([`TransactionBehavior::Shared`] on
    /// PostgreSQL), and so locks what it changes by name.
    shared: Cell<bool>,
    /// What the open transaction beside others has locked, by kind.
    held: RefCell<HashMap<Named, Held>>,
    /// The kinds a transaction on this connection came to lock whole since the last commit:
    /// if it was undone, the next locks them whole from the start.
    whole_from_start: RefCell<HashSet<Named>>,
}

/// Ids of rows that are never deleted (texts), by their text, kept across transactions: each
/// is looked up once per connection rather than once per object. A rollback may undo rows some
/// of them name (and SQLite may then give their ids to other rows), so it forgets them all.
#[derive(Default)]
struct Remembered {
    ids: HashMap<String, i64>,
    bytes: usize,
}

/// The text bytes and ids [`Remembered`] holds before it starts again: memory stays flat (a
/// short text costs more in the map than in bytes).
const REMEMBERED_BYTES: usize = 4 << 20;
const REMEMBERED_IDS: usize = 1 << 16;

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

struct Pg {
    client: RefCell<postgres::Client>,
    /// What it was opened with, to open [`Pg::apart`] alike.
    url: String,
    /// A second connection, opened when first needed, for what is committed at once beside
    /// the open transaction ([`Connection::apart`]).
    apart: std::cell::OnceCell<Box<Connection>>,
    /// Whether the read-only transaction of [`Connection::begin_read_snapshot`] is open: a
    /// listing's cursor is then declared in it ([`Connection::for_each_row`]).
    reading: Cell<bool>,
    /// Whether the server refused [`Pg::url`]'s credentials when [`Pg::apart`] was opened:
    /// they were changed since this connection was opened (a rotated password).
    refused: Cell<bool>,
    /// Prepared statements by the store's SQL.
    statements: RefCell<HashMap<String, postgres::Statement>>,
    /// The same for [`Connection::insert`]'s inserts, prepared with `RETURNING id`.
    inserts: RefCell<HashMap<String, postgres::Statement>>,
}

impl Pg {
    fn statement(&self, sql: &str) -> Result<postgres::Statement> {
        self.prepared(&self.statements, sql, "")
    }

    /// `sql` (with `suffix`) as prepared in `cache`, prepared now if it is not there yet.
    fn prepared(
        &self,
        cache: &RefCell<HashMap<String, postgres::Statement>>,
        sql: &str,
        suffix: &str,
    ) -> Result<postgres::Statement> {
        if let Some(s) = cache.borrow().get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client.borrow_mut().prepare(&(postgres_sql(sql) + suffix))?;
        let mut cache = cache.borrow_mut();
        if cache.len() >= PG_STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    fn run(&self, stmt: &postgres::Statement, params: &[ValueRef<'_>]) -> Result<Vec<postgres::Row>> {
        Ok(self.client.borrow_mut().query(stmt, &postgres_params(params))?)
    }

    fn execute(&self, stmt: &postgres::Statement, params: &[ValueRef<'_>]) -> Result<usize> {
        let n = self.client.borrow_mut().execute(stmt, &postgres_params(params))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

fn postgres_params<'a>(values: &'a [ValueRef<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    values.iter().map(|p| p as &(dyn postgres::types::ToSql + Sync)).collect()
}

/// The `VALUES` list of a multi-row insert of `rows` rows of `columns` values:
/// `(?1, ?2), (?3, ?4)`. Built once per shape: a label flush sends 128 rows of 13 values, and
/// writing 1,664 placeholders cost more than the rows' B-tree inserts. Shapes are few (row
/// counts are powers of two, column counts those of granttrail's tables), so the texts kept
/// stay small.
pub(crate) fn value_rows(rows: usize, columns: usize) -> &'static str {
    static SHAPES: LazyLock<Mutex<HashMap<(usize, usize), &'static str>>> = LazyLock::new(Mutex::default);
    let mut shapes = SHAPES.lock().unwrap_or_else(PoisonError::into_inner);
    shapes.entry((rows, columns)).or_insert_with(|| {
        let mut text = String::with_capacity(rows * columns * 6);
        for r in 0..rows {
            text.push_str(if r == 0 { "(" } else { ", (" });
            for c in 1..=columns {
                if c > 1 {
                    text.push_str(", ");
                }
                // Writing to a String cannot fail.
                let _ = write!(text, "?{}", r * columns + c);
            }
            text.push(')');
        }
        Box::leak(text.into_boxed_str())
    })
}

/// Inserts `rows` into `into` (`table (columns)`) with `suffix` (an `ON CONFLICT` clause, or
/// nothing), up to `most` rows a statement: on PostgreSQL one round trip for many rows. Two
/// rows for one conflict target in one statement are an error with `DO UPDATE`: the caller
/// sends them in separate calls. Returns how many rows were inserted (`DO NOTHING` leaves
/// some out).
///
/// On SQLite the statements are `INSERT OR FAIL`. A failed statement of granttrail's is never
/// continued from: its transaction or savepoint is rolled back whole. SQLite's default
/// (`ABORT`) would undo the statement alone, and to be able to it copies every page a
/// multi-row statement changes to a statement journal first: a temporary file written through
/// 16 KB at a time, more bytes than the rows themselves. `FAIL` needs no such copy (a
/// `DO UPDATE` clause still does: SQLite gives its update `ABORT`).
pub(crate) fn insert_rows<const N: usize>(
    conn: &Connection,
    into: &str,
    suffix: &str,
    rows: &[[&dyn ToSql; N]],
    most: usize,
) -> Result<usize> {
    let insert = match conn.inner {
        Inner::Sqlite(_) => "INSERT OR FAIL INTO",
        Inner::Postgres(_) => "INSERT INTO",
    };
    let mut inserted = 0;
    let mut rest = rows;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), most));
        let sql = format!("{insert} {into} VALUES {} {suffix}", value_rows(now.len(), N));
        inserted += conn.prepare_cached(&sql)?.execute(params_from_iter(now.iter().flatten()))?;
        rest = later;
    }
    Ok(inserted)
}

/// The query counterpart of [`insert_rows`]: asks about `rows` up to `most` a statement, each
/// statement `query(list)` for a `VALUES` list of some of them (cast to `types`, numbered after
/// the parameters `first`, which every statement binds before them), and hands every row the
/// statements return to `each`. On PostgreSQL one round trip for many lookups.
pub(crate) fn query_listed<const N: usize, E: From<Error>>(
    conn: &Connection,
    query: impl Fn(&str) -> String,
    types: &[&str; N],
    first: &[&dyn ToSql],
    rows: &[[&dyn ToSql; N]],
    most: usize,
    mut each: impl FnMut(&Row<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), most));
        let mut stmt = conn.prepare_cached(&query(&typed_rows(now.len(), first.len(), types)))?;
        let mut found = stmt.query(params_from_iter(first.iter().chain(now.iter().flatten()).copied()))?;
        while let Some(r) = found.next()? {
            each(&r)?;
        }
        rest = later;
    }
    Ok(())
}

/// The statement counterpart of [`query_listed`]: runs `statement(list)` for `values`, up to
/// `most` a statement, `list` being a `VALUES` list of some of them (cast to `ty`, numbered after
/// the parameters `first`, which every statement binds before them). Returns the rows changed.
pub(crate) fn execute_listed<T: ToSql>(
    conn: &Connection,
    statement: impl Fn(&str) -> String,
    ty: &str,
    first: &[&dyn ToSql],
    values: &[T],
    most: usize,
) -> Result<usize> {
    let mut changed = 0;
    let mut rest = values;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), most));
        let sql = statement(&typed_rows(now.len(), first.len(), &[ty]));
        let listed = now.iter().map(|value| value as &dyn ToSql);
        changed +=
            conn.prepare_cached(&sql)?.execute(params_from_iter(first.iter().copied().chain(listed)))?;
        rest = later;
    }
    Ok(changed)
}

/// [`insert_rows`] for rows whose new `id`s are wanted: returns each row's, in the rows' order
/// (`None` for a row `suffix`'s `ON CONFLICT DO NOTHING` left out). On PostgreSQL the rows a
/// statement returns are matched to the rows sent by the text column `key` (its index in a row,
/// and its name), whose values must differ between the rows. SQLite inserts one row at a time:
/// it has no round trips to save, and its `RETURNING` costs a temporary table per statement.
pub(crate) fn insert_rows_returning_ids<const N: usize>(
    conn: &Connection,
    insert: &str,
    (key, key_column): (usize, &str),
    rows: &[[&dyn ToSql; N]],
    most: usize,
) -> Result<Vec<Option<i64>>> {
    if let Inner::Sqlite(_) = conn.inner {
        let sql = format!("{insert} VALUES {}", value_rows(1, N));
        return rows.iter().map(|row| conn.insert(&sql, &row[..])).collect();
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut rest = rows;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(rows_in_next_statement(rest.len(), most));
        let sql = format!("{insert} VALUES {} RETURNING id, {key_column}", value_rows(now.len(), N));
        let mut returned: HashMap<String, i64> = HashMap::with_capacity(now.len());
        {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(now.iter().flatten()))?;
            while let Some(r) = rows.next()? {
                returned.insert(r.get(1)?, r.get(0)?);
            }
        }
        for row in now {
            let ValueRef::Text(value) = row[key].to_sql() else {
                return Err(Error::Column { index: key, message: format!("{key_column} is not text") });
            };
            ids.push(returned.get(value).copied());
        }
        rest = later;
    }
    Ok(ids)
}

/// A `VALUES` list of `rows` rows of one parameter per type of `types`, numbered from
/// `?{after + 1}`, each cast to its type: PostgreSQL would take a bare parameter in `VALUES`
/// for text.
pub(crate) fn typed_rows(rows: usize, after: usize, types: &[&str]) -> String {
    let mut text = String::with_capacity(rows * types.len() * 24);
    for r in 0..rows {
        text.push_str(if r == 0 { "(" } else { ", (" });
        for (c, ty) in types.iter().enumerate() {
            if c > 0 {
                text.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(text, "CAST(?{} AS {ty})", after + r * types.len() + c + 1);
        }
        text.push(')');
    }
    text
}

/// How many of `remaining` rows the next multi-row statement takes: the largest power of two
/// up to `most`, so that a few statement shapes, each prepared once, serve every count.
pub(crate) fn rows_in_next_statement(remaining: usize, most: usize) -> usize {
    1 << remaining.min(most).max(1).ilog2()
}

/// `sql` with SQLite's `?N` (and bare `?`) parameters numbered the PostgreSQL way (`$N`),
/// outside string literals, quoted names and comments.
pub(crate) fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 1;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next_bare.to_string());
                    next_bare += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A client of the PostgreSQL server of `url`, over TLS unless `sslmode=disable` ([`tls`]).
fn postgres_client(url: &str) -> Result<postgres::Client> {
    let (libpq_url, tls) = tls::settings(url)?;
    let mut config: postgres::Config = libpq_url.parse()?;
    // granttrail's statements are short, but a text lookup per column and row (the grants
    // view) makes the planner's cost of a listing large enough to start JIT compilation, which
    // then took longer than the query (1 s for 6,000 grants). Listings read every row of their
    // cursor, so it is planned for the whole answer, not the first tenth of it. Sent at
    // start-up, so it costs no round trip; a user's own `options` come first and are kept.
    const OPTIONS: &str = "-c jit=off -c cursor_tuple_fraction=1";
    let options = match config.get_options() {
        Some(own) => format!("{own} {OPTIONS}"),
        None => OPTIONS.to_string(),
    };
    config.options(&options);
    Ok(match tls {
        None => config.connect(postgres::NoTls)?,
        Some(tls) => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))?,
    })
}

impl Connection {
    pub fn from_sqlite(conn: rusqlite::Connection) -> Connection {
        Connection {
            inner: Inner::Sqlite(conn),
            ids: RefCell::default(),
            shared: Cell::new(false),
            held: RefCell::default(),
            whole_from_start: RefCell::default(),
        }
    }

    /// A private SQLite database in memory, with granttrail's SQL functions.
    pub fn open_in_memory() -> Result<Connection> {
        let conn = rusqlite::Connection::open_in_memory()?;
        crate::texts::register_hash(&conn)?;
        Ok(Connection::from_sqlite(conn))
    }

    /// Connects to the PostgreSQL server of `url` (`postgres://user@host:port/database`), over
    /// TLS unless `sslmode=disable` ([`tls`]).
    pub fn connect_postgres(url: &str) -> Result<Connection> {
        let client = postgres_client(url)?;
        Ok(Connection {
            inner: Inner::Postgres(Box::new(Pg {
                client: RefCell::new(client),
                url: url.to_string(),
                apart: std::cell::OnceCell::new(),
                reading: Cell::new(false),
                refused: Cell::new(false),
                statements: RefCell::default(),
                inserts: RefCell::default(),
            })),
            ids: RefCell::default(),
            shared: Cell::new(false),
            held: RefCell::default(),
            whole_from_start: RefCell::default(),
        })
    }

    /// Whether this connection can do no more: the server closed it (a restart, a failover,
    /// maintenance) or refused its credentials for a second connection (a rotated password).
    /// A process that outlives one command (the Lambda) then opens the store again. A SQLite
    /// file is never lost this way.
    pub fn is_lost(&self) -> bool {
        let Inner::Postgres(pg) = &self.inner else { return false };
        let closed = pg.client.try_borrow().is_ok_and(|client| client.is_closed());
        closed || pg.refused.get() || pg.apart.get().is_some_and(|apart| apart.is_lost())
    }

    /// The id remembered for `text` ([`Connection::remember`]), if no rollback came since.
    pub(crate) fn remembered(&self, text: &str) -> Option<i64> {
        self.ids.borrow().ids.get(text).copied()
    }

    /// Remembers the id of the row of a text that is never deleted.
    pub(crate) fn remember(&self, text: &str, id: i64) {
        let mut memory = self.ids.borrow_mut();
        if memory.bytes + text.len() > REMEMBERED_BYTES || memory.ids.len() >= REMEMBERED_IDS {
            *memory = Remembered::default();
        }
        memory.bytes += text.len();
        memory.ids.insert(text.to_string(), id);
    }

    /// Undoes the open transaction (or, with `to_savepoint`, the open savepoint), forgetting
    /// the remembered ids: some may name rows the rollback removes.
    fn roll_back(&self, to_savepoint: bool) -> Result<()> {
        *self.ids.borrow_mut() = Remembered::default();
        // A savepoint rolled back releases the locks taken since: forgotten here, they are
        // taken again if needed (taking a lock held already is harmless). Those taken before
        // it are forgotten too, so the count of names starts again; on PostgreSQL the only
        // savepoint opens its transaction (an object of a batch, one object a commit), so
        // nothing was taken before it.
        self.held.borrow_mut().clear();
        if !to_savepoint {
            self.shared.set(false);
        }
        self.execute_batch(if to_savepoint {
            "ROLLBACK TO granttrail; RELEASE granttrail"
        } else {
            "ROLLBACK"
        })
    }

    /// Whether sending many rows or lookups in one statement pays: on PostgreSQL each statement
    /// is a round trip; on SQLite a function call, where gathering rows first only costs.
    pub(crate) fn batches_pay(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }

    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Sqlite(_) => Engine::Sqlite,
            Inner::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, functions, `VACUUM`).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare(sql)?.execute(params)
    }

    /// Truncates a SQLite file by its free pages (incremental auto-vacuum, which SQLite does a
    /// page per step: a statement run once, as `execute_batch` runs it, gives back one page).
    /// PostgreSQL reuses free space itself.
    pub(crate) fn give_back_free_pages(&self) -> Result<()> {
        if let Inner::Sqlite(c) = &self.inner {
            let mut stmt = c.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        }
        Ok(())
    }

    /// Runs the query `sql` and calls `each` with its rows in turn, for answers too long to
    /// hold. A PostgreSQL client receives a whole result before its first row is read; here
    /// the rows are fetched from a cursor [`ROWS_PER_FETCH`] at a time, so memory stays flat
    /// however long the answer, and `each` may query this connection between fetches. Call it
    /// in [`Connection::begin_read_snapshot`]'s transaction, where the cursor sees what the
    /// lookups beside it see, or outside a transaction, where it takes one of its own. Returns
    /// the first error of `each` (which stops the reading) inside the database's result.
    pub fn for_each_row<E>(
        &self,
        sql: &str,
        params: impl Params,
        mut each: impl FnMut(&Row<'_>) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<(), E>> {
        let Inner::Postgres(pg) = &self.inner else {
            let mut stmt = self.prepare(sql)?;
            let mut rows = stmt.query(params)?;
            while let Some(row) = rows.next()? {
                if let Err(e) = each(&row) {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(()));
        };
        let values = params.values();
        let own_transaction = !pg.reading.get();
        if own_transaction {
            self.execute_batch(BEGIN_READ_ONLY)?;
        }
        let read = (|| -> Result<std::result::Result<(), E>> {
            let declare = format!("DECLARE granttrail_rows NO SCROLL CURSOR FOR {}", postgres_sql(sql));
            postgres::fallible_iterator::FallibleIterator::count(
                pg.client.borrow_mut().query_raw(declare.as_str(), values.iter())?,
            )?;
            // Prepared once: each fetch is then one round trip, not two.
            let fetch =
                pg.client.borrow_mut().prepare(&format!("FETCH {ROWS_PER_FETCH} FROM granttrail_rows"))?;
            loop {
                let rows = pg.client.borrow_mut().query(&fetch, &[])?;
                for row in &rows {
                    if let Err(e) = each(&Row { inner: RowInner::Postgres(row) }) {
                        return Ok(Err(e));
                    }
                }
                if rows.len() < ROWS_PER_FETCH {
                    return Ok(Ok(()));
                }
            }
        })();
        let ended = if own_transaction {
            self.execute_batch(if read.is_ok() { "COMMIT" } else { "ROLLBACK" })
        } else if read.is_ok() {
            self.execute_batch("CLOSE granttrail_rows")
        } else {
            // The failed statement aborted the transaction, and the cursor with it.
            Ok(())
        };
        match read? {
            // A lookup of `each` that failed aborted the transaction, and the CLOSE after it
            // with it: the error worth reporting is `each`'s own.
            Err(e) => Ok(Err(e)),
            Ok(()) => ended.map(|()| Ok(())),
        }
    }

    /// Begins a read-only transaction that sees one state of the database to its end,
    /// [`Connection::for_each_row`]'s listings included. The transaction lasts as long as the
    /// connection: it is for commands that only read.
    pub fn begin_read_snapshot(&self) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch("BEGIN DEFERRED")?),
            Inner::Postgres(pg) => {
                self.execute_batch(BEGIN_READ_ONLY)?;
                pg.reading.set(true);
                Ok(())
            }
        }
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(pg) => Ok(pg.client.borrow_mut().batch_execute(sql)?),
        }
    }

    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> Result<T> {
        self.prepare(sql)?.query_row(params, f)
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.statement(sql, false)
    }

    /// Runs `insert`, an `INSERT` of one row into a table with an `id` column, and returns the
    /// new row's id, or `None` when `ON CONFLICT DO NOTHING` left nothing inserted. SQLite
    /// reports the row id itself (its `RETURNING` costs a temporary table per statement: a
    /// third of ingest's time when every event row used it); PostgreSQL is asked for it.
    pub fn insert(&self, insert: &str, params: impl Params) -> Result<Option<i64>> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let values = params.values();
                let inserted = c.prepare_cached(insert)?.execute(sqlite_params(&values))?;
                Ok((inserted > 0).then(|| c.last_insert_rowid()))
            }
            Inner::Postgres(pg) => {
                let stmt = pg.prepared(&pg.inserts, insert, " RETURNING id")?;
                match pg.run(&stmt, &params.values())?.first() {
                    Some(row) => Ok(Some(Row { inner: RowInner::Postgres(row) }.get(0)?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Like [`Connection::prepare`], keeping the statement prepared for the next use.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        self.statement(sql, true)
    }

    /// Like [`Connection::prepare`], but planned for its parameters whenever it is prepared on
    /// PostgreSQL, not by a plan cached with the statement: a plan made while a table was
    /// small (early in a long transaction that fills it) would scan it whole for good.
    pub fn prepare_for_these_parameters(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.inner {
            Inner::Postgres(pg) => {
                let stmt = pg.client.borrow_mut().prepare(&postgres_sql(sql))?;
                Ok(Statement { inner: StatementInner::Postgres { pg, stmt } })
            }
            Inner::Sqlite(_) => self.prepare_cached(sql),
        }
    }

    fn statement(&self, sql: &str, cached: bool) -> Result<Statement<'_>> {
        let inner = match &self.inner {
            Inner::Sqlite(c) if cached => StatementInner::SqliteCached(c.prepare_cached(sql)?),
            Inner::Sqlite(c) => StatementInner::Sqlite(c.prepare(sql)?),
            Inner::Postgres(pg) => StatementInner::Postgres { pg, stmt: pg.statement(sql)? },
        };
        Ok(Statement { inner })
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(TransactionBehavior::Deferred)
    }

    /// Begins a transaction; [`TransactionBehavior::Immediate`] waits for the other writers.
    pub fn transaction_with_behavior(&mut self, behavior: TransactionBehavior) -> Result<Transaction<'_>> {
        match (&self.inner, behavior) {
            (Inner::Sqlite(_), TransactionBehavior::Deferred) => self.execute_batch("BEGIN DEFERRED")?,
            (Inner::Sqlite(_), TransactionBehavior::Immediate) => self.execute_batch("BEGIN IMMEDIATE")?,
            (Inner::Postgres(_), TransactionBehavior::Deferred) => self.execute_batch("BEGIN")?,
            (Inner::Sqlite(_), TransactionBehavior::Shared) => self.execute_batch("BEGIN IMMEDIATE")?,
            (Inner::Postgres(_), TransactionBehavior::Immediate | TransactionBehavior::Shared) => {
                let shared = behavior == TransactionBehavior::Shared;
                self.execute_batch("BEGIN")?;
                let lock = if shared { "pg_advisory_xact_lock_shared" } else { "pg_advisory_xact_lock" };
                let locked = self.query_row(&format!("SELECT {lock}(?1)"), [WRITER_LOCK], |_| Ok(()));
                if let Err(e) = locked {
                    let _ = self.roll_back(false);
                    return Err(e);
                }
                self.begin_beside_others(shared);
            }
        }
        Ok(Transaction { conn: self, done: false })
    }

    /// A [`TransactionBehavior::Immediate`] transaction, or `None` at once, without waiting,
    /// when another writer holds the writers' lock of the PostgreSQL database.
    pub fn transaction_unless_busy(&mut self) -> Result<Option<Transaction<'_>>> {
        if let Inner::Sqlite(_) = self.inner {
            return self.transaction_with_behavior(TransactionBehavior::Immediate).map(Some);
        }
        self.execute_batch("BEGIN")?;
        match self.query_row("SELECT pg_try_advisory_xact_lock(?1)", [WRITER_LOCK], |r| r.get::<_, bool>(0)) {
            Ok(true) => Ok(Some(Transaction { conn: self, done: false })),
            Ok(false) => {
                self.roll_back(false)?;
                Ok(None)
            }
            Err(e) => {
                let _ = self.roll_back(false);
                Err(e)
            }
        }
    }

    /// Runs `work` on rows that are right to keep whatever becomes of the open transaction
    /// (texts, never deleted; marks of what to relabel, which at worst relabel for nothing).
    /// Beside other writers ([`TransactionBehavior::Shared`] on PostgreSQL) `work` runs in a
    /// transaction of its own on a second connection, committed at once, so that its locks and
    /// rows do not make other writers wait for the whole open transaction; elsewhere it runs in
    /// the open transaction.
    pub(crate) fn apart<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let Inner::Postgres(pg) = &self.inner else { return work(self) };
        if !self.shared.get() {
            return work(self);
        }
        let apart = match pg.apart.get() {
            Some(apart) => apart,
            None => {
                let opened = Connection::connect_postgres(&pg.url).inspect_err(|e| {
                    pg.refused.set(e.is_refused_credentials());
                })?;
                pg.apart.get_or_init(|| Box::new(opened))
            }
        };
        apart.execute_batch("BEGIN")?;
        apart.begin_beside_others(true);
        let done = work(apart);
        apart.shared.set(false);
        match done {
            Ok(value) => {
                apart.execute_batch("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                apart.execute_batch("ROLLBACK")?;
                Err(e)
            }
        }
    }

    /// Whether the open transaction writes beside others ([`TransactionBehavior::Shared`] on
    /// PostgreSQL), and so must lock by name what it reads to decide and what it changes.
    pub(crate) fn beside_others(&self) -> bool {
        self.shared.get()
    }

    /// Marks the transaction just begun as one beside other writers (or not), with nothing
    /// locked yet.
    fn begin_beside_others(&self, beside: bool) {
        self.shared.set(beside);
        self.held.borrow_mut().clear();
    }

    /// Locks `names` of `kind` until the transaction ends, when it writes beside others
    /// ([`TransactionBehavior::Shared`] on PostgreSQL); otherwise it is alone and this does
    /// nothing. The kind is locked shared first, then each name. Each call locks in one order
    /// (by the names' hashes), but two calls can still cross another writer's: the server then
    /// undoes one of them ([`Error::is_conflict`]).
    ///
    /// Past [`MOST_NAMES_LOCKED`] names the kind is locked whole (exclusively) instead: other
    /// writers of the kind wait for the commit. A transaction holding names of the kind already
    /// does not wait for that lock (two such would each wait for the other), but fails with
    /// [`Error::KindBusy`] when another writer holds names of the kind; done again, it locks the
    /// kind whole from its first name.
    pub(crate) fn lock<'a>(&self, kind: Named, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        if !self.shared.get() {
            return Ok(());
        }
        let mut held = self.held.borrow_mut();
        let held = held.entry(kind).or_insert_with(|| Held::Names(HashSet::default()));
        let Held::Names(locked) = held else { return Ok(()) };
        let mut ids: Vec<i64> =
            names.into_iter().map(|n| name_lock(kind, n)).filter(|id| !locked.contains(id)).collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort_unstable();
        ids.dedup();
        let whole = kind_lock(kind);
        if locked.len() + ids.len() > MOST_NAMES_LOCKED || self.whole_from_start.borrow().contains(&kind) {
            self.whole_from_start.borrow_mut().insert(kind);
            if locked.is_empty() {
                self.advisory_locks(None, &[whole])?;
            } else if !self
                .query_row("SELECT pg_try_advisory_xact_lock(?1)", [whole], |r| r.get::<_, bool>(0))?
            {
                return Err(Error::KindBusy);
            }
            *held = Held::Kind;
            return Ok(());
        }
        // The kind shared before its first names, in the same statement.
        self.advisory_locks(locked.is_empty().then_some(whole), &ids)?;
        locked.extend(ids);
        Ok(())
    }

    /// Takes the advisory lock `shared` (if any) shared, then the locks `ids` exclusively, in
    /// their order: in one statement for up to [`LOCKS_PER_STATEMENT`] of them.
    fn advisory_locks(&self, shared: Option<i64>, ids: &[i64]) -> Result<()> {
        let locks: Vec<(i64, bool)> =
            shared.map(|id| (id, true)).into_iter().chain(ids.iter().map(|&id| (id, false))).collect();
        for chunk in locks.chunks(LOCKS_PER_STATEMENT) {
            let sql = format!(
                "SELECT CASE WHEN v.shared THEN pg_advisory_xact_lock_shared(v.id) ELSE pg_advisory_xact_lock(v.id) END
                 FROM (VALUES {}) AS v(id, shared)",
                typed_rows(chunk.len(), 0, &["bigint", "boolean"])
            );
            let params = chunk.iter().flat_map(|(id, shared)| [id as &dyn ToSql, shared as &dyn ToSql]);
            self.prepare_cached(&sql)?.execute(params_from_iter(params))?;
        }
        Ok(())
    }
}

/// A transaction: committed by [`Transaction::commit`], rolled back when dropped otherwise.
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.shared.set(false);
        let committed = self.conn.execute_batch("COMMIT");
        if committed.is_ok() {
            self.conn.whole_from_start.borrow_mut().clear();
        } else {
            // A commit that fails rolls the transaction back on PostgreSQL. SQLite keeps it
            // open when the file is busy (a reader holds it past the busy timeout): it is
            // rolled back here, or the connection would stay inside it.
            *self.conn.ids.borrow_mut() = Remembered::default();
            if let Inner::Sqlite(c) = &self.conn.inner
                && !c.is_autocommit()
            {
                let _ = c.execute_batch("ROLLBACK");
            }
        }
        committed
    }

    /// A savepoint inside this transaction: its writes are undone alone if it is dropped.
    pub fn savepoint(&mut self) -> Result<Savepoint<'_>> {
        self.conn.execute_batch("SAVEPOINT granttrail")?;
        Ok(Savepoint { conn: self.conn, done: false })
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nothing to report to: the caller is already returning an error.
            let _ = self.conn.roll_back(false);
        }
    }
}

/// A savepoint: released by [`Savepoint::commit`], rolled back to when dropped otherwise.
pub struct Savepoint<'c> {
    conn: &'c Connection,
    done: bool,
}

impl Savepoint<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("RELEASE granttrail")
    }
}

impl std::ops::Deref for Savepoint<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.roll_back(true);
        }
    }
}

pub struct Statement<'c> {
    inner: StatementInner<'c>,
}

enum StatementInner<'c> {
    Sqlite(rusqlite::Statement<'c>),
    SqliteCached(rusqlite::CachedStatement<'c>),
    Postgres { pg: &'c Pg, stmt: postgres::Statement },
}

/// What a statement runs on.
enum Target<'s, 'c> {
    Sqlite(&'s mut rusqlite::Statement<'c>),
    Postgres(&'c Pg, &'s postgres::Statement),
}

/// A parameter as SQLite takes it.
struct Bind<'a>(ValueRef<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef as V;
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self.0 {
            ValueRef::Null => V::Null,
            ValueRef::Integer(i) => V::Integer(i),
            ValueRef::Real(f) => V::Real(f),
            ValueRef::Text(s) => V::Text(s.as_bytes()),
            ValueRef::Blob(b) => V::Blob(b),
        }))
    }
}

fn sqlite_params<'a>(values: &'a [ValueRef<'a>]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(values.iter().map(|v| Bind(*v)))
}

impl<'c> Statement<'c> {
    /// The names of the columns the statement returns.
    pub fn column_names(&self) -> Vec<String> {
        match &self.inner {
            StatementInner::Sqlite(s) => s.column_names().map(String::from).collect(),
            StatementInner::SqliteCached(s) => s.column_names().map(String::from).collect(),
            StatementInner::Postgres { stmt, .. } => {
                stmt.columns().iter().map(|c| c.name().to_string()).collect()
            }
        }
    }

    fn target(&mut self) -> Target<'_, 'c> {
        match &mut self.inner {
            StatementInner::Sqlite(s) => Target::Sqlite(s),
            StatementInner::SqliteCached(s) => Target::Sqlite(s),
            StatementInner::Postgres { pg, stmt } => Target::Postgres(pg, stmt),
        }
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values();
        match self.target() {
            Target::Sqlite(s) => Ok(s.execute(sqlite_params(&values))?),
            Target::Postgres(pg, stmt) => pg.execute(stmt, &values),
        }
    }

    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let values = params.values();
        let inner = match self.target() {
            Target::Sqlite(s) => RowsInner::Sqlite(s.query(sqlite_params(&values))?),
            Target::Postgres(pg, stmt) => {
                RowsInner::Postgres { rows: pg.run(stmt, &values)?.into_iter(), current: None }
            }
        };
        Ok(Rows { inner })
    }

    pub fn query_map<T, P: Params, F: FnMut(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        map: F,
    ) -> Result<MappedRows<'_, F>> {
        Ok(MappedRows { rows: self.query(params)?, map })
    }

    pub fn query_row<T, P: Params, F: FnOnce(&Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(Error::NoRows),
        }
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }
}

pub struct Rows<'s> {
    inner: RowsInner<'s>,
}

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Postgres { rows: std::vec::IntoIter<postgres::Row>, current: Option<postgres::Row> },
}

impl Rows<'_> {
    /// The next row, borrowed until the one after is asked for (so not an `Iterator`).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsInner::Sqlite(rows) => Ok(rows.next()?.map(|r| Row { inner: RowInner::Sqlite(r) })),
            RowsInner::Postgres { rows, current } => {
                *current = rows.next();
                Ok(current.as_ref().map(|r| Row { inner: RowInner::Postgres(r) }))
            }
        }
    }
}

pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    map: F,
}

impl<T, F: FnMut(&Row<'_>) -> Result<T>> Iterator for MappedRows<'_, F> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.map)(&row)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// A column position (only positions: the store names no columns when reading).
pub trait RowIndex {
    fn position(self) -> usize;
}

impl RowIndex for usize {
    fn position(self) -> usize {
        self
    }
}

pub struct Row<'r> {
    inner: RowInner<'r>,
}

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `index` read as `T`; a value of another type is an error naming the column.
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let index = index.position();
        let column = |message: String| Error::Column { index, message };
        match &self.inner {
            RowInner::Sqlite(row) => {
                let value = row.get_ref(index)?;
                T::column_result(sqlite_value(value)).map_err(column)
            }
            RowInner::Postgres(row) => {
                let value: PgValue = row.try_get(index)?;
                T::column_result(value.0.as_ref()).map_err(column)
            }
        }
    }
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> ValueRef<'_> {
    use rusqlite::types::ValueRef as V;
    match value {
        V::Null => ValueRef::Null,
        V::Integer(i) => ValueRef::Integer(i),
        V::Real(f) => ValueRef::Real(f),
        // SQLite's text is UTF-8 unless something outside granttrail wrote it; such text reads
        // as a blob and fails as the wrong type, never as garbage.
        V::Text(t) => std::str::from_utf8(t).map_or(ValueRef::Blob(t), ValueRef::Text),
        V::Blob(b) => ValueRef::Blob(b),
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl postgres::types::ToSql for ValueRef<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        use postgres::types::ToSql as Pg;
        match *self {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(i) => match *ty {
                Type::INT8 => Pg::to_sql(&i, ty, out),
                Type::INT4 => Pg::to_sql(&i32::try_from(i)?, ty, out),
                Type::INT2 => Pg::to_sql(&i16::try_from(i)?, ty, out),
                Type::BOOL => Pg::to_sql(&(i != 0), ty, out),
                Type::FLOAT8 => Pg::to_sql(&(i as f64), ty, out),
                Type::TEXT | Type::VARCHAR => Pg::to_sql(&i.to_string(), ty, out),
                _ => Err(format!("an integer cannot be bound to a parameter of type {ty}").into()),
            },
            // The values below are written unchecked: sent for a parameter of another type
            // (a SQLite file's column may hold anything), the server would read their bytes as
            // that type's, a wrong value rather than an error.
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => Pg::to_sql(&f, ty, out),
                Type::FLOAT4 => Pg::to_sql(&(f as f32), ty, out),
                _ => Err(format!("a real number cannot be bound to a parameter of type {ty}").into()),
            },
            ValueRef::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
                    Pg::to_sql(&s, ty, out)
                }
                _ => Err(format!("a text cannot be bound to a parameter of type {ty}").into()),
            },
            ValueRef::Blob(b) => match *ty {
                Type::BYTEA => Pg::to_sql(&b, ty, out),
                _ => Err(format!("a blob cannot be bound to a parameter of type {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A column of any type granttrail's schema uses, read from PostgreSQL.
struct PgValue(Value);

impl<'a> postgres::types::FromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            _ => Value::Text(String::from_sql(ty, raw)?),
        };
        Ok(PgValue(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A NUMERIC (what PostgreSQL's `sum` of integers returns), as an integer when it is one.
fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a NUMERIC value is cut short".into())
    };
    let digits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let scale = word(3)?;
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut value = 0f64;
    let mut integer: Option<i128> = Some(0);
    for i in 0..digits {
        let d = word(4 + i)?;
        let power = weight - i as i32;
        value += f64::from(d) * 10000f64.powi(power);
        integer = match (integer, u32::try_from(power)) {
            (Some(n), Ok(p)) => 10000i128
                .checked_pow(p)
                .and_then(|m| i128::from(d).checked_mul(m))
                .and_then(|dm| n.checked_add(dm)),
            _ if d == 0 => integer,
            _ => None,
        };
    }
    let negative = sign == 0x4000;
    match integer.and_then(|n| i64::try_from(if negative { -n } else { n }).ok()) {
        Some(n) if scale == 0 => Ok(Value::Integer(n)),
        _ => Ok(Value::Real(if negative { -value } else { value })),
    }
}

/// Something that answers SQL: a connection, a transaction or a savepoint.
pub trait OptionalExtension<T> {
    /// `None` for a query that returned no row.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_the_postgres_way_outside_literals() {
        assert_eq!(
            postgres_sql("SELECT '?1', \"a?\" FROM t WHERE a = ?1 AND b = ?12 -- c ?3\n AND d = ?"),
            "SELECT '?1', \"a?\" FROM t WHERE a = $1 AND b = $12 -- c ?3\n AND d = $1"
        );
    }

    #[test]
    fn multi_row_statements_take_powers_of_two() {
        assert_eq!(value_rows(2, 3), "(?1, ?2, ?3), (?4, ?5, ?6)");
        assert_eq!(value_rows(1, 1), "(?1)");
        let shapes: Vec<usize> =
            [1, 2, 3, 127, 128, 129, 1000].iter().map(|&n| rows_in_next_statement(n, 128)).collect();
        assert_eq!(shapes, [1, 2, 2, 64, 128, 128, 128]);
    }

    #[test]
    fn numerics_read_as_integers_when_whole() {
        // 123456789: weight 2, digits 1 2345 6789.
        let raw = [0, 3, 0, 2, 0, 0, 0, 0, 0, 1, 0x09, 0x29, 0x1a, 0x85];
        assert_eq!(numeric(&raw).ok(), Some(Value::Integer(123_456_789)));
        let negative = [0, 1, 0, 0, 0x40, 0, 0, 0, 0, 7];
        assert_eq!(numeric(&negative).ok(), Some(Value::Integer(-7)));
        let zero = [0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(numeric(&zero).ok(), Some(Value::Integer(0)));
        assert!(numeric(&[0, 1]).is_err());
        // A number too large for any integer reads as a real, without overflowing: 9999 x 10000^9.
        let huge = [0, 1, 0, 9, 0, 0, 0, 0, 0x27, 0x0f];
        assert!(matches!(numeric(&huge), Ok(Value::Real(r)) if r > 9e39));
    }

    /// SQLite keeps a transaction open when its COMMIT finds the file busy (a reader holds it
    /// in rollback-journal mode): the commit's error comes back, and the transaction is gone.
    #[test]
    fn a_commit_refused_by_a_reader_leaves_no_transaction_open() {
        #![allow(clippy::unwrap_used)]
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let setup = rusqlite::Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "PRAGMA journal_mode = DELETE; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)",
            )
            .unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.busy_timeout(std::time::Duration::ZERO).unwrap();
        let mut writer = Connection::from_sqlite(raw);
        let reader = rusqlite::Connection::open(&path).unwrap();
        let mut reading = reader.prepare("SELECT x FROM t").unwrap();
        let mut rows = reading.query([]).unwrap();
        assert!(rows.next().unwrap().is_some(), "the reader holds its lock while its rows are open");

        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert!(tx.commit().is_err(), "the reader keeps the writer from committing");
        assert!(writer.sqlite().unwrap().is_autocommit(), "the refused transaction was rolled back");
        drop(rows);
        let count: i64 = writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 1, "the refused insert is undone");
    }
}
