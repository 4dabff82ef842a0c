#!/usr/bin/env bash
# bench/run.sh [EVENTS] [RUNS]      tunelake vs the DuckDB + psql baseline (defaults 1000000 3)
# bench/run.sh incremental [N...]   one more day on a lake of N events (see incremental.sh)
# bench/run.sh ledger [N]           status, query and build after 10 and 2,000 runs (see ledger.sh)
# bench/run.sh s3 [N] [RUNS]         run on a local S3 server against local disk (see s3.sh)
#
# One command, same machine, same run, same generated files:
#   1. installs what is missing (GNU time, PostgreSQL 15, a venv with duckdb,
#      the tunelake release binary via `cargo build --release --locked`)
#   2. generates EVENTS events once into $OUT/data-EVENTS with
#      ../shared/bench/gen_sparkify.py (reused when its manifest matches)
#   3. starts the throwaway PostgreSQL of ../shared/bench/pg.sh (port 55432)
#   4. RUNS repetitions, alternating which pipeline goes first:
#        tunelake ingest, build, sync -- fresh lake dir and a fresh, empty
#          database per run, each command under /usr/bin/time (wall s, peak RSS)
#        tunelake run -- the same as one command, on another fresh lake and
#          database (odd runs after the three commands, even runs before)
#        ../shared/bench/baseline_duckdb.py -- per-stage seconds from its own
#          JSONL results, peak RSS of the whole process (incl. its psql child)
#      an untimed VACUUM ANALYZE + CHECKPOINT runs before each pipeline
#   5. the COPY floor once, after the last run: ../shared/bench/limit_copy.sh
#      on the CSVs the last DuckDB run exported (REPS = RUNS)
#   6. appends everything to $OUT/results.jsonl and prints the markdown table
#      (bench/report.py), also saved as $OUT/table-EVENTS.md
# Knobs: see lib.sh (OUT, TUNELAKE, CARGO_TARGET_DIR, VENV, ...), plus
#   SKIP_FLOOR=1   do not run limit_copy.sh
#   KEEP=1         keep each run's lake and database (default: both are
#                  deleted when the invocation ends, not between runs: see
#                  `discard` in lib.sh)
set -euo pipefail
if [ "${1:-}" = incremental ]; then shift; exec "$(dirname "$0")/incremental.sh" "$@"; fi
if [ "${1:-}" = ledger ]; then shift; exec "$(dirname "$0")/ledger.sh" "$@"; fi
if [ "${1:-}" = s3 ]; then shift; exec "$(dirname "$0")/s3.sh" "$@"; fi
source "$(dirname "$0")/lib.sh"

N=${1:-1000000}
RUNS=${2:-3}
[[ $N =~ ^[0-9]+$ && $RUNS =~ ^[0-9]+$ ]] || die "usage: bench/run.sh [EVENTS] [RUNS] | bench/run.sh incremental [N...]"
DATA=$OUT/data-$N
CSV=$OUT/csv-$N
RES=$OUT/results.jsonl
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$OUT/logs/$STAMP-$N
mkdir -p "$OUT" "$LOGS"

ensure_tools
gen_data "$N" "$DATA"
EVENTS=$(manifest_get "$DATA" log_events)
pg_start
trap 'empty_trash; pg_stop_if_started' EXIT
env_info | tee "$LOGS/env.txt" >&2
# every row of this invocation carries the same bench id, so that report.py
# can pick out this invocation from a results.jsonl that accumulates runs
BENCH="$STAMP"

