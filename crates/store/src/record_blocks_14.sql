-- The version 14 step both engines take after their own (schema_14.sql, postgres_14.sql):
-- each frame of an older version is a block of one record, under its event's id.
UPDATE event_rows SET record_block = id, record_slot = 0 WHERE id IN (SELECT event_rowid FROM event_records);
DROP TABLE event_records;
