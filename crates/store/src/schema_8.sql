-- granttrail schema, version 8: texts and eventIDs found through a hash, grant lists as texts
-- ids. Documented in docs/schema.md.
--
-- The unique indexes on texts.text and event_rows.event_id held every text and eventID a
-- second time (a third of the database, less the records). An index on a 32-bit hash of each
-- (granttrail_hash, crates/store/src/texts.rs) takes a few bytes an entry; a lookup compares
-- the text of the rows with that hash. The one writer keeps both unique: it looks a text or
-- an eventID up before it adds one.

-- The views name the tables rebuilt below; they are made again once the tables are back.
DROP VIEW events_readable;
DROP VIEW calls_readable;
DROP VIEW call_grants_readable;
DROP VIEW events;

-- A label's grant list is now the JSON array of its grants' texts ids, not of the grant ids
-- themselves. The label tables are derived: they are emptied and the whole database is
-- relabelled at the next refresh, as version 7 did. The texts only they used go with them.
DELETE FROM call_labels;
DELETE FROM call_label_grants;
DELETE FROM observations;
INSERT OR IGNORE INTO stale_labels (kind, value) SELECT 'all', '' WHERE EXISTS (SELECT 1 FROM event_rows);

CREATE TABLE texts_8 (
    id   INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL,   -- granttrail_hash(text)
    text TEXT NOT NULL
);
INSERT INTO texts_8 (id, hash, text)
SELECT id, granttrail_hash(text), text FROM texts
WHERE id IN (SELECT event_type FROM event_rows UNION SELECT aws_region FROM event_rows
             UNION SELECT recipient_account_id FROM event_rows UNION SELECT caller_type FROM event_rows
             UNION SELECT caller_arn FROM event_rows UNION SELECT caller_account_id FROM event_rows
             UNION SELECT session_issuer_arn FROM event_rows UNION SELECT invoked_by FROM event_rows
             UNION SELECT user_agent FROM event_rows UNION SELECT key FROM event_rows
             UNION SELECT destination_key FROM event_rows UNION SELECT request_key_id FROM event_rows
             UNION SELECT details FROM event_rows);
DROP TABLE texts;
ALTER TABLE texts_8 RENAME TO texts;
CREATE INDEX texts_by_hash ON texts (hash);

-- Filled from event_rows by the migration's rewrite, then renamed (schema_8_events.sql).
CREATE TABLE event_rows_8 (
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
);