run_tunelake() {  # run_tunelake K
  local k=$1 lake=$OUT/lake-$N-r$1 db=tl_bench_${N}_r$1 dir=$LOGS/r$1
  mkdir -p "$dir"
  discard "$lake"
  fresh_db "$db"
  settle
  local total=0 stage ok=1
  for stage in ingest build sync; do
    local cmd=("$TUNELAKE" --lake "$lake" --progress off)
    case $stage in
      ingest) cmd+=(ingest sparkify "$DATA") ;;
      build) cmd+=(build) ;;
      sync) cmd+=(sync --database-url "$(db_url "$db")") ;;
    esac
    log "run $k: tunelake $stage"
    timed "$dir/tunelake-$stage" "${cmd[@]}"
    record "$RES" tunelake "$stage" "$k" "$EVENTS" bench="$BENCH" n="$N" order="$ORDER" \
      seconds="$T_SECS" rss_kb="$T_RSS_KB" user_s="$T_USER" sys_s="$T_SYS" rc="$T_RC" log="$dir/tunelake-$stage.log"
    if [ "$T_RC" != 0 ]; then
      log "run $k: tunelake $stage FAILED (exit $T_RC):"; sed 's/^/    /' "$dir/tunelake-$stage.log" >&2
      ok=0; break
    fi
    sed 's/^/    /' "$dir/tunelake-$stage.log" >&2
    total=$(python3 -c "print(round($total + $T_SECS, 2))")
  done
  if [ $ok = 1 ]; then
    # untimed check: rows that reached PostgreSQL
    local counts
    counts=$(psql_db "$db" -At -F= -c "SELECT 'fact_plays', count(*) FROM fact_plays UNION ALL
      SELECT 'dim_users', count(*) FROM dim_users UNION ALL SELECT 'dim_tracks', count(*) FROM dim_tracks
      UNION ALL SELECT 'dim_artists', count(*) FROM dim_artists UNION ALL SELECT 'dim_time', count(*) FROM dim_time
      UNION ALL SELECT 'matched', count(*) FROM songplays WHERE song_id IS NOT NULL" 2>&1 | tr '\n' ' ') || true
    log "run $k: tunelake in PostgreSQL: $counts"
    record "$RES" tunelake "total (ingest+build+sync)" "$k" "$EVENTS" bench="$BENCH" n="$N" order="$ORDER" \
      seconds="$total" note="\"pg rows: $counts\""
  fi
  if [ "${KEEP:-0}" != 1 ]; then discard "$lake"; discard_db "$db"; fi
}

# The same three stages as one command, `tunelake run`, the user's main job:
# its sync loads each month file while the build is still writing the rest
# (src/sink/sync.rs, `Loader`). It also prints the top artists, as it always does.
run_tunelake_one() {  # run_tunelake_one K
  local k=$1 lake=$OUT/lake-$N-r$1-run db=tl_bench_${N}_r$1_run dir=$LOGS/r$1
  mkdir -p "$dir"
  discard "$lake"
  fresh_db "$db"
  settle
  log "run $k: tunelake run (one command)"
  timed "$dir/tunelake-run" "$TUNELAKE" --lake "$lake" --progress off run --sparkify "$DATA" \
    --database-url "$(db_url "$db")"
  if [ "$T_RC" != 0 ]; then
    log "run $k: tunelake run FAILED (exit $T_RC):"; sed 's/^/    /' "$dir/tunelake-run.log" >&2
  else
    grep -E '^(ingest|build|sync):|while the build' "$dir/tunelake-run.log" | sed 's/^/    /' >&2
  fi
  local counts
  counts=$(psql_db "$db" -At -F= -c "SELECT 'fact_plays', count(*) FROM fact_plays UNION ALL
    SELECT 'dim_time', count(*) FROM dim_time" 2>&1 | tr '\n' ' ') || true
  record "$RES" tunelake "run (one command)" "$k" "$EVENTS" bench="$BENCH" n="$N" order="$ORDER" \
    seconds="$T_SECS" rss_kb="$T_RSS_KB" user_s="$T_USER" sys_s="$T_SYS" rc="$T_RC" \
    log="$dir/tunelake-run.log" note="\"pg rows: $counts\""
  if [ "${KEEP:-0}" != 1 ]; then discard "$lake"; discard_db "$db"; fi
}

run_duckdb() {  # run_duckdb K
  local k=$1 dir=$LOGS/r$1
  mkdir -p "$dir"
  settle
  log "run $k: duckdb baseline"
  timed "$dir/duckdb" "$VENV/bin/python" "$SHARED/baseline_duckdb.py" "$DATA" \
    --csv-dir "$CSV" --results "$dir/duckdb.jsonl"
  if [ "$T_RC" != 0 ]; then
    log "run $k: duckdb baseline FAILED (exit $T_RC):"; sed 's/^/    /' "$dir/duckdb.log" >&2
    record "$RES" duckdb FAILED "$k" "$EVENTS" bench="$BENCH" n="$N" rc="$T_RC" log="$dir/duckdb.log"
    return
  fi
  # its stages -> our rows; peak RSS is the whole process's
  python3 - "$dir/duckdb.jsonl" "$RES" "$k" "$BENCH" "$N" "$ORDER" "$T_SECS" "$T_RSS_KB" "$EVENTS" <<'EOF'
import json, os, sys, time
src, res, k, bench, n, order, wall, rss, events = sys.argv[1:]
out = open(res, "a")
for line in open(src):
    if not line.strip():
        continue
    r = json.loads(line)
    stage = r["stage"].split(" ")[0]          # read_logs, read_songs, transform, export_csv, load_pg, total
    if stage == "total":
        stage = "total (incl. load_pg)"
    out.write(json.dumps({"system": "duckdb", "stage": stage, "run": int(k), "events": int(events),
        "bench": bench, "n": int(n), "order": order, "seconds": r["seconds"], "rss_kb": int(rss),
        "rc": 0, "note": r.get("note", ""), "duckdb_system": r["system"],
        "at": r.get("at"), "loadavg": r.get("loadavg")}) + "\n")
out.write(json.dumps({"system": "duckdb", "stage": "process wall (python start to exit)", "run": int(k),
    "events": int(events), "bench": bench, "n": int(n), "order": order, "seconds": float(wall),
    "rss_kb": int(rss), "rc": 0, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "loadavg": os.getloadavg()[0]}) + "\n")
EOF
  grep '"stage"' "$dir/duckdb.jsonl" | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l); print("    %-48s %7.2f s  %s" % (r["stage"], r["seconds"], r.get("note", "")[:70]))' >&2
}

