-- granttrail schema, version 12 (additive): the other objects an identical record was read from
-- (CloudTrail delivering an event twice, or one file ingested under two names). Evidence rests on
-- every copy of a record: one read from an altered or unlisted file and also from a file that is
-- neither is not unverified evidence. Documented in docs/schema.md.
CREATE TABLE event_copies (
    event_rowid INTEGER NOT NULL REFERENCES event_rows(id),
    object_id   INTEGER NOT NULL REFERENCES objects(id),
    PRIMARY KEY (event_rowid, object_id)
) WITHOUT ROWID;
