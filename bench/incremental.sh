#!/usr/bin/env bash
# bench/incremental.sh [N...]   (also: bench/run.sh incremental [N...])
#
# The daily case: a lake and a database already hold N events; one more day
# of ~1,000 new events arrives. For each N (default: 100000 5000000) and each
# variant (INC_VARIANTS, default "logs-only with-songs"):
#   1. base: fresh lake + fresh empty database, tunelake ingest, build, sync of
#      $OUT/data-N (the same generated set as run.sh; timed, reported as base *)
#   2. INC_REPS times (default 5), each time a NEW day: gen_sparkify.py
#      1000 events --days 1 starting the day after the previous set ends,
#      --seed 7, 8, 9, ... (other ids), --users = the main set's U (returning
#      users), --songs 71; then timed: ingest, build, sync. The reps
#      accumulate (rep 2 runs on N + 1 day).
#        logs-only:  only the new day's log_data is ingested (the catalogue
#                    is unchanged; the day's songs are unknown to it)
#        with-songs: log_data and the set's 71 song files (new catalogue
#                    songs; their random artist names can equal names that
#                    older plays carry, which changes those older plays)
#        mid-month:  a logs-only day inside the set's last month instead of
#                    after it (the daily case of `run --every`: that month
#                    already holds about N/12 events and is recomputed)
#   3. once: build and sync again with nothing new (the no-op cost).
# Checks (untimed): fact_plays grows by the new NextSong plays: new distinct
# event ids (userId, sessionId, itemInSession, ts), report.py newkeys.
# Rows go to $OUT/incremental.jsonl; the table is printed and saved as
# $OUT/incremental.md. Knobs: see lib.sh; INC_REPS=5, INC_EVENTS=1000, KEEP=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(100000 5000000)
REPS=${INC_REPS:-5}
NEW=${INC_EVENTS:-1000}
read -r -a VARIANTS <<<"${INC_VARIANTS:-logs-only with-songs}"
RES=$OUT/incremental.jsonl
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
BENCH="inc-$STAMP"
LOGS=$OUT/logs/$BENCH
mkdir -p "$OUT" "$LOGS"

ensure_tools
pg_start
trap 'empty_trash; pg_stop_if_started' EXIT
env_info | tee "$LOGS/env.txt" >&2

# tl FILE STAGE N REP NEW_EVENTS cmd-args... : one timed tunelake command, one row
tl() {
  local f=$1 stage=$2 n=$3 rep=$4 new=$5; shift 5
  log "N=$n $VARIANT rep $rep: tunelake $*"
  timed "$f" "$TUNELAKE" --lake "$LAKE" --progress off "$@"
  record "$RES" tunelake "$stage" "$rep" "$n" bench="$BENCH" n="$n" variant="$VARIANT" new_events="$new" \
    seconds="$T_SECS" rss_kb="$T_RSS_KB" rc="$T_RC" log="$f.log"
  sed 's/^/    /' "$f.log" >&2
  if [ "$T_RC" != 0 ]; then log "FAILED (exit $T_RC)"; return 1; fi
  LAST_SECS=$T_SECS
}
plays() { psql_db "$DB" -At -c "SELECT count(*) FROM fact_plays"; }

