#!/usr/bin/env python3
"""The plain Python a user would write: count KMS events by eventName in CloudTrail files."""
import collections
import gzip
import json
import sys

counts = collections.Counter()
for path in sys.argv[1:]:
    with gzip.open(path, "rb") as f:
        for record in json.load(f)["Records"]:
            if record.get("eventSource") == "kms.amazonaws.com":
                counts[record.get("eventName")] += 1
print(sum(counts.values()), dict(counts))
