-- granttrail schema, version 6: the ReEncrypts into a key found by time. Documented in
-- docs/schema.md.

-- A key relabelled in windows of time, and the calls rechecked from a time on, read the
-- ReEncrypts into the key within a time range; keyed by the destination key alone, each
-- window read all of them.
DROP INDEX events_by_destination_key;
CREATE INDEX events_by_destination_key ON events (destination_key_arn, event_time)
    WHERE destination_key_arn IS NOT NULL;
