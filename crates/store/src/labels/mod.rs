//! Recomputing call labels for the keys an object (or an import) touched.
//!
//! A label depends on the grants of its key, the key's policy history, the principal's IAM
//! changes, the imports, and the observations of its behaviour group (grant-less successes
//! and denials of the same caller calling the same way). A key whose policy context changed,
//! or that gained a grant known only from its end, is relabelled whole; so is a key in a bulk
//! load. Otherwise a key is relabelled incrementally: its new calls, its calls from the time a
//! grant was created or ended, and the stored labels whose nearest observations moved. Both
//! give exactly what a rebuild gives (crates/ingest/tests/order_independence.rs).
//!
//! - `stale`: persisting what ingested objects left to relabel (the rules of what a new fact
//!   makes stale are in `granttrail_grants::invalidation`);
//! - `incremental`: which keys can be relabelled incrementally, and how;
//! - `whole`: relabelling every call on a key, a long history in windows of time;
//! - `rows`: writing labels and observations, only where they differ.

mod incremental;
mod rows;
mod stale;
mod whole;

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeSet;
use std::sync::LazyLock;

use crate::db::Connection;
use granttrail_grants::event::{CLOUDTRAIL_SOURCE, KMS_SOURCE};
use granttrail_grants::invalidation::KEY_CONTEXT_EVENTS;
use granttrail_grants::{
    IamSnapshot, ImportedIam, ImportedKeyPolicy, Invalidation, KmsEvent, Policy, Settings, classify_keyless,
};

use crate::texts::TextReader;
use crate::write::{RAW_EVENT_COLUMNS, TextlessEvent};
use crate::{Result, StoreError};
use incremental::{incremental_plan, relabel_incrementally};
use rows::replace_labels;
pub(crate) use stale::{KEYLESS, keys_marked, mark_labelled, mark_stale, only, stale};
use whole::{KeyWrite, KeyWriter, classify_whole_key, relabel_whole_key};

/// How keys are relabelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strategy {
    /// Rechecking a call costs a few times what it costs in a whole-key relabelling (its
    /// neighbours are looked up one by one), so a key goes whole unless its stored history is
    /// this many times the calls to recheck.
    pub history_per_rechecked_call: i64,
    /// A key relabelled whole is read in windows of about this many events.
    pub window_events: usize,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy { history_per_rechecked_call: 3, window_events: 1024 }
    }
}

/// The condition on `event_name` that selects the events that set a key's context
/// ([`KEY_CONTEXT_EVENTS`]). The partial index `events_key_context` is on this condition, spelled
/// the same way, so that queries use it (a test compares the two).
fn key_context_names() -> String {
    KEY_CONTEXT_EVENTS.iter().map(|name| format!("event_name = '{name}'")).collect::<Vec<_>>().join(" OR ")
}

/// The events that set the context of the key whose text id is bound to `?1`.
static KEY_CONTEXT: LazyLock<String> = LazyLock::new(|| format!("key = ?1 AND ({})", key_context_names()));

/// The events that change permissions ([`granttrail_grants::invalidation::changes_permissions`]: neither KMS calls nor trail
/// configuration), by the condition of the partial index `events_permission_changes`.
static PERMISSION_CHANGES: LazyLock<String> =
    LazyLock::new(|| format!("event_source <> '{KMS_SOURCE}' AND event_source <> '{CLOUDTRAIL_SOURCE}'"));

/// How each part of a query [`load_events`] runs begins (`... WHERE`, on `event_rows`).
pub(super) static SELECT_EVENTS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {RAW_EVENT_COLUMNS} FROM event_rows"));

/// The events `sql` selects, its parts begun by [`SELECT_EVENTS`], their texts read through
/// `texts`: one reader for a key's reads finds each text the key's events name once.
fn load_events(
    conn: &Connection,
    texts: &mut TextReader,
    sql: &str,
    args: impl crate::db::Params,
) -> Result<Vec<KmsEvent>> {
    let mut rows = Vec::new();
    for row in conn.prepare_cached(sql)?.query_map(args, TextlessEvent::from_row)? {
        rows.push(row??);
    }
    TextlessEvent::read(conn, rows, texts)
}

fn all_keys(conn: &Connection) -> Result<BTreeSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT key_arn FROM events WHERE key_arn IS NOT NULL
         UNION SELECT destination_key_arn FROM events WHERE destination_key_arn IS NOT NULL",
    )?;
    let keys = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(keys)
}

