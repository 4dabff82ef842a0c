-- Catalogue artists, plus the artists seen only in plays.
WITH catalogue AS (
    SELECT DISTINCT ON (artist_id)
        artist_id, artist_name, artist_location, artist_latitude, artist_longitude
    FROM _sparkify_songs
    ORDER BY artist_id, song_id
),
derived AS (
    SELECT artist_id, first_value(artist ORDER BY raw_sha256, line) AS name
    FROM _sparkify_plays
    WHERE artist_origin = 'derived'
    GROUP BY artist_id
)
SELECT artist_id, artist_name AS name, artist_location AS location,
       artist_latitude AS latitude, artist_longitude AS longitude,
       'song_data' AS origin, 'sparkify' AS source
FROM catalogue
UNION ALL
SELECT artist_id, name, CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
       'derived', 'sparkify'
FROM derived
ORDER BY artist_id
