-- granttrail schema, version 7: the records compressed (crates/store/src/records.rs).
-- Documented in docs/schema.md.

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
    event_rowid INTEGER PRIMARY KEY REFERENCES events(id),
    dictionary  INTEGER NOT NULL REFERENCES record_dictionaries(id),
    record      BLOB NOT NULL
);

-- Texts that many rows repeat (key ARNs, principals, grant ids, the JSON of label reasons,
-- grant lists and flags), stored once; rows refer to them by id (crates/store/src/texts.rs).
CREATE TABLE texts (
    id   INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
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
    reasons         INTEGER NOT NULL,   -- texts.id of the JSON array
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
       g.text AS grant_ids, r.text AS reasons, f.text AS flags
FROM call_labels c JOIN events e ON e.id = c.event JOIN texts k ON k.id = c.key
LEFT JOIN texts o ON o.id = c.operation LEFT JOIN texts p ON p.id = c.principal
JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons JOIN texts f ON f.id = c.flags;

-- Which grants each call side named, as text.
CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, strftime('%Y-%m-%dT%H:%M:%SZ', l.event_time, 'unixepoch') AS event_time,
       CASE l.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_label_grants l JOIN texts t ON t.id = l.grant_id JOIN events e ON e.id = l.event;
