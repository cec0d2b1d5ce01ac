-- granttrail schema, version 9 (additive): KMS's own record of each key's last use. Documented
-- in docs/schema.md.

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
