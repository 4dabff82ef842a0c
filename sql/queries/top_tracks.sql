-- The 20 most played tracks.
SELECT t.title, a.name AS artist, count(*) AS plays
FROM fact_plays f
JOIN dim_tracks t ON t.track_id = f.track_id
LEFT JOIN dim_artists a ON a.artist_id = t.artist_id
GROUP BY t.title, a.name
ORDER BY plays DESC, t.title, artist
LIMIT 20
