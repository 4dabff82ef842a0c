#!/usr/bin/env bash
# bench/ledger.sh [N]   (also: bench/run.sh ledger [N])
#
# Nothing gets slower as the run ledger grows (`run --every 6h` commits about
# 1,500 runs a year). A lake of N generated events (default 100000, the set
# run.sh uses) is ingested and built, then grows by real small runs: each
# cycle ingests one file of 3 new plays in the set's last month (so the star
# keeps its partitions) and builds: 2 runs. At 10 runs and again at 2,000
# runs, LEDGER_REPS times each (default 9), it times:
#   status                      the whole ledger summary
#   query --name top_tracks     a named query over the star
#   build                       incremental, after ingesting one more file (untimed)
# and prints the medians and the ratio (target: at most 1.1x). Rows go to
# $OUT/ledger.jsonl, the table to $OUT/ledger.md. Knobs: see lib.sh;
# LEDGER_RUNS=2000, LEDGER_REPS=9, KEEP=1 keeps the lake.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${1:-100000}
TARGET=${LEDGER_RUNS:-2000}
REPS=${LEDGER_REPS:-9}
RES=$OUT/ledger.jsonl
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
BENCH="ledger-$STAMP"
LOGS=$OUT/logs/$BENCH
LAKE=$OUT/lake-ledger-$N
SMALL=$OUT/ledger-small-$N
mkdir -p "$OUT" "$LOGS"

ensure_binary
env_info 2>/dev/null | grep -v duckdb | tee "$LOGS/env.txt" >&2 || true
gen_data "$N" "$OUT/data-$N"

# small_files COUNT: COUNT folders of one log file each, 3 NextSong plays with
# new session ids, in the last day of the set (cheap: made once, reused).
small_files() {
  [ -f "$SMALL/$(($1 - 1))/log_data/small.json" ] && return
  rm -rf "$SMALL"
  python3 - "$OUT/data-$N" "$SMALL" "$1" <<'EOF'
import json, os, sys, glob
data, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
last = sorted(glob.glob(f"{data}/log_data/**/*.json", recursive=True))[-1]
events = [json.loads(l) for l in open(last) if '"NextSong"' in l]
template, ts = events[0], max(e["ts"] for e in events)
for i in range(count):
    os.makedirs(f"{out}/{i}/log_data", exist_ok=True)
    with open(f"{out}/{i}/log_data/small.json", "w") as f:
        for k in range(3):
            e = dict(template, sessionId=9_000_000 + i, itemInSession=k, ts=ts - (i * 3 + k) * 1000)
            f.write(json.dumps(e) + "\n")
EOF
}

NEXT=0
tl() { "$TUNELAKE" --lake "$LAKE" --progress off "$@"; }
runs() { tl status --runs 1 | sed -n 's/^runs (\([0-9]*\) in all.*/\1/p'; }
cycle() {  # one small file ingested, then built: 2 runs
  tl ingest sparkify "$SMALL/$NEXT" >/dev/null 2>&1 || die "ingest of $SMALL/$NEXT failed"
  NEXT=$((NEXT + 1))
  tl build >/dev/null 2>&1 || die "build failed"
}

# clock FILE cmd...: runs cmd, output to FILE.log; T_SECS = wall seconds to
# the millisecond (GNU time's 0.01 s is too coarse for `status`).
clock() {
  local f=$1 t0 t1; shift
  t0=$(date +%s%N)
  "$@" >"$f.log" 2>&1 || die "failed: $* (see $f.log)"
  t1=$(date +%s%N)
  T_SECS=$(python3 -c "print(round(($t1 - $t0) / 1e9, 3))")
}

# measure RUNS: REPS timings of each command
measure() {
  local at=$1 rep f
  log "measuring at $(runs) runs"
  for rep in $(seq 1 "$REPS"); do
    f=$LOGS/r$at-$rep
    clock "$f-status" tl status
    record "$RES" tunelake status "$rep" "$N" bench="$BENCH" runs="$at" seconds="$T_SECS"
    clock "$f-query" tl query --name top_tracks
    record "$RES" tunelake query "$rep" "$N" bench="$BENCH" runs="$at" seconds="$T_SECS"
    tl ingest sparkify "$SMALL/$NEXT" >/dev/null 2>&1; NEXT=$((NEXT + 1))
    clock "$f-build" tl build
    record "$RES" tunelake build "$rep" "$N" bench="$BENCH" runs="$at" seconds="$T_SECS"
  done
}

small_files $((TARGET / 2 + 4 * REPS + 10))
discard "$LAKE"
log "base: ingest and build of $N events"
tl ingest sparkify "$OUT/data-$N" >/dev/null 2>&1
tl build >/dev/null 2>&1
while [ "$(runs)" -lt 10 ]; do cycle; done
measure 10
log "growing the ledger to $TARGET runs (a cycle is an ingest and a build)"
while true; do
  have=$(runs)
  [ "$have" -ge "$TARGET" ] && break
  for _ in $(seq 1 $(( (TARGET - have + 1) / 2 ))); do cycle; done
done
measure "$TARGET"

python3 - "$RES" "$BENCH" "$TARGET" <<'EOF' | tee "$OUT/ledger.md"
import json, statistics, sys
res, bench, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(res)]
rows = [r for r in rows if r.get("bench") == bench]
def med(stage, runs):
    return statistics.median(r["seconds"] for r in rows if r["stage"] == stage and r["runs"] == runs)
print(f"| command ({rows[0]['events']:,} events) | after 10 runs | after {target:,} runs | ratio |")
print("|---|---:|---:|---:|")
for stage, what in [("status", "`status`"), ("query", "`query --name top_tracks`"), ("build", "incremental `build`")]:
    a, b = med(stage, 10), med(stage, target)
    print(f"| {what} | {a:.3f} s | {b:.3f} s | {b / a:.2f}x |" if a else f"| {what} | {a} | {b} | |")
EOF
[ "${KEEP:-0}" = 1 ] || discard "$LAKE"
empty_trash
log "results: $RES (bench=$BENCH), logs: $LOGS"
