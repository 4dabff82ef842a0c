-- Helper table: for each distinct (title, artist, length) of the Sparkify
-- plays, what a play of it gets from the catalogue. It matches a song when
-- the normalized title and artist are equal and the durations are at most
-- tl_params.duration_tolerance_s apart; the closest duration wins, then the
-- smallest song id. Unmatched, it gets a track id derived from the
-- normalized names, and the catalogue's artist when the name is known (the
-- smallest artist id of that name), else one derived from the name.
-- Chosen over these few distinct values rather than per play, so that each
-- play joins exactly one row (and the plays keep their order in
-- _sparkify_plays). Kept apart from it so that DataFusion knows how small it
-- is when it picks the side of that join to hash.
WITH lookups AS (
    SELECT DISTINCT title_key, artist_key, length
    FROM stg_sparkify_events
    WHERE page = 'NextSong'
),
-- The closest song of each, if any (NULL ids when none is close enough).
closest AS (
    SELECT
        l.title_key, l.artist_key, l.length,
        first_value(s.song_id ORDER BY abs(s.duration - l.length), s.song_id) AS song_id,
        first_value(s.artist_id ORDER BY abs(s.duration - l.length), s.song_id) AS artist_id
    FROM lookups l
    CROSS JOIN tl_params prm
    LEFT JOIN _sparkify_songs s
        ON s.title_key = l.title_key
        AND s.artist_key = l.artist_key
        AND abs(s.duration - l.length) <= prm.duration_tolerance_s
    GROUP BY l.title_key, l.artist_key, l.length
),
artist_by_key AS (
    SELECT artist_key, min(artist_id) AS artist_id
    FROM _sparkify_songs
    GROUP BY artist_key
)
SELECT
    c.title_key, c.artist_key, c.length,
    c.song_id IS NOT NULL AS matched,
    coalesce(c.song_id, 'TLT' || substr(md5(c.artist_key || chr(31) || c.title_key), 1, 16)) AS track_id,
    coalesce(c.artist_id, a.artist_id, 'TLA' || substr(md5(c.artist_key), 1, 16)) AS artist_id,
    CASE WHEN c.artist_id IS NULL AND a.artist_id IS NULL THEN 'derived' ELSE 'song_data' END AS artist_origin
FROM closest c
LEFT JOIN artist_by_key a ON a.artist_key = c.artist_key
