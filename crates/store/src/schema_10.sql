-- granttrail schema, version 10 (additive): what `granttrail verify` found when it checked the
-- log files against CloudTrail's signed digests. Documented in docs/schema.md.

-- The verdict on each log file verified, by file name: CloudTrail's file names are unique, so a
-- verdict reached on s3://... holds for a downloaded copy ingested from disk, and back.
CREATE TABLE verified_log_files (
    file_name   TEXT PRIMARY KEY,
    verdict     INTEGER NOT NULL,   -- 0 verified, 1 altered, 2 unlisted, 3 not covered
    reason      TEXT,
    object      TEXT NOT NULL,      -- where verify read it
    verified_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Log files a digest lists that verify did not find, with the period that digest covers.
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

-- The latest verification of each account and region, as `verify --format json` prints a
-- summary.
CREATE TABLE verification_summaries (
    account     TEXT NOT NULL,
    region      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (account, region)
) WITHOUT ROWID;
