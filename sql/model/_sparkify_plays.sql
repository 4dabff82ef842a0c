-- Helper view: Sparkify plays (NextSong events, one per natural key) with the
-- song they match. A play matches a song when the normalized title and artist
-- are equal and the durations differ by at most tl_params.duration_tolerance_s;
-- the closest duration wins. Unmatched plays get ids derived from the
-- normalized names; their artist is the catalogue's when the name is known.
WITH plays AS (
    SELECT DISTINCT ON (event_id) *
    FROM stg_sparkify_events
    WHERE page = 'NextSong'
    ORDER BY event_id, raw_sha256, line
),
candidates AS (
    SELECT p.event_id, s.song_id, s.artist_id, abs(s.duration - p.length) AS diff
    FROM plays p
    JOIN _sparkify_songs s ON s.title_key = p.title_key AND s.artist_key = p.artist_key
    CROSS JOIN tl_params prm
    WHERE abs(s.duration - p.length) <= prm.duration_tolerance_s
),
best AS (
    SELECT DISTINCT ON (event_id) event_id, song_id, artist_id
    FROM candidates
    ORDER BY event_id, diff, song_id
),
artist_by_key AS (
    SELECT artist_key, min(artist_id) AS artist_id
    FROM _sparkify_songs
    GROUP BY artist_key
)
SELECT
    p.*,
    b.song_id IS NOT NULL AS matched,
    coalesce(b.song_id, 'TLT' || substr(md5(p.artist_key || chr(31) || p.title_key), 1, 16)) AS track_id,
    coalesce(b.artist_id, a.artist_id, 'TLA' || substr(md5(p.artist_key), 1, 16)) AS artist_id,
    CASE WHEN b.artist_id IS NULL AND a.artist_id IS NULL THEN 'derived' ELSE 'song_data' END AS artist_origin
FROM plays p
LEFT JOIN best b ON b.event_id = p.event_id
LEFT JOIN artist_by_key a ON a.artist_key = p.artist_key