pub(crate) fn keys_used_by_account(conn: &Connection, account: &str) -> Result<BTreeSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT key_arn FROM events WHERE caller_account_id = ?1 AND key_arn IS NOT NULL
         UNION SELECT DISTINCT destination_key_arn FROM events WHERE caller_account_id = ?1 AND destination_key_arn IS NOT NULL",
    )?;
    let keys = stmt.query_map([account], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(keys)
}

/// Every imported key policy, by key, each key's in the order they were imported (the
/// classifier takes the first of two equally near). A few, imported by hand: read once for
/// all the keys a pass relabels, not once per key.
fn imported_key_policies(conn: &Connection) -> Result<HashMap<String, Vec<ImportedKeyPolicy>>> {
    let mut stmt =
        conn.prepare_cached("SELECT key_arn, at, policy, source FROM imported_key_policies ORDER BY id")?;
    let rows: Vec<(String, i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut by_key: HashMap<String, Vec<ImportedKeyPolicy>> = HashMap::new();
    for (key, at, text, source) in rows {
        let policy =
            Policy::parse(&text).map_err(|e| StoreError::Corrupt(format!("imported key policy: {e}")))?;
        by_key.entry(key).or_default().push(ImportedKeyPolicy { at, policy, source });
    }
    Ok(by_key)
}

fn imported_iam(conn: &Connection) -> Result<Vec<ImportedIam>> {
    let mut stmt = conn.prepare_cached("SELECT account, at, document, source FROM imported_iam")?;
    let rows: Vec<(String, i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(account, at, document, source)| {
            let snapshot = IamSnapshot::parse(&document)
                .map_err(|e| StoreError::Corrupt(format!("imported IAM: {e}")))?;
            Ok(ImportedIam { account, at, snapshot, source })
        })
        .collect()
}

/// What every key's classification shares: permission changes outside KMS, IAM imports and
/// the imported key policies.
struct Shared {
    policy_changes: Vec<KmsEvent>,
    iam: Vec<ImportedIam>,
    key_policies: HashMap<String, Vec<ImportedKeyPolicy>>,
}

impl Shared {
    /// The key policies imported for `key`.
    fn key_policies(&self, key: &str) -> &[ImportedKeyPolicy] {
        self.key_policies.get(key).map_or(&[], Vec::as_slice)
    }
}

/// What a relabelling did: how many keys it read whole (and of those, how many on a second
/// thread), how many it relabelled incrementally, and which keys those were.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Relabelled {
    pub whole_keys: usize,
    pub incremental_keys: usize,
    /// Of the whole keys, those classified on a second thread while earlier ones were written.
    pub read_ahead_keys: usize,
    pub keys: Vec<String>,
}

impl Relabelled {
    /// Adds what a later pass relabelled.
    pub(crate) fn add(&mut self, later: Relabelled) {
        self.whole_keys += later.whole_keys;
        self.incremental_keys += later.incremental_keys;
        self.read_ahead_keys += later.read_ahead_keys;
        self.keys.extend(later.keys);
    }
}

/// Relabels what `dirty` names: whole keys, or the new calls of a key and what they changed.
///
/// `read_ahead` lets keys relabelled whole be classified on a second connection
/// ([`relabel_whole_keys`]); only for a transaction that has changed no event, grant or import.
pub(crate) fn recompute(
    conn: &Connection,
    dirty: &Invalidation,
    settings: &Settings,
    strategy: Strategy,
    read_ahead: Option<OpenReader<'_>>,
) -> Result<Relabelled> {
    if dirty.is_empty() {
        return Ok(Relabelled::default());
    }
    let mut whole = if dirty.everything { all_keys(conn)? } else { dirty.context_keys.clone() };
    for account in &dirty.accounts {
        whole.extend(keys_used_by_account(conn, account)?);
    }
    let mut incremental = incremental_plan(conn, dirty, settings, strategy, &mut whole)?;
    let shared = Shared {
        policy_changes: load_events(
            conn,
            &mut TextReader::default(),
            &format!("{} WHERE {}", SELECT_EVENTS.as_str(), *PERMISSION_CHANGES),
            [],
        )?,
        iam: imported_iam(conn)?,
        key_policies: imported_key_policies(conn)?,
    };
    let mut undone = Vec::new();
    // Texts are only ever added: what one key's reads found serves the next.
    let mut texts = TextReader::default();
    for (key, increment) in &incremental {
        if !relabel_incrementally(conn, &mut texts, key, increment, &shared, settings)? {
            undone.push(key.clone());
        }
    }
    for key in undone {
        incremental.remove(&key);
        whole.insert(key);
    }
    let read_ahead_keys =
        relabel_whole_keys(conn, &whole, &shared, settings, strategy.window_events, read_ahead)?;
    if dirty.keyless || dirty.everything {
        let events = load_events(
            conn,
            &mut TextReader::default(),
            &format!(
                "{} WHERE key IS NULL AND destination_key IS NULL
                   AND event_source = 'kms.amazonaws.com'",
                SELECT_EVENTS.as_str()
            ),
            [],
        )?;
        replace_labels(conn, KEYLESS, &classify_keyless(&events), &[])?;
    }
    let keys = whole.iter().chain(incremental.keys()).cloned().collect();
    Ok(Relabelled { whole_keys: whole.len(), incremental_keys: incremental.len(), read_ahead_keys, keys })
}

