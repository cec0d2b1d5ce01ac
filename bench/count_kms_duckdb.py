#!/usr/bin/env python3
"""DuckDB's read_json counting KMS events by eventName. Usage: THREADS MAX_OBJECT_BYTES GLOB"""
import sys

import duckdb

threads, max_object, pattern = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
rows = con.execute(
    f"""SELECT r.eventName, count(*) FROM (
          SELECT unnest(Records) AS r FROM read_json('{pattern}', maximum_object_size = {max_object},
                                                      columns = {{'Records': 'JSON[]'}}))
        WHERE r->>'eventSource' = 'kms.amazonaws.com' GROUP BY 1"""
).fetchall()
print(sum(n for _, n in rows), dict(rows))
