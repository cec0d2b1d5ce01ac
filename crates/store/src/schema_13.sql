-- granttrail schema, version 13: which calls await their labels is recorded per key and object
-- (`new_calls`), in place of one watermark over every event (`labelled_through`), so that
-- writers and relabellers working on different keys need not wait for each other. Documented
-- in docs/schema.md. new_calls_13.sql, run after this, moves the watermark into the table.
CREATE TABLE new_calls (
    key_arn   TEXT NOT NULL,
    object_id INTEGER NOT NULL,   -- objects.id (no reference: the object may have been undone)
    since     INTEGER NOT NULL,   -- the earliest event_time of those calls
    calls     INTEGER NOT NULL,
    PRIMARY KEY (key_arn, object_id)
) WITHOUT ROWID;

-- `key` rows became `new_calls` rows; a writer of an older version can no longer add one.
CREATE TABLE stale_labels_13 (
    kind  TEXT NOT NULL
        CHECK (kind = 'key_context' OR kind = 'account' OR kind = 'all' OR kind = 'keyless'),
    value TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
INSERT INTO stale_labels_13 (kind, value) SELECT kind, value FROM stale_labels WHERE kind <> 'key';
DROP TABLE stale_labels;
ALTER TABLE stale_labels_13 RENAME TO stale_labels;
