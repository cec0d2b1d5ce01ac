-- granttrail schema, version 4: incremental labels. Documented in docs/schema.md.

-- The behaviour group of labels that took behavioural evidence (L3, L3') into account: a new
-- observation in a group can change only those labels, and only near it in time.
ALTER TABLE call_labels ADD COLUMN behaviour_group INTEGER;
CREATE INDEX call_labels_by_behaviour ON call_labels (key_arn, behaviour_group, event_time)
    WHERE behaviour_group IS NOT NULL;

-- Observations (crates/grants classify): successes and access denials of calls no grant could
-- have covered, by key and behaviour group. Derived, like the labels.
CREATE TABLE observations (
    key_arn         TEXT NOT NULL,
    behaviour_group INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind = 'success' OR kind = 'denial'),
    event_time      INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (key_arn, behaviour_group, kind, event_time, event_id)
) WITHOUT ROWID;

-- Events up to this `events.id` have their labels; later ones are in `stale_labels`.
CREATE TABLE labelled_through (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    event_id INTEGER NOT NULL
);
INSERT INTO labelled_through (id, event_id) SELECT 1, COALESCE(max(id), 0) FROM events;

-- `stale_labels` gains `key_context`: keys whose grants or key policies changed, relabelled
-- whole. A database from before has no observations yet: relabel everything once.
CREATE TABLE stale_labels_4 (
    kind  TEXT NOT NULL
        CHECK (kind = 'key' OR kind = 'key_context' OR kind = 'account' OR kind = 'all' OR kind = 'keyless'),
    value TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
INSERT INTO stale_labels_4 (kind, value) SELECT kind, value FROM stale_labels;
INSERT OR IGNORE INTO stale_labels_4 (kind, value) SELECT 'all', '' WHERE EXISTS (SELECT 1 FROM events);
DROP TABLE stale_labels;
ALTER TABLE stale_labels_4 RENAME TO stale_labels;

-- Keys whose grants changed since the labels were brought up to date, and the earliest time a
-- changed grant's coverage differs from: calls on the key from then on are relabelled.
CREATE TABLE stale_since (
    key_arn TEXT PRIMARY KEY,
    since   INTEGER NOT NULL
) WITHOUT ROWID;

-- What incremental relabelling looks up without reading a key's history: the copies of a
-- call, the events that set a key's context, and the permission changes outside KMS.
CREATE INDEX events_by_shared_event_id ON events (shared_event_id) WHERE shared_event_id IS NOT NULL;
-- (ORs, not IN: SQLite would build a temporary table to test IN on every inserted event.)
CREATE INDEX events_key_context ON events (key_arn, event_time)
    WHERE event_name = 'CreateKey' OR event_name = 'PutKeyPolicy' OR event_name = 'TagResource'
       OR event_name = 'UntagResource' OR event_name = 'CreateAlias' OR event_name = 'UpdateAlias'
       OR event_name = 'DeleteAlias';
CREATE INDEX events_permission_changes ON events (event_time)
    WHERE event_source <> 'kms.amazonaws.com' AND event_source <> 'cloudtrail.amazonaws.com';

-- The grants of a key still alive after a time (incremental relabelling reads no others).
CREATE INDEX grants_by_key_ended ON grants (key_arn, ended_at);
