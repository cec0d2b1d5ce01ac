-- granttrail schema, version 16: a label finds its grants through its grant list, not a row per
-- call and grant. A list (`call_labels.grant_ids`, a text) is shared by every call that names
-- the same grants, so `grant_list_members` holds each list's grants once, and
-- `call_labels_by_grants` finds the calls naming a list. This replaces `call_label_grants`,
-- whose rows grew with calls times the grants each named. A label that names no grant stores
-- list 0 (no text), which that index leaves out. Documented in docs/schema.md.
CREATE TABLE grant_list_members (
    grant_ref INTEGER NOT NULL,   -- texts.id of a grant id
    list      INTEGER NOT NULL,   -- texts.id of a grant list that names it
    PRIMARY KEY (grant_ref, list)
) WITHOUT ROWID;
INSERT INTO grant_list_members (grant_ref, list)
SELECT DISTINCT CAST(j.value AS INTEGER), t.id
FROM (SELECT DISTINCT grant_ids FROM call_labels) AS c JOIN texts t ON t.id = c.grant_ids, json_each(t.text) AS j;
UPDATE call_labels SET grant_ids = 0 WHERE grant_ids IN (SELECT id FROM texts WHERE text = '[]');
CREATE INDEX call_labels_by_grants ON call_labels (grant_ids, event_time) WHERE grant_ids <> 0;
DROP VIEW call_grants_readable;
DROP TABLE call_label_grants;
DROP VIEW calls_readable;

-- Labelled calls as text, with readable times.
CREATE VIEW calls_readable AS
SELECT e.event_id, e.shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', c.event_time, 'unixepoch') AS event_time,
       e.event_name,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side,
       k.text AS key_arn, o.text AS operation, p.text AS principal,
       CASE c.label WHEN 0 THEN 'not_grant_eligible' WHEN 1 THEN 'no_grant' WHEN 2 THEN 'no_grant_unknown_grants'
            WHEN 3 THEN 'grant_covered_uncertain' WHEN 4 THEN 'grant_covered' WHEN 5 THEN 'grant_only_likely'
            WHEN 6 THEN 'grant_only' WHEN 7 THEN 'grant_and_policy' END AS label,
       CASE c.evidence WHEN 0 THEN 'L0' WHEN 1 THEN 'L1' WHEN 2 THEN 'L2' WHEN 3 THEN 'L3' WHEN 4 THEN 'L3'''
            WHEN 5 THEN 'L4' WHEN 6 THEN 'L5' END AS evidence,
       (SELECT json_group_array(t.text) FROM json_each(g.text) j JOIN texts t ON t.id = j.value) AS grant_ids,
       CASE c.grant_reasons WHEN 0 THEN 'covered by' WHEN 1 THEN 'may be covered by' END AS grant_reasons,
       r.text AS reasons, f.text AS flags
FROM call_labels c JOIN events e ON e.id = c.event JOIN texts k ON k.id = c.key
LEFT JOIN texts o ON o.id = c.operation LEFT JOIN texts p ON p.id = c.principal
LEFT JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons JOIN texts f ON f.id = c.flags;

-- Which grants each call side named, as text.
CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, strftime('%Y-%m-%dT%H:%M:%SZ', c.event_time, 'unixepoch') AS event_time,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_labels c JOIN grant_list_members m ON m.list = c.grant_ids JOIN texts t ON t.id = m.grant_ref
JOIN events e ON e.id = c.event;
