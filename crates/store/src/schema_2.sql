-- granttrail schema, version 2 (additive): list-grants snapshots. Documented in docs/schema.md.

-- Grants of a key as `aws kms list-grants` listed them, imported with `granttrail import
-- list-grants`; compared with the rebuilt grants by the reconciliation findings.
CREATE TABLE imported_grant_lists (
    id       INTEGER PRIMARY KEY,
    key_arn  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    grants   TEXT NOT NULL,
    source   TEXT NOT NULL
);
CREATE INDEX imported_grant_lists_by_key ON imported_grant_lists (key_arn, at);
