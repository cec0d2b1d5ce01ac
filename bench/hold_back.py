"""Moves the records of a corpus's last 5 minutes out of its objects into one new object, as
the next delivery would bring them; prints that object's record and grant-event counts.

    python3 bench/hold_back.py NEW.json.gz OBJECT.json.gz...
"""
import datetime
import gzip
import json
import sys


# Compact, as CloudTrail writes its objects: records stored from spaced-out JSON compress worse
# and would make the large database look bigger than a real trail's.
AS_DELIVERED = {"separators": (",", ":"), "ensure_ascii": False}


def main():
    new, files = sys.argv[1], sys.argv[2:]
    latest = ""
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as h:
            latest = max([latest] + [r["eventTime"] for r in json.load(h)["Records"]])
    cut = datetime.datetime.strptime(latest, "%Y-%m-%dT%H:%M:%SZ") - datetime.timedelta(minutes=5)
    cut = cut.strftime("%Y-%m-%dT%H:%M:%SZ")
    held = []
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as h:
            records = json.load(h)["Records"]
        held += [r for r in records if r["eventTime"] >= cut]
        with gzip.open(f, "wt", encoding="utf-8") as h:
            json.dump({"Records": [r for r in records if r["eventTime"] < cut]}, h, **AS_DELIVERED)
    held.sort(key=lambda r: r["eventTime"])
    with gzip.open(new, "wt", encoding="utf-8") as h:
        json.dump({"Records": held}, h, **AS_DELIVERED)
    grant_events = sum(r["eventName"] in ("CreateGrant", "RetireGrant", "RevokeGrant") for r in held)
    print(len(held), grant_events)


if __name__ == "__main__":
    main()
