#!/usr/bin/env bash
# bench/one-file.sh [EVENTS] [REPS]     (defaults 1000000, 2)
#
# The generated day files of EVENTS events joined into one NDJSON file (a
# user with all their logs in one file), against the day files as they are:
# seconds and peak memory of `ingest sparkify` and of the `build --force`
# after it, for each layout, REPS times in alternation. A log file of 64 MiB
# or more is read in pieces (src/source/chunks.rs), so the one-file ingest
# should stay near the day files' memory, and its build should be the day
# files' build (one staging file per date either way).
#
# Output: a table on stdout; each command's stderr under $OUT/logs/one-<id>/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${1:-1000000}
REPS=${2:-2}
[[ $N =~ ^[0-9]+$ && $REPS =~ ^[0-9]+$ ]] || die "usage: bench/one-file.sh [EVENTS] [REPS]"
[ -x /usr/bin/time ] || { log "installing GNU time"; apt-get update -qq && apt-get install -y -qq time >/dev/null; }
ensure_binary
DATA=$OUT/data-$N
gen_data "$N" "$DATA"
ONE=$OUT/one-file-$N
if [ ! -s "$ONE/log_data/all.json" ]; then
  log "joining the day files of $DATA into $ONE/log_data/all.json"
  mkdir -p "$ONE/log_data"
  ln -sfn "$DATA/song_data" "$ONE/song_data"
  # awk 1: a day file without a final line break must not run into the next.
  find "$DATA/log_data" -name '*.json' | sort | xargs awk 1 > "$ONE/log_data/all.json.tmp"
  mv "$ONE/log_data/all.json.tmp" "$ONE/log_data/all.json"
fi
ID=one-$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$OUT/logs/$ID
mkdir -p "$LOGS"
TSV=$LOGS/times.tsv

for rep in $(seq 1 "$REPS"); do
  for layout in one-file day-files; do
    [ $layout = one-file ] && input=$ONE || input=$DATA
    lake=$LOGS/lake-$layout-$rep
    for stage in ingest build; do
      cmd=("$TUNELAKE" --lake "$lake" --progress off)
      [ $stage = ingest ] && cmd+=(ingest sparkify "$input") || cmd+=(build --force)
      log "rep $rep, $layout: $stage"
      /usr/bin/time -f "%e %M" -o "$LOGS/time" "${cmd[@]}" >"$LOGS/$layout-$rep-$stage.log" 2>&1 ||
        { tail -20 "$LOGS/$layout-$rep-$stage.log" >&2; die "$stage of $layout failed"; }
      read -r secs kb < "$LOGS/time"
      printf '%s\t%s\t%s\t%s\n' "$layout" "$stage" "$secs" "$kb" >> "$TSV"
    done
    # Kept until the end: deleting a lake just before the next ingest slows
    # it (ext4's recently deleted inodes; see README.md, "What one run does").
  done
done
rm -rf "$LOGS"/lake-*

python3 - "$TSV" "$N" "$ID" "$REPS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print(f"one NDJSON file against the day files, {int(sys.argv[2]):,} events, {sys.argv[4]} reps, {sys.argv[3]}\n")
print("| layout | stage | median s | range s | median peak MB | range MB |")
print("|---|---|---:|---:|---:|---:|")
for layout in ("one-file", "day-files"):
    for stage in ("ingest", "build"):
        s = [float(r[2]) for r in rows if r[:2] == [layout, stage]]
        m = [int(r[3]) / 1024 for r in rows if r[:2] == [layout, stage]]
        print(f"| {layout} | {stage} | {statistics.median(s):.2f} | {min(s):.2f}–{max(s):.2f} "
              f"| {statistics.median(m):.0f} | {min(m):.0f}–{max(m):.0f} |")
PY
