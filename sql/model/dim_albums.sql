-- One row per album: from the Web API (Spotify's ids, release date, type once
-- looked up) and from Spotify exports (ids derived from names).
WITH candidates AS (
    SELECT p.album_id, p.album_name AS name, p.artist_id, p.album_release_date AS release_date,
           e.album_type, 'spotify_api' AS source, 1 AS priority, p.raw_sha256, p.record
    FROM _spotify_api_plays p
    LEFT JOIN (
        SELECT DISTINCT ON (id) id, album_type FROM stg_spotify_api_entities WHERE kind = 'album' ORDER BY id, raw_sha256
    ) e ON e.id = p.album_id
    WHERE p.album_id IS NOT NULL AND p.album_name IS NOT NULL AND p.artist_id IS NOT NULL
    UNION ALL
    SELECT album_id, album_name, artist_id, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), 'spotify_export', 2,
           raw_sha256, record
    FROM _spotify_streams
    WHERE album_id IS NOT NULL
)
SELECT album_id, name, artist_id, release_date, album_type, source
FROM (
    SELECT *, lag(album_id) OVER (ORDER BY album_id, priority, raw_sha256, record) AS previous
    FROM candidates
)
WHERE previous IS DISTINCT FROM album_id
ORDER BY album_id