for k in $(seq 1 "$RUNS"); do
  if [ $((k % 2)) = 1 ]; then
    ORDER="tunelake first"; run_tunelake "$k"; run_tunelake_one "$k"; run_duckdb "$k"
  else
    ORDER="duckdb first"; run_duckdb "$k"; run_tunelake_one "$k"; run_tunelake "$k"
  fi
done

# COPY floor: the final star tables as CSV (the last DuckDB run's export),
# loaded by psql \copy. limit_copy.sh times six variants, REPS each; it
# writes median rows to its RESULTS file and every rep to RESULTS.reps.
if [ "${SKIP_FLOOR:-0}" != 1 ] && [ -f "$CSV/songplays.csv" ]; then
  settle
  log "COPY floor: limit_copy.sh, $RUNS reps per variant"
  : >"$LOGS/limit.jsonl"
  timed "$LOGS/limit" "$SHARED/limit_copy.sh" "$CSV" "$RUNS" "$LOGS/limit.jsonl" "$EVENTS"
  if [ "$T_RC" = 0 ]; then
    python3 - "$LOGS/limit.jsonl" "$RES" "$BENCH" "$N" "$T_RSS_KB" <<'EOF'
import json, sys
src, res, bench, n, rss = sys.argv[1:]
with open(res, "a") as out:
    for line in open(src):
        r = json.loads(line)
        out.write(json.dumps({"system": "copy floor", "stage": r["stage"], "run": "median",
            "events": r["events"], "bench": bench, "n": int(n), "seconds": r["seconds"],
            "rss_kb": int(rss), "rc": 0, "rows": r["rows"], "bytes": r["bytes"],
            "note": r["note"], "loadavg": r["loadavg"]}) + "\n")
EOF
  else
    log "COPY floor FAILED (exit $T_RC), skipped:"; tail -5 "$LOGS/limit.log" >&2
  fi
fi
echo "end: $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOGS/env.txt"

python3 "$HERE/report.py" "$RES" --bench "$BENCH" | tee "$OUT/table-$N.md"
log "results: $RES (bench=$BENCH), logs: $LOGS"
