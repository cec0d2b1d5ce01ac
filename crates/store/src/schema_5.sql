-- granttrail schema, version 5: call-grant links ordered by time within each grant. Documented
-- in docs/schema.md.

-- Keyed by (grant_id, event_id), a new call's link landed at a random place in each of its
-- grants' ranges (event ids are UUIDs): a delivery of a few hundred calls, each naming a dozen
-- grants, dirtied thousands of pages. With the call's time second, new calls append at the end
-- of each grant's range.
CREATE TABLE call_label_grants_5 (
    grant_id   TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    side       TEXT NOT NULL,
    PRIMARY KEY (grant_id, event_time, event_id, side)
) WITHOUT ROWID;
INSERT INTO call_label_grants_5 (grant_id, event_time, event_id, side)
    SELECT l.grant_id, c.event_time, l.event_id, l.side
    FROM call_label_grants l JOIN call_labels c ON c.event_id = l.event_id AND c.side = l.side;
DROP TABLE call_label_grants;
ALTER TABLE call_label_grants_5 RENAME TO call_label_grants;
