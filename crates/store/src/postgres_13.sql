-- granttrail schema, version 13, on PostgreSQL (as SQLite's schema_13.sql): which calls await
-- their labels is recorded per key and object, in place of one watermark over every event;
-- new_calls_13.sql, run after this, moves the watermark into the table.
CREATE TABLE new_calls (
    key_arn   TEXT COLLATE "C" NOT NULL,
    object_id BIGINT NOT NULL,
    since     BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (key_arn, object_id)
);

-- `key` rows became `new_calls` rows; a writer of an older version can no longer add one.
DELETE FROM stale_labels WHERE kind = 'key';
ALTER TABLE stale_labels DROP CONSTRAINT stale_labels_kind_check;
ALTER TABLE stale_labels ADD CONSTRAINT stale_labels_kind_check
    CHECK (kind = 'key_context' OR kind = 'account' OR kind = 'all' OR kind = 'keyless');
