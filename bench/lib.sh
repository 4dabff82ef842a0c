# bench/lib.sh -- shared by bench/run.sh and bench/incremental.sh (sourced, not run).
#
# Paths are relative to this folder: the repo is its parent, and the reference
# scripts (generator, DuckDB baseline, throwaway PostgreSQL, COPY floor) are
# the project's shared bench folder beside the repo: ../shared/bench.
#
# Environment knobs (defaults):
#   OUT=/tmp/tunelake-bench        data, lakes, logs and results.jsonl
#   SHARED=<repo>/../shared/bench  the reference scripts
#   CARGO_TARGET_DIR=<repo>/target where `cargo build --release --locked` puts tunelake
#   TUNELAKE=$CARGO_TARGET_DIR/release/tunelake   the binary measured (built when absent)
#   VENV=/tmp/tunelake-bench-venv  python venv holding duckdb for the baseline
#   DUCKDB_VERSION=2.0.0           the version shared/bench/RESULTS.md measured

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$REPO/../shared/bench}
OUT=${OUT:-/tmp/tunelake-bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TUNELAKE=${TUNELAKE:-$CARGO_TARGET_DIR/release/tunelake}
VENV=${VENV:-/tmp/tunelake-bench-venv}
DUCKDB_VERSION=${DUCKDB_VERSION:-2.0.0}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PG_PORT=55432   # fixed by shared/bench/pg.sh
PG_STARTED_HERE=0

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
ensure_tools() {
  [ -d "$SHARED" ] || die "reference scripts not found at $SHARED (expected ../shared/bench beside the repo)"
  [ -x /usr/bin/time ] || { log "installing GNU time"; apt-get update -qq && apt-get install -y -qq time >/dev/null; }
  # psql and the server binaries (pg.sh uses $PGBIN; baseline_duckdb.py finds psql on PATH)
  if [ ! -x "$PGBIN/pg_ctl" ] || [ ! -x "$PGBIN/psql" ]; then
    log "installing PostgreSQL 15"
    apt-get update -qq && apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
  fi
  export PATH="$PATH:$PGBIN"
  # baseline_duckdb.py imports duckdb (benchlib.py is stdlib only)
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import duckdb" 2>/dev/null; then
    log "creating $VENV with duckdb==$DUCKDB_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "duckdb==$DUCKDB_VERSION"
  fi
  ensure_binary
}

# the tunelake release binary: built only when absent (it is not rebuilt
# when src/ changes; delete it or point TUNELAKE elsewhere to re-measure)
ensure_binary() {
  if [ ! -x "$TUNELAKE" ]; then
    log "building tunelake (release) into $CARGO_TARGET_DIR"
    (cd "$REPO" && cargo build --release --locked)
  fi
  [ -x "$TUNELAKE" ] || die "no tunelake binary at $TUNELAKE"
}

# ---------------------------------------------------------------- data
# gen_data N DIR [extra gen_sparkify.py flags...]: generate once; a directory
# whose manifest.json records the same arguments is reused as it is.
gen_data() {
  local n=$1 dir=$2; shift 2
  local songs=$(( n / 66 > 71 ? n / 66 : 71 ))   # the generator's default, 15151 for 1M
  local args=("$n" "$dir" --songs "$songs" "$@")
  if [ -f "$dir/manifest.json" ] && python3 - "$dir/manifest.json" "${args[@]}" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
a, want = m["args"], sys.argv[2:]
# compare the arguments we pass (n, songs, and the given --flags) with the manifest's
ok = a["n"] == int(want[0]) and m["log_events"] == int(want[0])
flags = want[2:]
for k, v in zip(flags[::2], flags[1::2]):
    key = k.lstrip("-").replace("-", "_")
    ok = ok and str(a.get(key)) == v
sys.exit(0 if ok else 1)
EOF
  then
    log "data: reusing $dir"
    return
  fi
  log "data: generating $n events into $dir"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  python3 "$SHARED/gen_sparkify.py" "${args[@]}" 2>"$dir.gen.log" >&2 || { cat "$dir.gen.log" >&2; die "gen_sparkify.py failed"; }
}

manifest_get() {  # manifest_get DIR KEY  (KEY may be args.start)
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/manifest.json"))
for k in sys.argv[2].split("."): m=m[k]
print(m)' "$1" "$2"
}

# ---------------------------------------------------------------- PostgreSQL
pg_start() {
  if "$SHARED/pg.sh" status >/dev/null 2>&1; then
    log "postgres: already running on port $PG_PORT (left running at the end)"
  else
    "$SHARED/pg.sh" start >&2
    PG_STARTED_HERE=1
  fi
}
pg_stop_if_started() {
  if [ "$PG_STARTED_HERE" = 1 ]; then log "postgres: stopping (this script started it)"; "$SHARED/pg.sh" stop >&2; fi
}
psql_db() {  # psql_db DB psql-args...
  local db=$1; shift
  "$PGBIN/psql" -h /tmp -p "$PG_PORT" -U postgres -d "$db" -X -q -v ON_ERROR_STOP=1 "$@"
}
fresh_db() {  # drop and create an empty database
  psql_db postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>/dev/null
}
drop_db() { psql_db postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" 2>/dev/null; }
db_url() { echo "postgresql://postgres@127.0.0.1:$PG_PORT/$1"; }
# discard DIR: move a lake out of the way (a rename: no inode is freed) into
# $OUT/trash, which `empty_trash` deletes when the invocation ends. Deleting a
# lake of 1,100 files just before the next run creates its own made that run's
# ingest about 1 s slower at 1M (3.3 s instead of 2.1 s, 1.5 s of system time
# instead of 0.6 s): on this journal-less ext4, `perf` put 18 % of the ingest's
# samples in the inode allocator, which skips inodes freed in the last 60 to
# 300 s (`recently_deleted` under `find_inode_bit`). That is a cost of the
# benchmark's own cleanup, not of either pipeline. For the same reason a
# run's database (about 1,000 files under PostgreSQL's data directory, on the
# same filesystem) is dropped at the end too: `discard_db NAME`.
discard() {
  [ -e "$1" ] || return 0
  mkdir -p "$OUT/trash"
  mv "$1" "$OUT/trash/$(basename "$1").$(date +%s%N)"
}
DISCARDED_DBS=()
discard_db() { DISCARDED_DBS+=("$1"); }
empty_trash() {
  local db
  for db in "${DISCARDED_DBS[@]}"; do drop_db "$db" || true; done
  rm -rf "$OUT/trash"
}

# untimed, between pipelines (as shared/bench/run_all.sh does): clear what the
# previous one left, so that autovacuum and the checkpointer do not run inside
# the next measurement
settle() {
  psql_db sparkify -c "DROP SCHEMA IF EXISTS duck CASCADE" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null 2>&1 || true
  sync
}

# ---------------------------------------------------------------- timing
# timed FILE cmd... : run cmd under GNU time, stdout+stderr to FILE.log; sets
# T_SECS (wall), T_RSS_KB (peak RSS of the process and its waited children),
# T_USER and T_SYS (CPU seconds in user space and in the kernel: the system
# time is what moves most between identical runs here) and T_RC (exit code;
# never aborts the script).
timed() {
  local f=$1; shift
  T_RC=0
  /usr/bin/time -f "%e %M %U %S" -o "$f.time" "$@" >"$f.log" 2>&1 || T_RC=$?
  read -r T_SECS T_RSS_KB T_USER T_SYS < <(tail -1 "$f.time")
  # GNU time prefixes "Command exited with non-zero status N" on failure
  [[ $T_SECS =~ ^[0-9.]+$ ]] || { T_SECS=null; T_RSS_KB=null; T_USER=null; T_SYS=null; }
}

# record RESULTS system stage run events key=value... : one JSON line
record() {
  local res=$1 system=$2 stage=$3 run=$4 events=$5; shift 5
  python3 - "$res" "$system" "$stage" "$run" "$events" "$@" <<'EOF'
import json, os, sys, time
res, system, stage, run, events, *kv = sys.argv[1:]
def val(v):
    try:
        return json.loads(v)
    except ValueError:
        return v
r = {"system": system, "stage": stage, "run": val(run), "events": val(events)}
for item in kv:
    k, _, v = item.partition("=")
    r[k] = val(v)
r["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
r["loadavg"] = os.getloadavg()[0]
with open(res, "a") as f:
    f.write(json.dumps(r) + "\n")
EOF
}

env_info() {
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "free -g: $(free -g | sed -n 2p | tr -s ' ')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tunelake: $TUNELAKE (built $(date -u -r "$TUNELAKE" +%FT%TZ))"
  echo "repo HEAD: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
       "($(git -C "$REPO" status --porcelain -- src sql Cargo.toml Cargo.lock 2>/dev/null | wc -l) uncommitted changes under src/ sql/ Cargo.*)"
  # the binary is not rebuilt when it exists: say which source commits are newer than it
  echo "commits to src/ sql/ Cargo.* after the binary was built:" \
       "$(git -C "$REPO" log --since="$(date -u -r "$TUNELAKE" +%FT%TZ)" --format=%h -- src sql Cargo.toml Cargo.lock 2>/dev/null | tr '\n' ' ')"
  echo "duckdb: $("$VENV/bin/python" -c 'import duckdb; print(duckdb.__version__)')"
  echo "postgres: $("$PGBIN/postgres" --version)"
  echo "python: $(python3 --version 2>&1)"
  echo "top CPU users:"; ps -eo pid,pcpu,etime,comm --sort=-pcpu | sed -n 2,6p
}
