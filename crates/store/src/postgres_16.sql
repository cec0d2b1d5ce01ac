-- granttrail schema, version 16, on PostgreSQL (as SQLite's schema_16.sql): a label finds its
-- grants through its grant list; `grant_list_members` replaces `call_label_grants`.
CREATE TABLE grant_list_members (
    grant_ref BIGINT NOT NULL,   -- texts.id of a grant id
    list      BIGINT NOT NULL,   -- texts.id of a grant list that names it
    PRIMARY KEY (grant_ref, list)
);
INSERT INTO grant_list_members (grant_ref, list)
SELECT DISTINCT CAST(j.value AS BIGINT), t.id
FROM (SELECT DISTINCT grant_ids FROM call_labels) AS c JOIN texts t ON t.id = c.grant_ids
CROSS JOIN LATERAL json_array_elements_text(CAST(t.text AS json)) AS j(value);
CREATE INDEX call_labels_by_grants ON call_labels (grant_ids, event_time);
DROP VIEW call_grants_readable;
DROP TABLE call_label_grants;

CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, granttrail_time(c.event_time) AS event_time,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_labels c JOIN grant_list_members m ON m.list = c.grant_ids JOIN texts t ON t.id = m.grant_ref
JOIN events e ON e.id = c.event;
