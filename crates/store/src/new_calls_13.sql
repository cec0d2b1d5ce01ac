-- granttrail schema, version 13, on both engines, after each engine's own step
-- (schema_13.sql, postgres_13.sql): the calls after the old watermark, with their keys and
-- ReEncrypt destinations, become `new_calls` rows, and the watermark goes.
INSERT INTO new_calls (key_arn, object_id, since, calls)
SELECT key_arn, object_id, min(event_time), count(*)
FROM (
    SELECT key_arn, object_id, event_time FROM events
    WHERE id > (SELECT event_id FROM labelled_through WHERE id = 1)
      AND event_source = 'kms.amazonaws.com' AND key_arn IS NOT NULL
    UNION ALL
    SELECT destination_key_arn, object_id, event_time FROM events
    WHERE id > (SELECT event_id FROM labelled_through WHERE id = 1)
      AND event_source = 'kms.amazonaws.com' AND destination_key_arn IS NOT NULL
      AND destination_key_arn IS DISTINCT FROM key_arn
) AS new
GROUP BY key_arn, object_id;

DROP TABLE labelled_through;
