-- The tables, indexes and views of a new SQLite database, exactly as the migrations from
-- version 1 (schema.sql, schema_2.sql, ...) leave an empty one, in the order they were
-- created. A new database is made from this file in one step; the test
-- a_new_database_has_the_schema_the_migrations_build keeps the two the same. Not edited by
-- hand: after a new migration, `GRANTTRAIL_BLESS=1 cargo test -p granttrail-store new_database`
-- writes it again.

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
, content_sha256 BLOB);

CREATE TABLE rejected_objects (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    rejected_at INTEGER NOT NULL,
    reason      TEXT NOT NULL
);

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

CREATE TABLE settings (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value TEXT NOT NULL
);

CREATE TABLE imported_grant_lists (
    id       INTEGER PRIMARY KEY,
    key_arn  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    grants   TEXT NOT NULL,
    source   TEXT NOT NULL
);

CREATE INDEX imported_grant_lists_by_key ON imported_grant_lists (key_arn, at);

CREATE TABLE published_findings (
    finding_id   TEXT PRIMARY KEY,
    published_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE stale_since (
    key_arn TEXT PRIMARY KEY,
    since   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE record_dictionaries (
    id         INTEGER PRIMARY KEY,
    dictionary BLOB NOT NULL
);

CREATE TABLE call_labels (
    event           INTEGER NOT NULL,   -- events.id of the copy labelled
    side            INTEGER NOT NULL CHECK (side = 0 OR side = 1 OR side = 2),  -- destination, key, source
    event_time      INTEGER NOT NULL,
    key             INTEGER NOT NULL,   -- texts.id of the key ARN ('' when unknown)
    operation       INTEGER,            -- texts.id
    principal       INTEGER,            -- texts.id
    label           INTEGER NOT NULL,
    evidence        INTEGER NOT NULL,
    grant_ids       INTEGER NOT NULL,   -- texts.id of the JSON array
    grant_reasons   INTEGER CHECK (grant_reasons = 0 OR grant_reasons = 1),  -- covered by, may be covered by
    reasons         INTEGER NOT NULL,   -- texts.id of the JSON array of the other reasons
    flags           INTEGER NOT NULL,   -- texts.id of the JSON array
    behaviour_group INTEGER,
    PRIMARY KEY (event, side)
) WITHOUT ROWID;

CREATE INDEX call_labels_by_key ON call_labels (key, event_time);

CREATE INDEX call_labels_by_label ON call_labels (label, key, event_time);

CREATE INDEX call_labels_by_principal ON call_labels (principal);

CREATE INDEX call_labels_by_behaviour ON call_labels (key, behaviour_group, event_time)
    WHERE behaviour_group IS NOT NULL;

CREATE TABLE observations (
    key             INTEGER NOT NULL,   -- texts.id of the key ARN
    behaviour_group INTEGER NOT NULL,
    kind            INTEGER NOT NULL CHECK (kind = 0 OR kind = 1),  -- success, denial
    event_time      INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (key, behaviour_group, kind, event_time, event_id)
) WITHOUT ROWID;

CREATE TABLE "texts" (
    id   INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL,   -- granttrail_hash(text)
    text TEXT NOT NULL
);

CREATE INDEX texts_by_hash ON texts (hash);

CREATE TABLE "event_rows" (
    id                   INTEGER PRIMARY KEY,
    event_id             TEXT NOT NULL,
    event_hash           INTEGER NOT NULL,   -- granttrail_hash(event_id)
    event_source         TEXT NOT NULL,
    shared_event_id      TEXT,
    event_time           INTEGER NOT NULL,
    event_name           TEXT NOT NULL,
    event_type           INTEGER,   -- each INTEGER below but dry_run and object_id is a texts.id
    aws_region           INTEGER,
    recipient_account_id INTEGER,
    error_code           TEXT,
    error_message        TEXT,
    caller_type          INTEGER,
    caller_arn           INTEGER,
    caller_principal_id  TEXT,
    caller_account_id    INTEGER,
    session_issuer_arn   INTEGER,
    invoked_by           INTEGER,
    source_ip            TEXT,
    user_agent           INTEGER,
    key                  INTEGER,   -- texts.id of key_arn
    destination_key      INTEGER,   -- texts.id of destination_key_arn
    request_key_id       INTEGER,
    grant_id             TEXT,
    grant_spec           TEXT,
    dry_run              INTEGER NOT NULL,
    details              INTEGER,
    object_id            INTEGER NOT NULL REFERENCES objects(id)
, record_block INTEGER REFERENCES record_blocks(id), record_slot INTEGER);

CREATE INDEX events_by_event_id ON event_rows (event_hash);

CREATE INDEX events_by_key ON event_rows (key, event_time);

CREATE INDEX events_by_grant ON event_rows (grant_id) WHERE grant_id IS NOT NULL;

CREATE INDEX events_key_deletions ON event_rows (key) WHERE event_name = 'DeleteKey';

CREATE INDEX events_by_destination_key ON event_rows (destination_key, event_time)
    WHERE destination_key IS NOT NULL;

CREATE INDEX events_by_shared_event_id ON event_rows (shared_event_id) WHERE shared_event_id IS NOT NULL;

CREATE INDEX events_key_context ON event_rows (key, event_time)
    WHERE event_name = 'CreateKey' OR event_name = 'PutKeyPolicy' OR event_name = 'TagResource'
       OR event_name = 'UntagResource' OR event_name = 'CreateAlias' OR event_name = 'UpdateAlias'
       OR event_name = 'DeleteAlias';

CREATE INDEX events_permission_changes ON event_rows (event_time)
    WHERE event_source <> 'kms.amazonaws.com' AND event_source <> 'cloudtrail.amazonaws.com';

CREATE VIEW events AS
SELECT r.id, r.event_id, r.event_source, r.shared_event_id, r.event_time, r.event_name,
       (SELECT text FROM texts WHERE id = r.event_type) AS event_type,
       (SELECT text FROM texts WHERE id = r.aws_region) AS aws_region,
       (SELECT text FROM texts WHERE id = r.recipient_account_id) AS recipient_account_id,
       r.error_code, r.error_message,
       (SELECT text FROM texts WHERE id = r.caller_type) AS caller_type,
       (SELECT text FROM texts WHERE id = r.caller_arn) AS caller_arn,
       r.caller_principal_id,
       (SELECT text FROM texts WHERE id = r.caller_account_id) AS caller_account_id,
       (SELECT text FROM texts WHERE id = r.session_issuer_arn) AS session_issuer_arn,
       (SELECT text FROM texts WHERE id = r.invoked_by) AS invoked_by,
       r.source_ip,
       (SELECT text FROM texts WHERE id = r.user_agent) AS user_agent,
       (SELECT text FROM texts WHERE id = r.key) AS key_arn,
       (SELECT text FROM texts WHERE id = r.destination_key) AS destination_key_arn,
       (SELECT text FROM texts WHERE id = r.request_key_id) AS request_key_id,
       r.grant_id, r.grant_spec, r.dry_run,
       (SELECT text FROM texts WHERE id = r.details) AS details,
       r.object_id, r.key, r.destination_key, r.event_hash
FROM event_rows r;

CREATE VIEW events_readable AS
SELECT e.event_id, e.shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', e.event_time, 'unixepoch') AS event_time,
       e.event_name, e.error_code, COALESCE(e.caller_arn, e.caller_principal_id, e.invoked_by) AS caller,
       e.invoked_by, e.source_ip, e.key_arn, e.grant_id, o.source AS object
FROM events e JOIN objects o ON o.id = e.object_id;

CREATE TABLE imported_key_last_usage (
    id       INTEGER PRIMARY KEY,
    key_arn  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    document TEXT NOT NULL,
    source   TEXT NOT NULL
);

CREATE INDEX imported_key_last_usage_by_key ON imported_key_last_usage (key_arn, at);

CREATE TABLE event_id_collisions (
    event_id TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE verified_log_files (
    file_name   TEXT PRIMARY KEY,
    verdict     INTEGER NOT NULL,   -- 0 verified, 1 altered, 2 unlisted, 3 not covered
    reason      TEXT,
    object      TEXT NOT NULL,      -- where verify read it
    verified_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE missing_log_files (
    file_name    TEXT PRIMARY KEY,
    object       TEXT NOT NULL,     -- s3://bucket/key as the digest lists it
    account      TEXT NOT NULL,
    region       TEXT NOT NULL,
    listed_by    TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end   INTEGER NOT NULL,
    verified_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE verification_summaries (
    account     TEXT NOT NULL,
    region      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (account, region)
) WITHOUT ROWID;

CREATE TABLE event_copies (
    event_rowid INTEGER NOT NULL REFERENCES event_rows(id),
    object_id   INTEGER NOT NULL REFERENCES objects(id),
    PRIMARY KEY (event_rowid, object_id)
) WITHOUT ROWID;

CREATE TABLE new_calls (
    key_arn   TEXT NOT NULL,
    object_id INTEGER NOT NULL,   -- objects.id (no reference: the object may have been undone)
    since     INTEGER NOT NULL,   -- the earliest event_time of those calls
    calls     INTEGER NOT NULL,
    PRIMARY KEY (key_arn, object_id)
) WITHOUT ROWID;

CREATE TABLE "stale_labels" (
    kind  TEXT NOT NULL
        CHECK (kind = 'key_context' OR kind = 'account' OR kind = 'all' OR kind = 'keyless'),
    value TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;

CREATE TABLE record_blocks (
    id         INTEGER PRIMARY KEY,
    dictionary INTEGER NOT NULL REFERENCES record_dictionaries(id),
    records    BLOB NOT NULL   -- a zstd frame of the records, joined by NUL bytes
);

CREATE TABLE grant_rows (
    key                INTEGER NOT NULL,   -- texts.id of key_arn ('' while no event names the key)
    grant_ref          INTEGER NOT NULL,   -- texts.id of grant_id
    state              TEXT NOT NULL
        CHECK (state = 'active' OR state = 'retired' OR state = 'revoked' OR state = 'key_deleted'),
    creation_seen      INTEGER NOT NULL,
    grantee            INTEGER,   -- texts.id of grantee_principal: each INTEGER below but the times is a texts.id
    retiring           INTEGER,
    operations         INTEGER,
    constraints        INTEGER,
    name               TEXT,
    issuing_account    INTEGER,
    created_at         INTEGER,
    created_by         INTEGER,
    created_by_service INTEGER,
    created_from_ip    TEXT,
    created_event_id   TEXT,
    ended_at           INTEGER,
    ended_by           INTEGER,
    ended_by_service   INTEGER,
    ended_from_ip      TEXT,
    end_event_id       TEXT,
    create_event_ids   TEXT NOT NULL,
    end_event_ids      TEXT NOT NULL,
    anomalies          INTEGER NOT NULL,
    PRIMARY KEY (key, grant_ref)
) WITHOUT ROWID;

CREATE INDEX grants_by_grantee ON grant_rows (grantee);

CREATE INDEX grants_by_grant_id ON grant_rows (grant_ref);

CREATE INDEX grants_by_created ON grant_rows (created_at);

CREATE INDEX grants_by_key_ended ON grant_rows (key, ended_at);

CREATE VIEW grants AS
SELECT (SELECT text FROM texts WHERE id = g.key) AS key_arn,
       (SELECT text FROM texts WHERE id = g.grant_ref) AS grant_id,
       g.state, g.creation_seen,
       (SELECT text FROM texts WHERE id = g.grantee) AS grantee_principal,
       (SELECT text FROM texts WHERE id = g.retiring) AS retiring_principal,
       (SELECT text FROM texts WHERE id = g.operations) AS operations,
       (SELECT text FROM texts WHERE id = g.constraints) AS constraints,
       g.name,
       (SELECT text FROM texts WHERE id = g.issuing_account) AS issuing_account,
       g.created_at,
       (SELECT text FROM texts WHERE id = g.created_by) AS created_by,
       (SELECT text FROM texts WHERE id = g.created_by_service) AS created_by_service,
       g.created_from_ip, g.created_event_id, g.ended_at,
       (SELECT text FROM texts WHERE id = g.ended_by) AS ended_by,
       (SELECT text FROM texts WHERE id = g.ended_by_service) AS ended_by_service,
       g.ended_from_ip, g.end_event_id, g.create_event_ids, g.end_event_ids,
       (SELECT text FROM texts WHERE id = g.anomalies) AS anomalies,
       g.key, g.grant_ref, g.grantee
FROM grant_rows g;

CREATE VIEW grants_readable AS
SELECT key_arn, grant_id, state, creation_seen, grantee_principal, retiring_principal,
       operations, constraints, name, issuing_account,
       strftime('%Y-%m-%dT%H:%M:%SZ', created_at, 'unixepoch') AS created_at, created_by, created_by_service,
       strftime('%Y-%m-%dT%H:%M:%SZ', ended_at, 'unixepoch') AS ended_at, ended_by, ended_by_service,
       anomalies
FROM grants;

CREATE TABLE grant_list_members (
    grant_ref INTEGER NOT NULL,   -- texts.id of a grant id
    list      INTEGER NOT NULL,   -- texts.id of a grant list that names it
    PRIMARY KEY (grant_ref, list)
) WITHOUT ROWID;

CREATE INDEX call_labels_by_grants ON call_labels (grant_ids, event_time) WHERE grant_ids <> 0;

CREATE VIEW calls_readable AS
SELECT e.event_id, e.shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', c.event_time, 'unixepoch') AS event_time,
       e.event_name,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side,
       k.text AS key_arn, o.text AS operation, p.text AS principal,
       CASE c.label WHEN 0 THEN 'not_grant_eligible' WHEN 1 THEN 'no_grant' WHEN 2 THEN 'no_grant_unknown_grants'
            WHEN 3 THEN 'grant_covered_uncertain' WHEN 4 THEN 'grant_covered' WHEN 5 THEN 'grant_only_likely'
            WHEN 6 THEN 'grant_only' WHEN 7 THEN 'grant_and_policy' END AS label,
       CASE c.evidence WHEN 0 THEN 'L0' WHEN 1 THEN 'L1' WHEN 2 THEN 'L2' WHEN 3 THEN 'L3' WHEN 4 THEN 'L3'''
            WHEN 5 THEN 'L4' WHEN 6 THEN 'L5' END AS evidence,
       (SELECT json_group_array(t.text) FROM json_each(g.text) j JOIN texts t ON t.id = j.value) AS grant_ids,
       CASE c.grant_reasons WHEN 0 THEN 'covered by' WHEN 1 THEN 'may be covered by' END AS grant_reasons,
       r.text AS reasons, f.text AS flags
FROM call_labels c JOIN events e ON e.id = c.event JOIN texts k ON k.id = c.key
LEFT JOIN texts o ON o.id = c.operation LEFT JOIN texts p ON p.id = c.principal
LEFT JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons JOIN texts f ON f.id = c.flags;

CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, strftime('%Y-%m-%dT%H:%M:%SZ', c.event_time, 'unixepoch') AS event_time,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_labels c JOIN grant_list_members m ON m.list = c.grant_ids JOIN texts t ON t.id = m.grant_ref
JOIN events e ON e.id = c.event;
