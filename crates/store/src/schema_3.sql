-- granttrail schema, version 3 (additive): findings already sent. Documented in docs/schema.md.

-- Findings the Lambda has published (to SNS), so each is sent once even though every batch
-- evaluates all of them again.
CREATE TABLE published_findings (
    finding_id   TEXT PRIMARY KEY,
    published_at INTEGER NOT NULL
) WITHOUT ROWID;
