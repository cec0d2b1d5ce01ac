-- The version 15 step both engines take after their own (schema_15.sql, postgres_15.sql):
-- the texts grants repeat are stored once, and each grant refers to them.
INSERT INTO texts (hash, text)
SELECT granttrail_hash(n.t), n.t FROM (
    SELECT key_arn AS t FROM grants_14
    UNION SELECT grant_id FROM grants_14
    UNION SELECT grantee_principal FROM grants_14
    UNION SELECT retiring_principal FROM grants_14
    UNION SELECT operations FROM grants_14
    UNION SELECT constraints FROM grants_14
    UNION SELECT issuing_account FROM grants_14
    UNION SELECT created_by FROM grants_14
    UNION SELECT created_by_service FROM grants_14
    UNION SELECT ended_by FROM grants_14
    UNION SELECT ended_by_service FROM grants_14
    UNION SELECT anomalies FROM grants_14
) AS n
WHERE n.t IS NOT NULL AND NOT EXISTS (SELECT 1 FROM texts x WHERE x.hash = granttrail_hash(n.t) AND x.text = n.t);
INSERT INTO grant_rows (key, grant_ref, state, creation_seen, grantee, retiring, operations, constraints, name,
                        issuing_account, created_at, created_by, created_by_service, created_from_ip,
                        created_event_id, ended_at, ended_by, ended_by_service, ended_from_ip, end_event_id,
                        create_event_ids, end_event_ids, anomalies)
SELECT (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.key_arn) AND text = g.key_arn),
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.grant_id) AND text = g.grant_id),
       g.state, g.creation_seen,
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.grantee_principal) AND text = g.grantee_principal),
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.retiring_principal) AND text = g.retiring_principal),
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.operations) AND text = g.operations),
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.constraints) AND text = g.constraints),
       g.name,
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.issuing_account) AND text = g.issuing_account),
       g.created_at,
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.created_by) AND text = g.created_by),
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.created_by_service) AND text = g.created_by_service),
       g.created_from_ip, g.created_event_id, g.ended_at,
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.ended_by) AND text = g.ended_by),
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.ended_by_service) AND text = g.ended_by_service),
       g.ended_from_ip, g.end_event_id, g.create_event_ids, g.end_event_ids,
       (SELECT min(id) FROM texts WHERE hash = granttrail_hash(g.anomalies) AND text = g.anomalies)
FROM grants_14 g;
DROP TABLE grants_14;
