-- One row per artist id from every source; the catalogue's row wins, then
-- the Web API's (with genres once the artist has been looked up), then the
-- first play that names it (by time), so that later plays never change it.
WITH candidates AS (
    SELECT artist_id, artist_name AS name, artist_location AS location,
           artist_latitude AS latitude, artist_longitude AS longitude, CAST(NULL AS VARCHAR) AS genres,
           'song_data' AS origin, 'sparkify' AS source, 1 AS priority, CAST(NULL AS TIMESTAMP(6)) AS first_ts,
           song_id AS pos1, CAST(0 AS BIGINT) AS pos2
    FROM _sparkify_songs
    UNION ALL
    SELECT artist_id, artist, CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS VARCHAR),
           'derived', 'sparkify', 3, ts, raw_sha256, line
    FROM _sparkify_unmatched_all
    WHERE artist_origin = 'derived'
    UNION ALL
    SELECT artist_id, artist_name, CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS VARCHAR),
           'derived', 'spotify_export', 3, ts, raw_sha256, record
    FROM _spotify_streams
    WHERE content_type = 'track' AND artist_name IS NOT NULL
    UNION ALL
    SELECT a.artist_id, a.artist_name, CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), e.genres,
           'spotify', 'spotify_api', 2, a.played_at, a.raw_sha256, a.record
    FROM stg_spotify_api_plays a
    LEFT JOIN (
        SELECT DISTINCT ON (id) id, genres FROM stg_spotify_api_entities WHERE kind = 'artist' ORDER BY id, raw_sha256
    ) e ON e.id = a.artist_id
    WHERE a.artist_id IS NOT NULL
)
SELECT artist_id, name, location, latitude, longitude, genres, origin, source
FROM (
    SELECT *, lag(artist_id) OVER (ORDER BY artist_id, priority, first_ts, pos1, pos2) AS previous
    FROM candidates
)
WHERE previous IS DISTINCT FROM artist_id
ORDER BY artist_id
