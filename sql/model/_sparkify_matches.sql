-- Helper table: the song each distinct (title, artist, length) of the
-- Sparkify plays matches: equal normalized title and artist, durations at
-- most tl_params.duration_tolerance_s apart; the closest duration wins, then
-- the smallest song id. Chosen over these few distinct values rather than
-- per play, so that each play joins at most one row (and the plays keep
-- their order in _sparkify_plays). Kept apart from it so that DataFusion
-- knows how small it is when it picks the side of that join to hash.
WITH lookups AS (
    SELECT DISTINCT title_key, artist_key, length
    FROM stg_sparkify_events
    WHERE page = 'NextSong'
)
SELECT
    l.title_key, l.artist_key, l.length,
    first_value(s.song_id ORDER BY abs(s.duration - l.length), s.song_id) AS song_id,
    first_value(s.artist_id ORDER BY abs(s.duration - l.length), s.song_id) AS artist_id
FROM lookups l
CROSS JOIN tl_params prm
JOIN _sparkify_songs s
    ON s.title_key = l.title_key
    AND s.artist_key = l.artist_key
    AND abs(s.duration - l.length) <= prm.duration_tolerance_s
GROUP BY l.title_key, l.artist_key, l.length
