-- granttrail schema, version 14: records are compressed a block at a time (the records of
-- consecutive events of one object together), and each event names its block and its slot
-- there, in place of one frame per event (`event_records`). Documented in docs/schema.md.
-- record_blocks_14.sql, run after this, moves the frames over.
CREATE TABLE record_blocks (
    id         INTEGER PRIMARY KEY,
    dictionary INTEGER NOT NULL REFERENCES record_dictionaries(id),
    records    BLOB NOT NULL   -- a zstd frame of the records, joined by NUL bytes
);
ALTER TABLE event_rows ADD COLUMN record_block INTEGER REFERENCES record_blocks(id);
ALTER TABLE event_rows ADD COLUMN record_slot INTEGER;
INSERT INTO record_blocks (id, dictionary, records) SELECT event_rowid, dictionary, record FROM event_records;
