-- granttrail schema, version 1 (version 2 is in schema_2.sql). Documented in docs/schema.md; keep the two in step.

-- Every object (file, s3://bucket/key, stdin) whose events were committed.
CREATE TABLE objects (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL UNIQUE,
    ingested_at     INTEGER NOT NULL,
    format          TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    records         INTEGER NOT NULL,
    kms_events      INTEGER NOT NULL,
    new_events      INTEGER NOT NULL,
    grant_events    INTEGER NOT NULL,
    skipped_records INTEGER NOT NULL
);

-- Objects that were rejected whole; nothing of theirs is in `events`.
CREATE TABLE rejected_objects (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    rejected_at INTEGER NOT NULL,
    reason      TEXT NOT NULL
);

-- One row per KMS CloudTrail record (unique eventID), normalised; plus the IAM and
-- Organizations events that change permissions. The records themselves are in `event_records`.
CREATE TABLE events (
    id                   INTEGER PRIMARY KEY,
    event_id             TEXT NOT NULL UNIQUE,
    event_source         TEXT NOT NULL,
    shared_event_id      TEXT,
    event_time           INTEGER NOT NULL,
    event_name           TEXT NOT NULL,
    event_type           TEXT,
    aws_region           TEXT,
    recipient_account_id TEXT,
    error_code           TEXT,
    error_message        TEXT,
    caller_type          TEXT,
    caller_arn           TEXT,
    caller_principal_id  TEXT,
    caller_account_id    TEXT,
    session_issuer_arn   TEXT,
    invoked_by           TEXT,
    source_ip            TEXT,
    user_agent           TEXT,
    key_arn              TEXT,
    destination_key_arn  TEXT,
    request_key_id       TEXT,
    grant_id             TEXT,
    grant_spec           TEXT,
    dry_run              INTEGER NOT NULL,
    details              TEXT,
    object_id            INTEGER NOT NULL REFERENCES objects(id)
);

-- The CloudTrail record of each event, exactly as delivered. Kept apart from `events` so that
-- the rows queries scan stay small.
CREATE TABLE event_records (
    event_rowid INTEGER PRIMARY KEY REFERENCES events(id),
    raw         TEXT NOT NULL
);
CREATE INDEX events_by_key ON events (key_arn, event_time);
CREATE INDEX events_by_grant ON events (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX events_key_deletions ON events (key_arn) WHERE event_name = 'DeleteKey';
CREATE INDEX events_by_destination_key ON events (destination_key_arn) WHERE destination_key_arn IS NOT NULL;

-- Grants derived from `events` (see crates/grants lifecycle); rebuilt by `granttrail rebuild`.
CREATE TABLE grants (
    key_arn            TEXT NOT NULL,
    grant_id           TEXT NOT NULL,
    -- Constant lists are spelled as ORs: SQLite checks `IN (...)` by building a temporary table
    -- for every inserted row, which was a tenth of the cost of labelling.
    state              TEXT NOT NULL
        CHECK (state = 'active' OR state = 'retired' OR state = 'revoked' OR state = 'key_deleted'),
    creation_seen      INTEGER NOT NULL,
    grantee_principal  TEXT,
    retiring_principal TEXT,
    operations         TEXT,
    constraints        TEXT,
    name               TEXT,
    issuing_account    TEXT,
    created_at         INTEGER,
    created_by         TEXT,
    created_by_service TEXT,
    created_from_ip    TEXT,
    created_event_id   TEXT,
    ended_at           INTEGER,
    ended_by           TEXT,
    ended_by_service   TEXT,
    ended_from_ip      TEXT,
    end_event_id       TEXT,
    create_event_ids   TEXT NOT NULL,
    end_event_ids      TEXT NOT NULL,
    anomalies          TEXT NOT NULL,
    PRIMARY KEY (key_arn, grant_id)
);
CREATE INDEX grants_by_grantee ON grants (grantee_principal);
CREATE INDEX grants_by_grant_id ON grants (grant_id);
CREATE INDEX grants_by_created ON grants (created_at);

-- Grants with readable times, for people querying with sqlite3.
CREATE VIEW grants_readable AS
SELECT key_arn, grant_id, state, creation_seen, grantee_principal, retiring_principal,
       operations, constraints, name, issuing_account,
       strftime('%Y-%m-%dT%H:%M:%SZ', created_at, 'unixepoch') AS created_at, created_by, created_by_service,
       strftime('%Y-%m-%dT%H:%M:%SZ', ended_at, 'unixepoch') AS ended_at, ended_by, ended_by_service,
       anomalies
FROM grants;

-- Every event with the object it came from and a readable time.
CREATE VIEW events_readable AS
SELECT e.event_id, e.shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', e.event_time, 'unixepoch') AS event_time,
       e.event_name, e.error_code, COALESCE(e.caller_arn, e.caller_principal_id, e.invoked_by) AS caller,
       e.invoked_by, e.source_ip, e.key_arn, e.grant_id, o.source AS object
FROM events e JOIN objects o ON o.id = e.object_id;

-- The label of every side of every successful KMS call (grant-semantics §4.4), derived.
CREATE TABLE call_labels (
    event_id        TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side = 'key' OR side = 'source' OR side = 'destination'),
    shared_event_id TEXT,
    event_time      INTEGER NOT NULL,
    event_name      TEXT NOT NULL,
    key_arn         TEXT NOT NULL,
    operation       TEXT,
    principal       TEXT,
    label           TEXT NOT NULL,
    evidence        TEXT NOT NULL,
    grant_ids       TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    flags           TEXT NOT NULL,
    PRIMARY KEY (event_id, side)
);
CREATE INDEX call_labels_by_key ON call_labels (key_arn, event_time);
CREATE INDEX call_labels_by_label ON call_labels (label, key_arn, event_time);
CREATE INDEX call_labels_by_principal ON call_labels (principal);

-- Which grants each labelled call side names (for `calls --grant` and grant stories).
CREATE TABLE call_label_grants (
    grant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    side     TEXT NOT NULL,
    PRIMARY KEY (grant_id, event_id, side)
) WITHOUT ROWID;

-- Key policies and IAM snapshots imported from outside the logs.
CREATE TABLE imported_key_policies (
    id       INTEGER PRIMARY KEY,
    key_arn  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    policy   TEXT NOT NULL,
    source   TEXT NOT NULL
);
CREATE INDEX imported_key_policies_by_key ON imported_key_policies (key_arn);

CREATE TABLE imported_iam (
    id       INTEGER PRIMARY KEY,
    account  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    document TEXT NOT NULL,
    source   TEXT NOT NULL
);

-- Labels waiting to be recomputed: keys (`key`), accounts whose principals' permissions
-- changed (`account`), every key (`all`) or the calls with no known key (`keyless`). Written
-- with each object's events, cleared when the labels are recomputed.
CREATE TABLE stale_labels (
    kind  TEXT NOT NULL CHECK (kind IN ('key', 'account', 'all', 'keyless')),
    value TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;

-- The settings the derived tables were computed with (one row, JSON).
CREATE TABLE settings (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value TEXT NOT NULL
);

-- Labelled calls with readable times.
CREATE VIEW calls_readable AS
SELECT event_id, side, shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', event_time, 'unixepoch') AS event_time,
       event_name, key_arn, operation, principal, label, evidence, grant_ids, reasons, flags
FROM call_labels;
