-- The 20 most played albums (plays of 30 s or more).
-- Plays are counted per album first, so the dimensions join one row per album.
WITH per_album AS (
    SELECT album_id, count(*) AS plays, count(DISTINCT track_id) AS tracks
    FROM plays
    WHERE counts_as_play AND album_id IS NOT NULL
    GROUP BY album_id
)
SELECT al.name AS album, a.name AS artist, p.plays, p.tracks
FROM per_album p
JOIN dim_albums al ON al.album_id = p.album_id
LEFT JOIN dim_artists a ON a.artist_id = al.artist_id
ORDER BY p.plays DESC, album, artist
LIMIT 20
