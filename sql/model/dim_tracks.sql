-- One row per track id from every source. An id two sources share (a track
-- derived from the same names, a Spotify id in the API and an export) is one
-- row: the catalogue's first, then the Web API's, then an export's, then
-- the first seen.
WITH candidates AS (
    SELECT song_id AS track_id, title, artist_id, CAST(NULL AS VARCHAR) AS album_id,
           duration AS duration_s, year, 'song_data' AS origin, 'sparkify' AS source,
           1 AS priority, song_id AS pos1, CAST(0 AS BIGINT) AS pos2
    FROM _sparkify_songs
    UNION ALL
    SELECT track_id, song, artist_id, CAST(NULL AS VARCHAR), length, CAST(NULL AS BIGINT),
           'derived', 'sparkify', 4, raw_sha256, line
    FROM _sparkify_unmatched_all
    UNION ALL
    SELECT track_id, track_name, artist_id, album_id, CAST(NULL AS DOUBLE), CAST(NULL AS BIGINT),
           track_origin, 'spotify_export', CASE WHEN track_origin = 'spotify' THEN 3 ELSE 4 END, raw_sha256, record
    FROM _spotify_streams
    WHERE content_type = 'track' AND track_name IS NOT NULL AND artist_id IS NOT NULL
    UNION ALL
    SELECT track_id, track_name, artist_id, album_id, duration_ms / 1000.0,
           CAST(nullif(substr(album_release_date, 1, 4), '') AS BIGINT), 'spotify', 'spotify_api', 2, raw_sha256, record
    FROM _spotify_api_plays
    WHERE artist_id IS NOT NULL
)
SELECT track_id, title, artist_id, album_id, duration_s, year, origin, source
FROM (
    SELECT *, lag(track_id) OVER (ORDER BY track_id, priority, pos1, pos2) AS previous
    FROM candidates
)
WHERE previous IS DISTINCT FROM track_id
ORDER BY track_id
