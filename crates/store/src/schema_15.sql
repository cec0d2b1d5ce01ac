-- granttrail schema, version 15: grants refer to the texts they repeat (keys, principals,
-- operations, constraints) by id, as events and labels do, in `grant_rows`; `grants` becomes a
-- view with the same columns as before. Documented in docs/schema.md. grant_rows_15.sql, run
-- after this, moves the rows over.
DROP VIEW grants_readable;
DROP INDEX grants_by_grantee;
DROP INDEX grants_by_grant_id;
DROP INDEX grants_by_created;
DROP INDEX grants_by_key_ended;
ALTER TABLE grants RENAME TO grants_14;
CREATE TABLE grant_rows (
    key                INTEGER NOT NULL,   -- texts.id of key_arn ('' while no event names the key)
    grant_ref          INTEGER NOT NULL,   -- texts.id of grant_id
    state              TEXT NOT NULL
        CHECK (state = 'active' OR state = 'retired' OR state = 'revoked' OR state = 'key_deleted'),
    creation_seen      INTEGER NOT NULL,
    grantee            INTEGER,   -- texts.id of grantee_principal: each INTEGER below but the times is a texts.id
    retiring           INTEGER,
    operations         INTEGER,
    constraints        INTEGER,
    name               TEXT,
    issuing_account    INTEGER,
    created_at         INTEGER,
    created_by         INTEGER,
    created_by_service INTEGER,
    created_from_ip    TEXT,
    created_event_id   TEXT,
    ended_at           INTEGER,
    ended_by           INTEGER,
    ended_by_service   INTEGER,
    ended_from_ip      TEXT,
    end_event_id       TEXT,
    create_event_ids   TEXT NOT NULL,
    end_event_ids      TEXT NOT NULL,
    anomalies          INTEGER NOT NULL,
    PRIMARY KEY (key, grant_ref)
) WITHOUT ROWID;
CREATE INDEX grants_by_grantee ON grant_rows (grantee);
CREATE INDEX grants_by_grant_id ON grant_rows (grant_ref);
CREATE INDEX grants_by_created ON grant_rows (created_at);
CREATE INDEX grants_by_key_ended ON grant_rows (key, ended_at);

-- Every grant as text, as the table was before version 15.
CREATE VIEW grants AS
SELECT (SELECT text FROM texts WHERE id = g.key) AS key_arn,
       (SELECT text FROM texts WHERE id = g.grant_ref) AS grant_id,
       g.state, g.creation_seen,
       (SELECT text FROM texts WHERE id = g.grantee) AS grantee_principal,
       (SELECT text FROM texts WHERE id = g.retiring) AS retiring_principal,
       (SELECT text FROM texts WHERE id = g.operations) AS operations,
       (SELECT text FROM texts WHERE id = g.constraints) AS constraints,
       g.name,
       (SELECT text FROM texts WHERE id = g.issuing_account) AS issuing_account,
       g.created_at,
       (SELECT text FROM texts WHERE id = g.created_by) AS created_by,
       (SELECT text FROM texts WHERE id = g.created_by_service) AS created_by_service,
       g.created_from_ip, g.created_event_id, g.ended_at,
       (SELECT text FROM texts WHERE id = g.ended_by) AS ended_by,
       (SELECT text FROM texts WHERE id = g.ended_by_service) AS ended_by_service,
       g.ended_from_ip, g.end_event_id, g.create_event_ids, g.end_event_ids,
       (SELECT text FROM texts WHERE id = g.anomalies) AS anomalies,
       g.key, g.grant_ref, g.grantee
FROM grant_rows g;

-- Grants with readable times, for people querying with sqlite3.
CREATE VIEW grants_readable AS
SELECT key_arn, grant_id, state, creation_seen, grantee_principal, retiring_principal,
       operations, constraints, name, issuing_account,
       strftime('%Y-%m-%dT%H:%M:%SZ', created_at, 'unixepoch') AS created_at, created_by, created_by_service,
       strftime('%Y-%m-%dT%H:%M:%SZ', ended_at, 'unixepoch') AS ended_at, ended_by, ended_by_service,
       anomalies
FROM grants;
