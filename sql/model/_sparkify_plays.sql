-- Helper table: Sparkify plays (NextSong events, one per event id: the
-- natural key and the time) with the track and artist _sparkify_matches
-- gives their title, artist and length: the catalogue song they match, or
-- ids derived from the normalized names.
--
-- Shaped to stream: staging keeps each day's events in time order
-- (ts, event_id, raw_sha256, line), so when the days do not overlap the plays
-- are never sorted. The join keeps that order: each event probes a small
-- hash table and meets one row of it (_sparkify_matches has one row per
-- title, artist and length). The matches are the side hashed because they
-- come first in the join, whatever their size (the helper runs with
-- `SliceHelper::joins_as_written`: on large slices DataFusion's estimates
-- had it hash the events instead, then sort them, slower and in more
-- memory: bench/README). The one global step, picking one
-- copy of an event seen in two raw files, is a lag() over that order: the
-- first row of each event id is the one whose predecessor has another. When
-- staging is not in order (days ingested from overlapping files, or staged
-- before it was sorted), DataFusion sorts it first, which spills to disk.
-- (row_number() over a partition per event is many times slower in
-- DataFusion 55; so is DISTINCT ON.)
WITH candidates AS (
    SELECT
        e.event_id, e.ts, e.user_id, e.session_id, e.item_in_session, e.length,
        e.location, e.user_agent, e.level, e.artist, e.song, e.raw_sha256, e.line,
        b.matched, b.track_id, b.artist_id, b.artist_origin,
        -- Copies of an event share its id and time.
        lag(e.event_id) OVER (ORDER BY e.ts, e.event_id, e.raw_sha256, e.line) AS previous
    FROM _sparkify_matches b
    RIGHT JOIN stg_sparkify_events e
        ON (b.title_key IS NOT DISTINCT FROM e.title_key)
        AND (b.artist_key IS NOT DISTINCT FROM e.artist_key)
        AND (b.length IS NOT DISTINCT FROM e.length)
    WHERE e.page = 'NextSong'
)
SELECT * EXCLUDE (previous)
FROM candidates
WHERE previous IS DISTINCT FROM event_id
ORDER BY ts, event_id
