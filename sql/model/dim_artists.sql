-- One row per artist id from every source; the catalogue's row wins.
WITH candidates AS (
    SELECT artist_id, artist_name AS name, artist_location AS location,
           artist_latitude AS latitude, artist_longitude AS longitude,
           'song_data' AS origin, 'sparkify' AS source, 1 AS priority, song_id AS pos1, CAST(0 AS BIGINT) AS pos2
    FROM _sparkify_songs
    UNION ALL
    SELECT artist_id, artist, CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
           'derived', 'sparkify', 2, raw_sha256, line
    FROM _sparkify_plays
    WHERE artist_origin = 'derived'
    UNION ALL
    SELECT artist_id, artist_name, CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
           'derived', 'spotify_export', 2, raw_sha256, record
    FROM _spotify_streams
    WHERE content_type = 'track' AND artist_name IS NOT NULL
)
SELECT artist_id, name, location, latitude, longitude, origin, source
FROM (
    SELECT *, row_number() OVER (PARTITION BY artist_id ORDER BY priority, pos1, pos2) AS pick
    FROM candidates
)
WHERE pick = 1
ORDER BY artist_id
