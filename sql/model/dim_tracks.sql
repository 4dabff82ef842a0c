-- Catalogue songs, plus the tracks seen only in plays (ids derived from names).
WITH derived AS (
    SELECT
        track_id,
        first_value(song ORDER BY raw_sha256, line)      AS title,
        first_value(artist_id ORDER BY raw_sha256, line) AS artist_id,
        min(length)                                      AS duration_s
    FROM _sparkify_plays
    WHERE NOT matched
    GROUP BY track_id
)
SELECT song_id AS track_id, title, artist_id, CAST(NULL AS VARCHAR) AS album_id,
       duration AS duration_s, year, 'song_data' AS origin, 'sparkify' AS source
FROM _sparkify_songs
UNION ALL
SELECT track_id, title, artist_id, CAST(NULL AS VARCHAR), duration_s, CAST(NULL AS BIGINT),
       'derived', 'sparkify'
FROM derived
ORDER BY track_id
