-- granttrail schema, version 8, after the rewrite has copied event_rows into event_rows_8:
-- the new table takes the old one's name, indexes and views (schema_7.sql says what each is).
DROP TABLE event_rows;
ALTER TABLE event_rows_8 RENAME TO event_rows;
CREATE INDEX events_by_event_id ON event_rows (event_hash);
CREATE INDEX events_by_key ON event_rows (key, event_time);
CREATE INDEX events_by_grant ON event_rows (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX events_key_deletions ON event_rows (key) WHERE event_name = 'DeleteKey';
CREATE INDEX events_by_destination_key ON event_rows (destination_key, event_time)
    WHERE destination_key IS NOT NULL;
CREATE INDEX events_by_shared_event_id ON event_rows (shared_event_id) WHERE shared_event_id IS NOT NULL;
-- (ORs, not IN: SQLite would build a temporary table to test IN on every inserted event.)
CREATE INDEX events_key_context ON event_rows (key, event_time)
    WHERE event_name = 'CreateKey' OR event_name = 'PutKeyPolicy' OR event_name = 'TagResource'
       OR event_name = 'UntagResource' OR event_name = 'CreateAlias' OR event_name = 'UpdateAlias'
       OR event_name = 'DeleteAlias';
CREATE INDEX events_permission_changes ON event_rows (event_time)
    WHERE event_source <> 'kms.amazonaws.com' AND event_source <> 'cloudtrail.amazonaws.com';

-- Every event as text: what queries and people read. `event_hash` finds an event by eventID
-- (`event_hash = granttrail_hash(?) AND event_id = ?`).
CREATE VIEW events AS
SELECT r.id, r.event_id, r.event_source, r.shared_event_id, r.event_time, r.event_name,
       (SELECT text FROM texts WHERE id = r.event_type) AS event_type,
       (SELECT text FROM texts WHERE id = r.aws_region) AS aws_region,
       (SELECT text FROM texts WHERE id = r.recipient_account_id) AS recipient_account_id,
       r.error_code, r.error_message,
       (SELECT text FROM texts WHERE id = r.caller_type) AS caller_type,
       (SELECT text FROM texts WHERE id = r.caller_arn) AS caller_arn,
       r.caller_principal_id,
       (SELECT text FROM texts WHERE id = r.caller_account_id) AS caller_account_id,
       (SELECT text FROM texts WHERE id = r.session_issuer_arn) AS session_issuer_arn,
       (SELECT text FROM texts WHERE id = r.invoked_by) AS invoked_by,
       r.source_ip,
       (SELECT text FROM texts WHERE id = r.user_agent) AS user_agent,
       (SELECT text FROM texts WHERE id = r.key) AS key_arn,
       (SELECT text FROM texts WHERE id = r.destination_key) AS destination_key_arn,
       (SELECT text FROM texts WHERE id = r.request_key_id) AS request_key_id,
       r.grant_id, r.grant_spec, r.dry_run,
       (SELECT text FROM texts WHERE id = r.details) AS details,
       r.object_id, r.key, r.destination_key, r.event_hash
FROM event_rows r;

-- Every event with the object it came from and a readable time.
CREATE VIEW events_readable AS
SELECT e.event_id, e.shared_event_id, strftime('%Y-%m-%dT%H:%M:%SZ', e.event_time, 'unixepoch') AS event_time,
       e.event_name, e.error_code, COALESCE(e.caller_arn, e.caller_principal_id, e.invoked_by) AS caller,
       e.invoked_by, e.source_ip, e.key_arn, e.grant_id, o.source AS object
FROM events e JOIN objects o ON o.id = e.object_id;

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
JOIN texts g ON g.id = c.grant_ids JOIN texts r ON r.id = c.reasons JOIN texts f ON f.id = c.flags;

-- Which grants each call side named, as text.
CREATE VIEW call_grants_readable AS
SELECT t.text AS grant_id, e.event_id, strftime('%Y-%m-%dT%H:%M:%SZ', l.event_time, 'unixepoch') AS event_time,
       CASE l.side WHEN 0 THEN 'destination' WHEN 1 THEN 'key' ELSE 'source' END AS side
FROM call_label_grants l JOIN texts t ON t.id = l.grant_id JOIN events e ON e.id = l.event;
