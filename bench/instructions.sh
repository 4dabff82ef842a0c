#!/usr/bin/env bash
# bench/instructions.sh [EVENTS] [BINARY...]     (defaults 100000, $TUNELAKE)
#
# Instruction counts of tunelake's ingest and build under valgrind's
# callgrind, on a generated set of EVENTS: the same binary and data give the
# same count run after run, where wall time on a shared two-core VM moves by
# 20-50 % (and this VM has no hardware counters for `perf stat`). Give two
# binaries, the one before a change and the one after, to compare them on
# the same data; the last column is each one's total against the first's.
#
# What the counts leave out: the kernel (reading, writing and syncing files,
# the page cache), waiting, and the second core (a count is work, not time).
# valgrind also hides the CPU's SHA instructions, so sha256 runs in software
# and counts several times its real share. Use it to compare user-space work;
# time with bench/run.sh.
#
# Output: a table on stdout; the callgrind files under $OUT/logs/ir-<id>/,
# for `callgrind_annotate FILE | head -40`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${1:-100000}
[[ $N =~ ^[0-9]+$ ]] || die "usage: bench/instructions.sh [EVENTS] [BINARY...]"
shift $(( $# > 0 ? 1 : 0 ))
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || { ensure_binary; BINS=("$TUNELAKE"); }
command -v valgrind >/dev/null || { log "installing valgrind"; apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
DATA=$OUT/data-$N
gen_data "$N" "$DATA"
ID=ir-$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$OUT/logs/$ID
mkdir -p "$LOGS"

COUNTS=$LOGS/counts.tsv
for i in "${!BINS[@]}"; do
  bin=${BINS[$i]}
  [ -x "$bin" ] || die "no binary at $bin"
  lake=$LOGS/lake-$i
  for stage in ingest build; do
    cmd=("$bin" --lake "$lake" --progress off)
    [ $stage = ingest ] && cmd+=(ingest sparkify "$DATA") || cmd+=(build)
    log "$stage ($N events) under callgrind: $bin"
    valgrind --tool=callgrind --callgrind-out-file="$LOGS/$stage-$i.out" "${cmd[@]}" >"$LOGS/$stage-$i.log" 2>&1 ||
      { tail -20 "$LOGS/$stage-$i.log" >&2; die "$stage under valgrind failed"; }
    ir=$(grep -o 'Collected : [0-9]*' "$LOGS/$stage-$i.log" | awk '{print $3}')
    printf '%s\t%s\t%s\t%s\n' "$i" "$bin" "$stage" "$ir" >> "$COUNTS"
  done
  rm -rf "$lake"
done

python3 - "$COUNTS" "$N" "$ID" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by_bin = {}
for i, b, stage, ir in rows:
    by_bin.setdefault((i, b), {})[stage] = int(ir)
print(f"instructions (callgrind), {int(sys.argv[2]):,} events, {sys.argv[3]}\n")
print("| binary | ingest | build | total | vs first |")
print("|---|---:|---:|---:|---:|")
first = None
for (_, b), c in by_bin.items():
    total = c["ingest"] + c["build"]
    first = first or total
    g = lambda n: f"{n / 1e9:.3f} G"
    print(f"| {b} | {g(c['ingest'])} | {g(c['build'])} | {g(total)} | {total / first:.3f}x |")
PY
