#!/usr/bin/env bash
# bench/s3.sh [EVENTS] [RUNS]     (defaults 100000 5)
#
# The lake in a bucket (issue 21): `tunelake run --sparkify DATA` on a fresh
# local lake against the same on a fresh prefix of a local S3-compatible
# server (moto's standalone server, from $VENV), each a whole command under
# /usr/bin/time, RUNS alternating pairs. The bucket run starts with an empty
# cache, so it includes the pull, the same work on the cache, and the push of
# every file (a fresh bucket each time). Also timed: `query --name top_tracks` on a second, empty cache
# (a new machine pulling the whole lake first).
# Results: $OUT/s3.jsonl and a table on stdout (medians).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${1:-100000}
RUNS=${2:-5}
[[ $N =~ ^[0-9]+$ && $RUNS =~ ^[0-9]+$ ]] || die "usage: bench/s3.sh [EVENTS] [RUNS]"
DATA=$OUT/data-$N
RES=$OUT/s3.jsonl
BENCH=s3-$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$OUT/logs/$BENCH-$N
mkdir -p "$LOGS"

ensure_tools
gen_data "$N" "$DATA"
EVENTS=$(manifest_get "$DATA" log_events)
if ! "$VENV/bin/python" -c "import moto.server, boto3" 2>/dev/null; then
  log "installing moto[server] into $VENV"
  "$VENV/bin/pip" install -q "moto[server]==5.2.5"
fi

PORT=${S3_PORT:-55490}
"$VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$PORT" >"$LOGS/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$OUT"/s3-lake-* "$OUT"/s3-cache-*' EXIT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1 \
  AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
# A bucket per run: moto lists a bucket by walking all its keys.
bucket() { "$VENV/bin/python" -c "import boto3, sys; boto3.client('s3').create_bucket(Bucket=sys.argv[1])" "$1"; }

one() {  # one K local|s3
  local k=$1 where=$2 lake cache
  if [ "$where" = local ]; then lake=$OUT/s3-lake-$k; rm -rf "$lake"; cache=$OUT/s3-cache-unused
  else lake=s3://bench-$k/music; bucket "bench-$k"; cache=$OUT/s3-cache-$k; rm -rf "$cache"; fi
  sync
  TUNELAKE_CACHE=$cache timed "$LOGS/$where-$k" "$TUNELAKE" --lake "$lake" --progress off run --sparkify "$DATA"
  [ "$T_RC" = 0 ] || { cat "$LOGS/$where-$k.log" >&2; die "run on $where failed"; }
  record "$RES" tunelake "run-$where" "$k" "$EVENTS" bench="$BENCH" seconds="$T_SECS" rss_kb="$T_RSS_KB"
  log "run $k on $where: $T_SECS s, peak RSS $((T_RSS_KB / 1024)) MB"
  if [ "$where" = s3 ]; then
    rm -rf "$cache-2"
    TUNELAKE_CACHE=$cache-2 timed "$LOGS/query-$k" "$TUNELAKE" --lake "$lake" --progress off query --name top_tracks
    [ "$T_RC" = 0 ] || { cat "$LOGS/query-$k.log" >&2; die "query on a new cache failed"; }
    record "$RES" tunelake "query-new-cache" "$k" "$EVENTS" bench="$BENCH" seconds="$T_SECS" rss_kb="$T_RSS_KB"
    log "  query on a new cache: $T_SECS s"
  fi
}

for k in $(seq "$RUNS"); do
  if (( k % 2 )); then one "$k" local; one "$k" s3; else one "$k" s3; one "$k" local; fi
done

python3 - "$RES" "$BENCH" <<'PY'
import json, statistics, sys
res, bench = sys.argv[1:]
rows = [json.loads(l) for l in open(res) if json.loads(l).get("bench") == bench]
med = lambda stage, key: statistics.median(r[key] for r in rows if r["stage"] == stage)
local, s3 = med("run-local", "seconds"), med("run-s3", "seconds")
print(f"| {rows[0]['events']:,} events, median of {sum(r['stage'] == 'run-s3' for r in rows)} | seconds | peak MB |")
print("|---|---|---|")
print(f"| `run` on a local lake | {local:.2f} | {med('run-local', 'rss_kb') // 1024} |")
print(f"| `run` on s3:// (moto on loopback, empty cache) | {s3:.2f} | {med('run-s3', 'rss_kb') // 1024} |")
print(f"| `query --name top_tracks` on s3:// from an empty cache | {med('query-new-cache', 'seconds'):.2f} | {med('query-new-cache', 'rss_kb') // 1024} |")
print(f"\nbucket / local: {s3 / local:.2f}x")
PY
