-- granttrail schema, version 16, on PostgreSQL (as SQLite's schema_16.sql): a label finds its
-- grants through its grant list; `grant_list_members` replaces `call_label_grants`, and a
-- label that names no grant stores list 0.
CREATE TABLE grant_list_members (
    grant_ref BIGINT NOT NULL,   -- texts.id of a grant id
    list      BIGINT NOT NULL,   -- texts.id of a grant list that names it
    PRIMARY KEY (grant_ref, list)
);
INSERT INTO grant_list_members (grant_ref, list)
SELECT DISTINCT CAST(j.value AS BIGINT), t.id
FROM (SELECT DISTINCT grant_ids FROM call_labels) AS c JOIN texts t ON t.id = c.grant_ids
CROSS JOIN LATERAL json_array_elements_text(CAST(t.text AS json)) AS j(value);
UPDATE call_labels SET grant_ids = 0 WHERE grant_ids IN (SELECT id FROM texts WHERE text = '[]');
CREATE INDEX call_labels_by_grants ON call_labels (grant_ids, event_time) WHERE grant_ids <> 0;
DROP VIEW call_grants_readable;
DROP TABLE call_label_grants;
DROP VIEW calls_readable;

CREATE VIEW calls_readable AS
SELECT e.event_id, e.shared_event_id, granttrail_time(c.event_time) AS event_time,
       e.event_name,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side,
       k.text AS key_arn, o.text AS operation, p.text AS principal,
       CASE c.label WHEN 0 THEN 'not_grant_eligible' WHEN 1 THEN 'no_grant' WHEN 2 THEN 'no_grant_unknown_grants'
            WHEN 3 THEN 'grant_covered_uncertain' WHEN 4 THEN 'grant_covered' WHEN 5 THEN 'grant_only_likely'
            WHEN 6 THEN 'grant_only' WHEN 7 THEN 'grant_and_policy' END AS label,
       CASE c.evidence WHEN 0 THEN 'L0' WHEN 1 THEN 'L1' WHEN 2 THEN 'L2' WHEN 3 THEN 'L3' WHEN 4 THEN 'L3'''
            WHEN 5 THEN 'L4' WHEN 6 THEN 'L5' END AS evidence,
       COALESCE((SELECT json_agg(t.text ORDER BY j.n)::text
                 FROM json_array_elements_text(g.text::json) WITH ORDINALITY AS j(value, n)
                 JOIN texts t ON t.id = j.value::bigint), '[]') AS grant_ids,
       CASE c.grant_reasons WHEN 0 THEN 'covered by' WHEN 1 THEN 'may be covered by' END AS grant_reasons,
       r.text AS reasons, f.text AS flags
FROM call_labels c JOIN events e ON e.id = c.event JOIN texts k ON k.id = c.key
LEFT JOIN texts o ON o.id = c.operation LEFT JOIN texts p ON p.id = c.principal
LEFT JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons JOIN texts f ON f.id = c.flags;

CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, granttrail_time(c.event_time) AS event_time,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_labels c JOIN grant_list_members m ON m.list = c.grant_ids JOIN texts t ON t.id = m.grant_ref
JOIN events e ON e.id = c.event;
