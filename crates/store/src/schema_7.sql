-- granttrail schema, version 7: the records compressed (crates/store/src/records.rs).
-- Documented in docs/schema.md.

-- Texts that many rows repeat (key ARNs, principals, grant ids, the JSON of label reasons,
-- grant lists and flags), stored once; rows refer to them by id (crates/store/src/texts.rs).
CREATE TABLE texts (
    id   INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);

-- Events: the texts that repeat from call to call (caller, agent, region, details...) are
-- stored once in `texts` (not the principal id and source IP, nearly one per call: in `texts`
-- each would be stored twice, in the table and its index); `events` becomes a view that shows them as text, so every query
-- reads events as before. The columns queries filter on by index (key ARNs, eventID, names,
-- grant ids, times) stay in the rows, and `key` and `destination_key` (texts ids) are shown
-- beside the key ARNs, so queries find a key's events through the indexes on ids.
DROP VIEW events_readable;
INSERT OR IGNORE INTO texts (text)
    SELECT event_type FROM events WHERE event_type IS NOT NULL
    UNION SELECT aws_region FROM events WHERE aws_region IS NOT NULL
    UNION SELECT recipient_account_id FROM events WHERE recipient_account_id IS NOT NULL
    UNION SELECT caller_type FROM events WHERE caller_type IS NOT NULL
    UNION SELECT caller_arn FROM events WHERE caller_arn IS NOT NULL
    UNION SELECT caller_account_id FROM events WHERE caller_account_id IS NOT NULL
    UNION SELECT session_issuer_arn FROM events WHERE session_issuer_arn IS NOT NULL
    UNION SELECT invoked_by FROM events WHERE invoked_by IS NOT NULL
    UNION SELECT user_agent FROM events WHERE user_agent IS NOT NULL
    UNION SELECT request_key_id FROM events WHERE request_key_id IS NOT NULL
    UNION SELECT key_arn FROM events WHERE key_arn IS NOT NULL
    UNION SELECT destination_key_arn FROM events WHERE destination_key_arn IS NOT NULL
    UNION SELECT details FROM events WHERE details IS NOT NULL;

CREATE TABLE event_rows (
    id                   INTEGER PRIMARY KEY,
    event_id             TEXT NOT NULL UNIQUE,
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
);
INSERT INTO event_rows
SELECT id, event_id, event_source, shared_event_id, event_time, event_name,
       (SELECT id FROM texts WHERE text = event_type), (SELECT id FROM texts WHERE text = aws_region),
       (SELECT id FROM texts WHERE text = recipient_account_id), error_code, error_message,
       (SELECT id FROM texts WHERE text = caller_type), (SELECT id FROM texts WHERE text = caller_arn),
       caller_principal_id, (SELECT id FROM texts WHERE text = caller_account_id),
       (SELECT id FROM texts WHERE text = session_issuer_arn), (SELECT id FROM texts WHERE text = invoked_by),
       source_ip, (SELECT id FROM texts WHERE text = user_agent),
       (SELECT id FROM texts WHERE text = key_arn), (SELECT id FROM texts WHERE text = destination_key_arn),
       (SELECT id FROM texts WHERE text = request_key_id), grant_id, grant_spec,
       dry_run, (SELECT id FROM texts WHERE text = details), object_id
