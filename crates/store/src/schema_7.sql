-- granttrail schema, version 7: the records compressed (crates/store/src/records.rs).
-- Documented in docs/schema.md.

-- The zstd dictionaries records are compressed with; a dictionary never changes once used.
CREATE TABLE record_dictionaries (
    id         INTEGER PRIMARY KEY,
    dictionary BLOB NOT NULL
);

-- Each record as one zstd frame, compressed with dictionary `dictionary`. The records of a
-- version 6 database are moved here from `event_records_6` by the migration, which then
-- drops it.
ALTER TABLE event_records RENAME TO event_records_6;
CREATE TABLE event_records (
    event_rowid INTEGER PRIMARY KEY REFERENCES events(id),
    dictionary  INTEGER NOT NULL REFERENCES record_dictionaries(id),
    record      BLOB NOT NULL
);

