-- The 20 most played tracks (plays of 30 s or more).
-- Plays are counted per track first, so the dimensions join one row per
-- track instead of one per play (bench/README, design measurements).
WITH per_track AS (
    SELECT track_id, count(*) AS plays
    FROM plays
    WHERE counts_as_play
    GROUP BY track_id
)
SELECT t.title, a.name AS artist, sum(p.plays) AS plays
FROM per_track p
JOIN dim_tracks t ON t.track_id = p.track_id
LEFT JOIN dim_artists a ON a.artist_id = t.artist_id
GROUP BY t.title, a.name
ORDER BY plays DESC, t.title, artist
LIMIT 20
