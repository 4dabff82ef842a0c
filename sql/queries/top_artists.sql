-- The 20 most played artists.
SELECT a.name AS artist, count(*) AS plays, count(DISTINCT f.user_id) AS listeners
FROM fact_plays f
JOIN dim_artists a ON a.artist_id = f.artist_id
WHERE f.counts_as_play
GROUP BY a.name
ORDER BY plays DESC, artist
LIMIT 20
