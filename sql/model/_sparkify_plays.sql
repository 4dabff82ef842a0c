-- Helper table: Sparkify plays (NextSong events, one per event id: the
-- natural key and the time) with the song they match. A play matches a song
-- when the normalized title and artist are equal and the durations differ by
-- at most tl_params.duration_tolerance_s;
-- the closest duration wins. Unmatched plays get ids derived from the
-- normalized names; their artist is the catalogue's when the name is known.
--
-- Shaped to stream: the events probe small hash tables (songs, artists), and
-- the one global step (picking one copy of an event seen in two raw files,
-- and its best match) is a sort, which spills to disk, and a lag() over it:
-- the first row of each event id is the one whose predecessor has another.
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
        s.song_id IS NOT NULL AS matched,
        coalesce(s.song_id, 'TLT' || substr(md5(e.artist_key || chr(31) || e.title_key), 1, 16)) AS track_id,
        coalesce(s.artist_id, a.artist_id, 'TLA' || substr(md5(e.artist_key), 1, 16)) AS artist_id,
        CASE WHEN s.artist_id IS NULL AND a.artist_id IS NULL THEN 'derived' ELSE 'song_data' END AS artist_origin,
        -- Copies of an event share its id and time; time first, because staging
        -- is nearly in time order and that sort is twice as fast.
        lag(e.event_id) OVER (
            ORDER BY e.ts, e.event_id, e.raw_sha256, e.line, abs(s.duration - e.length), s.song_id
        ) AS previous
    FROM stg_sparkify_events e
    CROSS JOIN tl_params prm
    LEFT JOIN _sparkify_songs s
        ON s.title_key = e.title_key
        AND s.artist_key = e.artist_key
        AND abs(s.duration - e.length) <= prm.duration_tolerance_s
    -- Both lookups probe before the sort, so that the small tables are the hash tables.
    LEFT JOIN artist_by_key a ON a.artist_key = e.artist_key
    WHERE e.page = 'NextSong'
)
SELECT * EXCLUDE (previous)
FROM candidates
WHERE previous IS DISTINCT FROM event_id
ORDER BY ts, event_id
