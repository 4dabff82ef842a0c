-- The 20 most played artists.
-- Plays are counted per artist id first; listeners only for the 20 artists
-- that make the list, not for every (artist, listener) pair.
WITH top AS (
    SELECT a.name AS artist, sum(p.plays) AS plays
    FROM (
        SELECT artist_id, count(*) AS plays
        FROM plays
        WHERE counts_as_play
        GROUP BY artist_id
    ) p
    JOIN dim_artists a ON a.artist_id = p.artist_id
    GROUP BY a.name
    ORDER BY plays DESC, artist
    LIMIT 20
),
listeners AS (
    SELECT a.name AS artist, count(DISTINCT f.user_id) AS listeners
    FROM plays f
    JOIN dim_artists a ON a.artist_id = f.artist_id
    WHERE f.counts_as_play AND a.name IN (SELECT artist FROM top)
    GROUP BY a.name
)
SELECT t.artist, t.plays, l.listeners
FROM top t
JOIN listeners l ON l.artist = t.artist
ORDER BY t.plays DESC, t.artist
LIMIT 20