/// Opens another connection to the database, which sees what the writing one saw when its
/// transaction began: every event, grant and import, none of the labels it is writing.
pub(crate) type OpenReader<'a> = &'a (dyn Fn() -> Result<Connection> + Sync);

/// Writes handed from the reading thread to the writing one and not yet stored: each holds at
/// most one window of a key's labels. Four, not two: keys differ in size, and with room for
/// only two the threads took turns waiting for each other (docs/performance.md, item 26).
const WRITES_AHEAD: usize = 4;

/// Relabels `keys` whole. With `read_ahead`, a second thread reads and classifies the keys on
/// its own connection while this one stores what it found for the keys or windows before:
/// reading and classifying take about as long as storing, and keys are independent. Returns
/// the keys classified on the second thread.
fn relabel_whole_keys(
    conn: &Connection,
    keys: &BTreeSet<String>,
    shared: &Shared,
    settings: &Settings,
    window_events: usize,
    read_ahead: Option<OpenReader<'_>>,
) -> Result<usize> {
    let Some(open) = read_ahead.filter(|_| keys.len() > 1) else {
        for key in keys {
            relabel_whole_key(conn, key, shared, settings, window_events)?;
        }
        return Ok(0);
    };
    std::thread::scope(|scope| {
        // Each key's writes in order, then `None` once the key is done.
        let (send, writes) =
            std::sync::mpsc::sync_channel::<Result<(&String, Option<KeyWrite>)>>(WRITES_AHEAD);
        scope.spawn(move || {
            let read = || -> Result<()> {
                let reader = open()?;
                for key in keys {
                    let hand_over = |write| {
                        send.send(Ok((key, write)))
                            .map_err(|_| StoreError::Invalid("the labels' writer stopped".to_string()))
                    };
                    classify_whole_key(&reader, key, shared, settings, window_events, &mut |w| {
                        hand_over(Some(w))
                    })?;
                    hand_over(None)?;
                }
                Ok(())
            };
            if let Err(e) = read() {
                // Nobody to tell when the writer stopped first.
                let _ = send.send(Err(e));
            }
        });
        let mut done = 0;
        let mut writer: Option<KeyWriter<'_>> = None;
        for item in writes {
            let (key, write) = item?;
            match write {
                Some(write) => {
                    let current = match &mut writer {
                        Some(w) if w.key() == key.as_str() => w,
                        slot => slot.insert(KeyWriter::new(key)),
                    };
                    current.write(conn, write)?;
                }
                None => {
                    writer = None;
                    done += 1;
                }
            }
        }
        if done != keys.len() {
            return Err(StoreError::Invalid(format!(
                "labelling stopped after {done} of {} keys: the reading thread ended early",
                keys.len()
            )));
        }
        Ok(done)
    })
}

#[cfg(test)]
mod tests {
    use super::{KEY_CONTEXT, PERMISSION_CHANGES};
    use crate::Store;

