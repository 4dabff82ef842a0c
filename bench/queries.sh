#!/usr/bin/env bash
# bench/queries.sh [EVENTS] [REPS]     (defaults 5000000 3)
#
# Offline analytics, issue 5 point 4: tunelake's named queries (top_tracks,
# top_artists, listening_by_hour) over its star schema, against DuckDB
# running the same SQL text over the same Parquet files (only the files the
# lake's current version names). Each query is one whole command under
# /usr/bin/time for both: `tunelake query --name Q` and a python process that
# creates DuckDB views over read_parquet([...]) and runs sql/queries/Q.sql.
# On the way it records ingest and build seconds and peak RSS at EVENTS
# (issue 5 point 2: memory must not grow from 1M to 5M events).
# Results: $OUT/queries.jsonl and a table on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${1:-5000000}
REPS=${2:-3}
[[ $N =~ ^[0-9]+$ && $REPS =~ ^[0-9]+$ ]] || die "usage: bench/queries.sh [EVENTS] [REPS]"
DATA=$OUT/data-$N
LAKE=$OUT/lake-q-$N
RES=$OUT/queries.jsonl
BENCH=q-$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$OUT/logs/$BENCH-$N
mkdir -p "$LOGS"

ensure_tools
gen_data "$N" "$DATA"
EVENTS=$(manifest_get "$DATA" log_events)

# The lake, built once (reused when its star exists).
if ! "$TUNELAKE" --lake "$LAKE" status 2>/dev/null | grep -q "^star version"; then
  rm -rf "$LAKE"
  for stage in ingest build; do
    cmd=("$TUNELAKE" --lake "$LAKE" --progress off)
    [ $stage = ingest ] && cmd+=(ingest sparkify "$DATA") || cmd+=(build)
    log "tunelake $stage ($N events)"
    timed "$LOGS/$stage" "${cmd[@]}"
    [ "$T_RC" = 0 ] || { cat "$LOGS/$stage.log" >&2; die "tunelake $stage failed"; }
    record "$RES" tunelake "$stage" 1 "$EVENTS" bench="$BENCH" seconds="$T_SECS" rss_kb="$T_RSS_KB"
    log "  $T_SECS s, peak RSS $((T_RSS_KB / 1024)) MB"
  done
fi

# The files of the current star version, per table, as the manifest names them.
FILES=$LOGS/files.json
python3 - "$LAKE" > "$FILES" <<'PY'
import glob, json, os, sys
lake = sys.argv[1]
star = None
for p in sorted(glob.glob(os.path.join(lake, "_manifest", "[0-9]" * 8 + ".json"))):
    star = json.load(open(p)).get("star") or star
print(json.dumps({t: [os.path.join(lake, part["path"]) for part in parts] for t, parts in star["tables"].items()}))
PY

DUCK=$LOGS/duck_query.py
cat > "$DUCK" <<'PY'
import json, sys, duckdb
files, sql_path = json.load(open(sys.argv[1])), sys.argv[2]
con = duckdb.connect()
for table, paths in files.items():
    if paths:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({json.dumps(paths)})")
# tunelake's `plays` view, in UTC (tunelake runs with --tz UTC here).
con.execute("""CREATE VIEW plays AS SELECT *, played_at AS local_at, CAST(played_at AS DATE) AS local_date,
  CAST(hour(played_at) AS INT) AS local_hour, CAST(isodow(played_at) - 1 AS INT) AS local_weekday,
  CAST(date_trunc('week', played_at) AS DATE) AS local_week, CAST(date_trunc('month', played_at) AS DATE) AS local_month,
  CAST(year(played_at) AS INT) AS local_year FROM fact_plays""")
rows = con.execute(open(sql_path).read()).fetchall()
print(len(rows))
PY

for q in top_tracks top_artists listening_by_hour; do
  for rep in $(seq 1 "$REPS"); do
    # alternate which system goes first
    order=(tunelake duckdb); [ $((rep % 2)) = 0 ] && order=(duckdb tunelake)
    for sys in "${order[@]}"; do
      if [ $sys = tunelake ]; then
        timed "$LOGS/$q-$rep-tl" "$TUNELAKE" --lake "$LAKE" --progress off query --name "$q" --format csv --tz UTC
      else
        timed "$LOGS/$q-$rep-duck" "$VENV/bin/python" "$DUCK" "$FILES" "$REPO/sql/queries/$q.sql"
      fi
      [ "$T_RC" = 0 ] || { cat "$LOGS/$q-$rep-"*.log >&2; die "$sys $q failed"; }
      record "$RES" "$sys" "query $q" "$rep" "$EVENTS" bench="$BENCH" seconds="$T_SECS" rss_kb="$T_RSS_KB"
    done
  done
done

# The whole report (eight named queries), each right after a top_tracks of
# its own: the machine's speed drifts between the blocks above.
for rep in $(seq 1 "$REPS"); do
  timed "$LOGS/paired-$rep-tl" "$TUNELAKE" --lake "$LAKE" --progress off query --name top_tracks --format csv --tz UTC
  [ "$T_RC" = 0 ] || { cat "$LOGS/paired-$rep-tl.log" >&2; die "tunelake top_tracks failed"; }
  record "$RES" tunelake "paired top_tracks" "$rep" "$EVENTS" bench="$BENCH" seconds="$T_SECS" rss_kb="$T_RSS_KB"
  timed "$LOGS/report-$rep-tl" "$TUNELAKE" --lake "$LAKE" --progress off report --tz UTC --html "$LOGS/report.html"
  [ "$T_RC" = 0 ] || { cat "$LOGS/report-$rep-tl.log" >&2; die "tunelake report failed"; }
  record "$RES" tunelake "report" "$rep" "$EVENTS" bench="$BENCH" seconds="$T_SECS" rss_kb="$T_RSS_KB"
done

python3 - "$RES" "$BENCH" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l).get("bench") == sys.argv[2]]
def med(system, stage):
    v = [r["seconds"] for r in rows if r["system"] == system and r["stage"] == stage and r["seconds"] is not None]
    return statistics.median(v) if v else None
print(f"bench `{sys.argv[2]}`: {rows[0]['events']:,} events\n")
for stage in ("ingest", "build"):
    r = [x for x in rows if x["system"] == "tunelake" and x["stage"] == stage]
    if r:
        print(f"- tunelake {stage}: {r[0]['seconds']} s, peak RSS {r[0]['rss_kb'] // 1024} MB")
print("\n| query | tunelake s | DuckDB s | ratio |\n|---|---:|---:|---:|")
for q in ("top_tracks", "top_artists", "listening_by_hour"):
    t, d = med("tunelake", f"query {q}"), med("duckdb", f"query {q}")
    print(f"| {q} | {t:.2f} | {d:.2f} | {t / d:.2f}x |")
r, t = med("tunelake", "report"), med("tunelake", "paired top_tracks")
print(f"\n`report --html`: {r:.2f} s, {r / t:.2f}x `query --name top_tracks` run just before each ({t:.2f} s)")
PY
