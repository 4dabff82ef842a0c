"""Reads the lake's star tables the way other tools do, for tests/it/delta.rs.

    python read_delta.py <lake> <out_dir> <queries_dir> <table>:<col>,<col>,... [...]
    python read_delta.py loop <lake> <stop_file> <out.json>

For each engine (delta-rs's Python `deltalake`, Polars, and DuckDB's own
`delta` extension), writes every table's rows, in the given columns, to
<out_dir>/<engine>/<table>.parquet, and the Delta version each engine read
to <out_dir>/<engine>/versions.json. Then runs every named query of
<queries_dir> in DuckDB over the Delta tables, into
<out_dir>/queries/<name>.parquet. The Rust test compares those rows with
`tunelake query`'s.

`loop` reads the star with delta-rs again and again until <stop_file>
exists (a build runs meanwhile; <out.json>.ready says the first read is done), and writes what each read saw: the plays,
their Delta version, and how many of the users, tracks, artists and times
they name the dimensions lack.
"""

import json
import pathlib
import sys

import deltalake
import duckdb
import duckdb_extension_delta
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def duckdb_connection():
    # The extension ships in a PyPI package (no download at run time).
    ext = next(pathlib.Path(duckdb_extension_delta.__file__).parent.glob("extensions/*/delta.duckdb_extension"))
    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    return con


def read_deltalake(path, columns):
    dt = deltalake.DeltaTable(path)
    return dt.version(), dt.to_pyarrow_table(columns=columns)


def read_polars(path, columns):
    version = deltalake.DeltaTable(path).version()
    return version, pl.read_delta(path, version=version, columns=columns).to_arrow()


def read_duckdb(con):
    def read(path, columns):
        cols = ", ".join(f'"{c}"' for c in columns)
        return None, con.execute(f"SELECT {cols} FROM delta_scan('{path}')").to_arrow_table()

    return read


def plain(rows):
    """The rows with plain Arrow types, for the Rust reader and its rendering:
    large and view strings become strings, DuckDB's integer decimals (its
    sums of integers) 64-bit integers."""
    def plain_type(t):
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return pa.string()
        if pa.types.is_decimal(t) and t.scale == 0:
            return pa.int64()
        return t

    return rows.cast(pa.schema([pa.field(f.name, plain_type(f.type)) for f in rows.schema]))


def run_queries(lake, queries, tables, out):
    con = duckdb_connection()
    for table, _ in tables:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM delta_scan('{lake / 'star' / table}')")
    # What tunelake adds for its queries, in UTC (the zone the test's tunelake side uses):
    # the `plays` view, local_time() and DataFusion's to_unixtime().
    con.execute("CREATE MACRO local_time(ts) AS ts")
    con.execute("CREATE MACRO to_unixtime(ts) AS epoch(ts)")
    con.execute("""CREATE VIEW plays AS SELECT *, played_at AS local_at, CAST(played_at AS DATE) AS local_date,
      CAST(hour(played_at) AS INT) AS local_hour, CAST(isodow(played_at) - 1 AS INT) AS local_weekday,
      CAST(date_trunc('week', played_at) AS DATE) AS local_week,
      CAST(date_trunc('month', played_at) AS DATE) AS local_month, CAST(year(played_at) AS INT) AS local_year
      FROM fact_plays""")
    (out / "queries").mkdir(parents=True, exist_ok=True)
    for sql in sorted(queries.glob("*.sql")):
        rows = con.execute(sql.read_text()).to_arrow_table()
        pq.write_table(plain(rows), out / "queries" / f"{sql.stem}.parquet")


def read_loop(lake, stop, out):
    reads = []
    while True:
        last = stop.exists()
        # The facts first: the dimensions a build commits before them are then at least as new.
        fact = deltalake.DeltaTable(str(lake / "star" / "fact_plays"))
        plays = fact.to_pyarrow_table(columns=["user_id", "track_id", "artist_id", "played_at"])
        missing = 0
        for table, key, column in [
            ("dim_users", "user_id", "user_id"),
            ("dim_tracks", "track_id", "track_id"),
            ("dim_artists", "artist_id", "artist_id"),
            ("dim_time", "ts", "played_at"),
        ]:
            keys = set(deltalake.DeltaTable(str(lake / "star" / table)).to_pyarrow_table(columns=[key])[key].to_pylist())
            named = set(v for v in plays[column].to_pylist() if v is not None)
            missing += len(named - keys)
        reads.append({"plays": plays.num_rows, "version": fact.version(), "missing": missing})
        if len(reads) == 1:
            # The test starts the build once a read has seen the star before it.
            pathlib.Path(str(out) + ".ready").touch()
        if last:
            break
    out.write_text(json.dumps(reads))


def main():
    if sys.argv[1] == "loop":
        read_loop(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4]))
        return
    lake, out, queries = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    tables = [arg.split(":", 1) for arg in sys.argv[4:]]
    engines = {"deltalake": read_deltalake, "polars": read_polars, "duckdb": read_duckdb(duckdb_connection())}
    for engine, read in engines.items():
        (out / engine).mkdir(parents=True, exist_ok=True)
        versions = {}
        for table, cols in tables:
            version, rows = read(str(lake / "star" / table), cols.split(","))
            versions[table] = version
            pq.write_table(plain(rows), out / engine / f"{table}.parquet")
        (out / engine / "versions.json").write_text(json.dumps(versions))
    run_queries(lake, queries, tables, out)


if __name__ == "__main__":
    main()