# one_case N VARIANT: base load of data-N, then REPS new days, then a no-op
one_case() {
  local n=$1 data=$OUT/data-$1
  VARIANT=$2
  LAKE=$OUT/lake-inc-$n
  DB=tl_inc_${n}_${VARIANT//-/_}
  local url dir
  url=$(db_url "$DB")
  dir=$LOGS/n$n-$VARIANT; mkdir -p "$dir"
  discard "$LAKE"; fresh_db "$DB"; settle

  # 1. base state
  tl "$dir/base-ingest" "base ingest" "$n" 0 "$n" ingest sparkify "$data" || return 0
  tl "$dir/base-build" "base build" "$n" 0 "$n" build || return 0
  tl "$dir/base-sync" "base sync" "$n" 0 "$n" sync --database-url "$url" || return 0
  local prior=("$data")

  # 2. one more day, REPS times
  local start days users rep ok=1
  start=$(manifest_get "$data" args.start)
  days=$(manifest_get "$data" args.days)
  users=$(manifest_get "$data" args.users)
  for rep in $(seq 1 "$REPS"); do
    local day extra src new_ns before after sent expect note s_ing s_build s_sync
    local offset=$((days + rep - 1))
    [ "$VARIANT" = mid-month ] && offset=$((days - 17 + rep))   # the 16th of the last month on
    day=$(date -u -d "$start + $offset days" +%F)
    extra=$OUT/extra-$n-$day
    gen_data "$NEW" "$extra" --start "$day" --days 1 --seed $((6 + rep)) --users "$users"
    new_ns=$(manifest_get "$extra" log_events)
    src=$extra
    if [ "$VARIANT" != with-songs ]; then
      src=$extra.logs-only   # the day's log_data without its song_data
      rm -rf "$src"; mkdir -p "$src"; cp -r "$extra/log_data" "$src/"
    fi
    before=$(plays)
    settle
    tl "$dir/r$rep-ingest" ingest "$n" "$rep" "$new_ns" ingest sparkify "$src" || { ok=0; break; }
    s_ing=$LAST_SECS
    tl "$dir/r$rep-build" build "$n" "$rep" "$new_ns" build || { ok=0; break; }
    s_build=$LAST_SECS
    tl "$dir/r$rep-sync" sync "$n" "$rep" "$new_ns" sync --database-url "$url" || { ok=0; break; }
    s_sync=$LAST_SECS
    record "$RES" tunelake "build+sync" "$rep" "$n" bench="$BENCH" n="$n" variant="$VARIANT" \
      new_events="$new_ns" seconds="$(python3 -c "print(round($s_build + $s_sync, 2))")"
    record "$RES" tunelake "ingest+build+sync" "$rep" "$n" bench="$BENCH" n="$n" variant="$VARIANT" \
      new_events="$new_ns" seconds="$(python3 -c "print(round($s_ing + $s_build + $s_sync, 2))")"
    # untimed check of what reached PostgreSQL
    after=$(plays)
    sent=$(grep -o '[0-9]* parts sent ([0-9]* rows), [0-9]* unchanged' "$dir/r$rep-sync.log" || echo '?')
    expect=$(python3 "$HERE/report.py" newkeys "$extra" "${prior[@]}")
    note="sync: $sent; fact_plays $before -> $after (+$((after - before))); new NextSong plays with a new event id: $expect of $(manifest_get "$extra" nextsong_events) NextSong events in the new day ($day)"
    log "check: $note"
    record "$RES" tunelake check "$rep" "$n" bench="$BENCH" n="$n" variant="$VARIANT" note="\"$note\""
    prior+=("$extra")
  done

  # 3. nothing new: build and sync again
  if [ $ok = 1 ]; then
    settle
    tl "$dir/noop-build" "no-op build" "$n" 1 0 build || true
    tl "$dir/noop-sync" "no-op sync" "$n" 1 0 sync --database-url "$url" || true
  fi
  if [ "${KEEP:-0}" != 1 ]; then discard "$LAKE"; discard_db "$DB"; fi
}

for n in "${NS[@]}"; do
  gen_data "$n" "$OUT/data-$n"
  for v in "${VARIANTS[@]}"; do
    [[ $v == logs-only || $v == with-songs || $v == mid-month ]] ||
      die "unknown variant $v (logs-only, with-songs, mid-month)"
    one_case "$n" "$v"
  done
done

python3 "$HERE/report.py" "$RES" --incremental --bench "$BENCH" | tee "$OUT/incremental.md"
log "results: $RES (bench=$BENCH), logs: $LOGS"
