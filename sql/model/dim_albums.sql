-- One row per album named in Spotify exports.
SELECT album_id, name, artist_id, source
FROM (
    SELECT album_id, album_name AS name, artist_id, 'spotify_export' AS source,
           row_number() OVER (PARTITION BY album_id ORDER BY raw_sha256, record) AS pick
    FROM _spotify_streams
    WHERE album_id IS NOT NULL
)
WHERE pick = 1
ORDER BY album_id