    fn plan(condition: &str, args: impl crate::db::Params) -> Vec<String> {
        let store = Store::open_in_memory().unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {} WHERE {condition}", super::SELECT_EVENTS.as_str());
        let mut stmt = store.conn().prepare(&sql).unwrap();
        stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// SQLite uses a partial index only for a query that states the index's own condition: the
    /// key context rule and the `events_key_context` index must not drift apart.
    #[test]
    fn a_keys_context_events_are_read_through_their_partial_index() {
        let plan = plan(&KEY_CONTEXT, [1_i64]);
        assert!(plan.iter().any(|step| step.contains("events_key_context")), "{plan:#?}");
    }

    /// Events read with their texts looked up apart are the events stored, as the `events`
    /// view reads them too, every text in its field: a ReEncrypt between two keys with every
    /// text column set.
    #[test]
    fn events_read_from_their_rows_equal_those_the_events_view_reads() {
        let mut store = Store::open_in_memory().unwrap();
        let raw = r#"{"eventVersion":"1.08","eventSource":"kms.amazonaws.com","eventID":"e1",
            "eventName":"ReEncrypt","eventType":"AwsApiCall","awsRegion":"eu-west-1",
            "eventTime":"2024-01-01T00:00:00Z","recipientAccountId":"111122223333",
            "sourceIPAddress":"192.0.2.1","userAgent":"aws-cli/2.15",
            "userIdentity":{"type":"AssumedRole","principalId":"AROA:s",
              "arn":"arn:aws:sts::111122223333:assumed-role/r/s","accountId":"111122223333",
              "invokedBy":"ec2.amazonaws.com",
              "sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111122223333:role/r"}}},
            "requestParameters":{"keyId":"alias/src","sourceKeyId":"alias/src","destinationKeyId":"arn:aws:kms:eu-west-1:111122223333:key/d",
              "sourceEncryptionContext":{"a":"1"},"destinationEncryptionContext":{"b":"2"}},
            "resources":[{"ARN":"arn:aws:kms:eu-west-1:111122223333:key/s"},
                         {"ARN":"arn:aws:kms:eu-west-1:111122223333:key/d"}]}"#;
        let stored = granttrail_grants::normalise(raw.as_bytes()).unwrap().unwrap();
        let mut writer = store.begin_object("s3://b/k").unwrap().unwrap();
        writer.add(&stored, raw).unwrap();
        writer.commit("Json", 0, 1, 0).unwrap();

        let conn = store.conn();
        let read = super::load_events(
            conn,
            &mut Default::default(),
            &format!("{} WHERE event_id = ?1", *super::SELECT_EVENTS),
            ["e1"],
        );
        let sql = format!("SELECT {} FROM events WHERE event_id = 'e1'", crate::write::EVENT_COLUMNS);
        let viewed =
            conn.prepare(&sql).unwrap().query_row([], crate::write::event_from_row).unwrap().unwrap();
        assert_eq!(viewed, stored);
        assert_eq!(read.unwrap(), std::slice::from_ref(&stored));
        // Every text column is set, so none can stand in for another unnoticed.
        let c = &viewed.caller;
        let texts = [&viewed.event_type, &viewed.aws_region, &viewed.recipient_account_id, &c.kind, &c.arn];
        let more = [&c.account_id, &c.session_issuer_arn, &c.invoked_by, &viewed.user_agent, &viewed.key_arn];
        let last = [&viewed.destination_key_arn, &viewed.request_key_id];
        assert!(texts.iter().chain(&more).chain(&last).all(|t| t.is_some()), "{viewed:#?}");
        assert!(viewed.details.destination_encryption_context.is_some(), "{viewed:#?}");
    }

    /// Imported key policies are read once for a pass, each under its own key and in the order
    /// they were imported: the classifier takes the first of two as near to a call.
    #[test]
    fn imported_key_policies_are_read_by_key_in_the_order_imported() {
        const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let (a, b) = ("arn:aws:kms:us-east-1:111122223333:key/a", "arn:aws:kms:us-east-1:111122223333:key/b");
        let mut store = Store::open_in_memory().unwrap();
        for (key, at, source) in [(a, 200, "second"), (b, 100, "b's"), (a, 100, "third"), (a, 200, "fourth")]
        {
            store.import_key_policy(key, at, POLICY, source).unwrap();
        }
        let by_key = super::imported_key_policies(store.conn()).unwrap();
        let sources = |key: &str| -> Vec<(i64, &str)> {
            by_key[key].iter().map(|p| (p.at, p.source.as_str())).collect()
        };
        assert_eq!(sources(a), [(200, "second"), (100, "third"), (200, "fourth")]);
        assert_eq!(sources(b), [(100, "b's")]);
        assert_eq!(by_key.len(), 2);
    }

    #[test]
    fn permission_changes_are_read_through_their_partial_index() {
        let plan = plan(&PERMISSION_CHANGES, []);
        assert!(plan.iter().any(|step| step.contains("events_permission_changes")), "{plan:#?}");
    }
}
