-- granttrail schema, version 15, on PostgreSQL (as SQLite's schema_15.sql): grants refer to
-- the texts they repeat by id, in `grant_rows`, and `grants` becomes a view.
-- grant_rows_15.sql, run after this, moves the rows over.
DROP VIEW grants_readable;
DROP INDEX grants_by_grantee;
DROP INDEX grants_by_grant_id;
DROP INDEX grants_by_created;
DROP INDEX grants_by_key_ended;
ALTER TABLE grants RENAME TO grants_14;
CREATE TABLE grant_rows (
    key                BIGINT NOT NULL,   -- texts.id of key_arn ('' while no event names the key)
    grant_ref          BIGINT NOT NULL,   -- texts.id of grant_id
    state              TEXT COLLATE "C" NOT NULL
        CHECK (state = 'active' OR state = 'retired' OR state = 'revoked' OR state = 'key_deleted'),
    creation_seen      BIGINT NOT NULL,
    grantee            BIGINT,   -- texts.id of grantee_principal: each BIGINT below but the times is a texts.id
    retiring           BIGINT,
    operations         BIGINT,
    constraints        BIGINT,
    name               TEXT COLLATE "C",
    issuing_account    BIGINT,
    created_at         BIGINT,
    created_by         BIGINT,
    created_by_service BIGINT,
    created_from_ip    TEXT COLLATE "C",
    created_event_id   TEXT COLLATE "C",
    ended_at           BIGINT,
    ended_by           BIGINT,
    ended_by_service   BIGINT,
    ended_from_ip      TEXT COLLATE "C",
    end_event_id       TEXT COLLATE "C",
    create_event_ids   TEXT COLLATE "C" NOT NULL,
    end_event_ids      TEXT COLLATE "C" NOT NULL,
    anomalies          BIGINT NOT NULL,
    PRIMARY KEY (key, grant_ref)
);
CREATE INDEX grants_by_grantee ON grant_rows (grantee);
CREATE INDEX grants_by_grant_id ON grant_rows (grant_ref);
CREATE INDEX grants_by_created ON grant_rows (created_at);
CREATE INDEX grants_by_key_ended ON grant_rows (key, ended_at);

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

CREATE VIEW grants_readable AS
SELECT key_arn, grant_id, state, creation_seen, grantee_principal, retiring_principal,
       operations, constraints, name, issuing_account,
       granttrail_time(created_at) AS created_at, created_by, created_by_service,
       granttrail_time(ended_at) AS ended_at, ended_by, ended_by_service,
       anomalies
FROM grants;