FROM events ORDER BY id;
DROP TABLE events;
CREATE INDEX events_by_key ON event_rows (key, event_time);
CREATE INDEX events_by_grant ON event_rows (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX events_key_deletions ON event_rows (key) WHERE event_name = 'DeleteKey';
CREATE INDEX events_by_destination_key ON event_rows (destination_key, event_time)
    WHERE destination_key IS NOT NULL;
CREATE INDEX events_by_shared_event_id ON event_rows (shared_event_id) WHERE shared_event_id IS NOT NULL;
-- (ORs, not IN: SQLite would build a temporary table to test IN on every inserted event.)
CREATE INDEX events_key_context ON event_rows (key, event_time)
    WHERE event_name = 'CreateKey' OR event_name = 'PutKeyPolicy' OR event_name = 'TagResource'
       OR event_name = 'UntagResource' OR event_name = 'CreateAlias' OR event_name = 'UpdateAlias'
       OR event_name = 'DeleteAlias';
CREATE INDEX events_permission_changes ON event_rows (event_time)
    WHERE event_source <> 'kms.amazonaws.com' AND event_source <> 'cloudtrail.amazonaws.com';

-- Every event as text: what queries and people read.
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
       r.object_id, r.key, r.destination_key
FROM event_rows r;

-- Every event with the object it came from and a readable time.
CREATE VIEW events_readable AS
SELECT e.event_id, e.shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', e.event_time, 'unixepoch') AS event_time,
       e.event_name, e.error_code, COALESCE(e.caller_arn, e.caller_principal_id, e.invoked_by) AS caller,
       e.invoked_by, e.source_ip, e.key_arn, e.grant_id, o.source AS object
FROM events e JOIN objects o ON o.id = e.object_id;

-- The zstd dictionaries records are compressed with; a dictionary never changes once used.
CREATE TABLE record_dictionaries (
    id         INTEGER PRIMARY KEY,
    dictionary BLOB NOT NULL
);

-- Each record as one zstd frame, compressed with dictionary `dictionary`. The records of a
-- version 6 database are moved here from `event_records_6` by the migration, which then
-- drops it.
ALTER TABLE event_records RENAME TO event_records_6;
CREATE TABLE event_records (
    event_rowid INTEGER PRIMARY KEY REFERENCES event_rows(id),
    dictionary  INTEGER NOT NULL REFERENCES record_dictionaries(id),
    record      BLOB NOT NULL
);

-- The derived label tables, rebuilt in compact form: events by their row id, texts by id,
-- enums by code. They are derived, so a database from before is relabelled whole at the next
-- refresh instead of being converted row by row.
DROP VIEW calls_readable;
DROP TABLE call_labels;
DROP TABLE call_label_grants;
DROP TABLE observations;

-- One row per side of every successful KMS call (grant-semantics §4.4).
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

-- The grants each labelled call side names, by grant and time.
CREATE TABLE call_label_grants (
    grant_id   INTEGER NOT NULL,    -- texts.id of the grant id
    event_time INTEGER NOT NULL,
    event      INTEGER NOT NULL,    -- events.id
    side       INTEGER NOT NULL,
    PRIMARY KEY (grant_id, event_time, event, side)
) WITHOUT ROWID;

-- Behavioural evidence (crates/grants classify). Ties in time are ordered by eventID, so the
-- eventID is kept as text: a row id would order them by arrival.
CREATE TABLE observations (
    key             INTEGER NOT NULL,   -- texts.id of the key ARN
    behaviour_group INTEGER NOT NULL,
    kind            INTEGER NOT NULL CHECK (kind = 0 OR kind = 1),  -- success, denial
    event_time      INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (key, behaviour_group, kind, event_time, event_id)
) WITHOUT ROWID;

INSERT OR IGNORE INTO stale_labels (kind, value) SELECT 'all', '' WHERE EXISTS (SELECT 1 FROM events);

-- Labelled calls as text, with readable times.
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
       g.text AS grant_ids,
       CASE c.grant_reasons WHEN 0 THEN 'covered by' WHEN 1 THEN 'may be covered by' END AS grant_reasons,
       r.text AS reasons, f.text AS flags
FROM call_labels c JOIN events e ON e.id = c.event JOIN texts k ON k.id = c.key
LEFT JOIN texts o ON o.id = c.operation LEFT JOIN texts p ON p.id = c.principal
JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons JOIN texts f ON f.id = c.flags;

-- Which grants each call side named, as text.
CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, strftime('%Y-%m-%dT%H:%M:%SZ', l.event_time, 'unixepoch') AS event_time,
       CASE l.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_label_grants l JOIN texts t ON t.id = l.grant_id JOIN events e ON e.id = l.event;
