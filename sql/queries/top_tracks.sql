-- The 20 most played tracks (plays of 30 s or more).
SELECT t.title, a.name AS artist, count(*) AS plays
FROM fact_plays f
JOIN dim_tracks t ON t.track_id = f.track_id
LEFT JOIN dim_artists a ON a.artist_id = t.artist_id
WHERE f.counts_as_play
GROUP BY t.title, a.name
ORDER BY plays DESC, t.title, artist
LIMIT 20
