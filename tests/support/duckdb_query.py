#!/usr/bin/env python3
"""Reads shipped audit objects the way Athena would: DuckDB over a local copy of the bucket's
Hive-partitioned tree (``<root>/<prefix>/account_id=…/region=…/dt=…/instance_id=…/*.json.gz``).

Usage: duckdb_query.py ROOT [SQL]

Without SQL it prints, as JSON, the event count per (account_id, region, dt, instance_id,
class_uid) and the number of distinct ``metadata.uid``; with SQL it runs it over the view
``audit`` and prints the rows as JSON. Partition columns are typed VARCHAR, as Athena's
projection declares them (DuckDB would otherwise guess BIGINT for a 12-digit account and drop
leading zeros).
"""
import json
import sys

import duckdb


def main() -> int:
    root = sys.argv[1]
    con = duckdb.connect()
    con.execute(
        f"""CREATE VIEW audit AS SELECT * FROM read_json('{root}/**/*.json.gz',
            format = 'newline_delimited', hive_partitioning = true, union_by_name = true,
            hive_types = {{'account_id': 'VARCHAR', 'region': 'VARCHAR', 'dt': 'VARCHAR',
                           'instance_id': 'VARCHAR'}})"""
    )
    if len(sys.argv) > 2:
        cur = con.execute(sys.argv[2])
        cols = [d[0] for d in cur.description]
        print(json.dumps([dict(zip(cols, row)) for row in cur.fetchall()], default=str))
        return 0
    rows = con.execute(
        """SELECT account_id, region, dt, instance_id, class_uid, count(*) AS n
           FROM audit GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    distinct = con.execute("SELECT count(DISTINCT metadata.uid) FROM audit").fetchone()[0]
    print(json.dumps({
        "groups": [
            {"account_id": a, "region": r, "dt": d, "instance_id": i, "class_uid": c, "n": n}
            for (a, r, d, i, c, n) in rows
        ],
        "distinct_uids": distinct,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
