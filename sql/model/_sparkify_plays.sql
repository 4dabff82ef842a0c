-- Helper table: Sparkify plays (NextSong events, one per event id: the
-- natural key and the time) with the song they match. A play matches a song
-- when the normalized title and artist are equal and the durations differ by
-- at most tl_params.duration_tolerance_s;
-- the closest duration wins, then the smallest song id. Unmatched plays get
-- ids derived from the normalized names; their artist is the catalogue's
-- when the name is known.
--
-- Shaped to stream: staging keeps each day's events in time order
-- (ts, event_id, raw_sha256, line), so when the days do not overlap the plays
-- are never sorted. Every join keeps that order: each event probes small hash
-- tables and meets at most one row of each (_sparkify_matches has one song
-- per title, artist and length). The one global step, picking one
-- copy of an event seen in two raw files, is a lag() over that order: the
-- first row of each event id is the one whose predecessor has another. When
-- staging is not in order (days ingested from overlapping files, or staged
-- before it was sorted), DataFusion sorts it first, which spills to disk.
-- (row_number() over a partition per event is many times slower in
-- DataFusion 55; so is DISTINCT ON.)
WITH artist_by_key AS (
    SELECT artist_key, min(artist_id) AS artist_id
    FROM _sparkify_songs
    GROUP BY artist_key
),
candidates AS (
    SELECT
        e.event_id, e.ts, e.user_id, e.session_id, e.item_in_session, e.length,
        e.location, e.user_agent, e.level, e.artist, e.song, e.raw_sha256, e.line,
        b.song_id IS NOT NULL AS matched,
        coalesce(b.song_id, 'TLT' || substr(md5(e.artist_key || chr(31) || e.title_key), 1, 16)) AS track_id,
        coalesce(b.artist_id, a.artist_id, 'TLA' || substr(md5(e.artist_key), 1, 16)) AS artist_id,
        CASE WHEN b.artist_id IS NULL AND a.artist_id IS NULL THEN 'derived' ELSE 'song_data' END AS artist_origin,
        -- Copies of an event share its id and time.
        lag(e.event_id) OVER (ORDER BY e.ts, e.event_id, e.raw_sha256, e.line) AS previous
    FROM stg_sparkify_events e
    LEFT JOIN _sparkify_matches b
        ON b.title_key = e.title_key
        AND b.artist_key = e.artist_key
        AND b.length = e.length
    LEFT JOIN artist_by_key a ON a.artist_key = e.artist_key
    WHERE e.page = 'NextSong'
)
SELECT * EXCLUDE (previous)
FROM candidates
WHERE previous IS DISTINCT FROM event_id
ORDER BY ts, event_id
