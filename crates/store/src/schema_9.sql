-- granttrail schema, version 9 (additive): KMS's own record of each key's last use, and the
-- eventIDs that different records share. Documented in docs/schema.md.

-- `aws kms get-key-last-usage` answers, imported with `granttrail import key-last-usage`;
-- compared with the logs by rule GT105 and shown per key in the report.
CREATE TABLE imported_key_last_usage (
    id       INTEGER PRIMARY KEY,
    key_arn  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    document TEXT NOT NULL,
    source   TEXT NOT NULL
);
CREATE INDEX imported_key_last_usage_by_key ON imported_key_last_usage (key_arn, at);

-- eventIDs that two different records carry (collisions; both are in `event_rows`): the few
-- places that must read every record of an eventID look here first instead of probing each.
CREATE TABLE event_id_collisions (
    event_id TEXT PRIMARY KEY
) WITHOUT ROWID;
