-- The 20 most played artists.
-- Plays and listeners come from one grouping by (artist, user): cheaper than count(DISTINCT).
SELECT artist, sum(plays) AS plays, count(*) AS listeners
FROM (
    SELECT a.name AS artist, f.user_id, count(*) AS plays
    FROM plays f
    JOIN dim_artists a ON a.artist_id = f.artist_id
    WHERE f.counts_as_play
    GROUP BY a.name, f.user_id
)
GROUP BY artist
ORDER BY plays DESC, artist
LIMIT 20
