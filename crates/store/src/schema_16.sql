-- granttrail schema, version 16: a label finds its grants through its grant list, not a row per
-- call and grant. A list (`call_labels.grant_ids`, a text) is shared by every call that names
-- the same grants, so `grant_list_members` holds each list's grants once, and
-- `call_labels_by_grants` finds the calls naming a list. This replaces `call_label_grants`,
-- whose rows grew with calls times the grants each named. Documented in docs/schema.md.
CREATE TABLE grant_list_members (
    grant_ref INTEGER NOT NULL,   -- texts.id of a grant id
    list      INTEGER NOT NULL,   -- texts.id of a grant list that names it
    PRIMARY KEY (grant_ref, list)
) WITHOUT ROWID;
INSERT INTO grant_list_members (grant_ref, list)
SELECT DISTINCT CAST(j.value AS INTEGER), t.id
FROM (SELECT DISTINCT grant_ids FROM call_labels) AS c JOIN texts t ON t.id = c.grant_ids, json_each(t.text) AS j;
CREATE INDEX call_labels_by_grants ON call_labels (grant_ids, event_time);
DROP VIEW call_grants_readable;
DROP TABLE call_label_grants;

-- Which grants each call side named, as text.
CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, strftime('%Y-%m-%dT%H:%M:%SZ', c.event_time, 'unixepoch') AS event_time,
       CASE c.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_labels c JOIN grant_list_members m ON m.list = c.grant_ids JOIN texts t ON t.id = m.grant_ref
JOIN events e ON e.id = c.event;
