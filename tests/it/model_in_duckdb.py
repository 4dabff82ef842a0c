"""Runs tunelake's model (sql/model/*.sql) in DuckDB over the lake's staging
files, for tests/it/delta.rs: the model's SQL is portable with the changes
listed in TRANSLATIONS (docs/scale.md names them).

    python model_in_duckdb.py <out_dir> <model_dir> <tolerance_s> <order> <table>=<file>,... [...] -- <star>:<col>,... [...]

<order> is the comma-separated order tunelake computes the model files in;
each staging table is a view over its files. Every star table's rows, in the
contract's columns, go to <out_dir>/<star>.parquet.
"""

import json
import pathlib
import re
import sys

import duckdb
import pyarrow.parquet as pq

from read_delta import plain

# DataFusion spellings DuckDB reads otherwise.
TRANSLATIONS = [
    (r"TIMESTAMP\(6\)", "TIMESTAMP"),  # DuckDB's TIMESTAMP is microseconds already
    (r"\bfirst_value\((?=[^)]*ORDER BY)", "first("),  # the ordered aggregate
]


def main():
    out, model_dir, tolerance, order = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    split = sys.argv.index("--")
    staging, stars = sys.argv[5:split], sys.argv[split + 1:]
    con = duckdb.connect()
    con.execute("CREATE MACRO to_timestamp_micros(x) AS make_timestamp(x)")
    con.execute(f"CREATE TABLE tl_params AS SELECT CAST({float(tolerance)} AS DOUBLE) AS duration_tolerance_s")
    for arg in staging:
        table, files = arg.split("=", 1)
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({json.dumps(files.split(','))})")
    for name in order.split(","):
        sql = (model_dir / f"{name}.sql").read_text()
        for pattern, replacement in TRANSLATIONS:
            sql = re.sub(pattern, replacement, sql)
        con.execute(f"CREATE TABLE {name} AS {sql}")
    out.mkdir(parents=True, exist_ok=True)
    for arg in stars:
        table, cols = arg.split(":", 1)
        select = ", ".join(f'"{c}"' for c in cols.split(","))
        pq.write_table(plain(con.execute(f"SELECT {select} FROM {table}").to_arrow_table()), out / f"{table}.parquet")


if __name__ == "__main__":
    main()
