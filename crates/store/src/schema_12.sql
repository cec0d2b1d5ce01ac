-- granttrail schema, version 12 (additive): the other objects an identical record was read from
-- (CloudTrail delivering an event twice, or one file ingested under two names). Evidence rests on
-- every copy: an event read from an altered or unlisted file and also from a verified one is
-- vouched for. Documented in docs/schema.md.
CREATE TABLE event_copies (
    event_id  TEXT NOT NULL,
    object_id INTEGER NOT NULL REFERENCES objects(id),
    PRIMARY KEY (event_id, object_id)
) WITHOUT ROWID;
