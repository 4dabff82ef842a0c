-- Every artist of every track: the primary artist of dim_tracks at position
-- 0, and the Web API's further credits after it.
WITH credits AS (
    SELECT track_id, CAST(0 AS BIGINT) AS position, artist_id, source, 1 AS priority, '' AS pos1, CAST(0 AS BIGINT) AS pos2
    FROM dim_tracks
    UNION ALL
    SELECT track_id, artist_position, artist_id, 'spotify_api', 2, raw_sha256, record
    FROM stg_spotify_api_plays
    WHERE artist_position > 0 AND artist_id IS NOT NULL
)
SELECT track_id, position, artist_id, source
FROM (
    SELECT *,
        lag(track_id) OVER (ORDER BY track_id, position, priority, pos1, pos2) AS previous,
        lag(position) OVER (ORDER BY track_id, position, priority, pos1, pos2) AS previous_position
    FROM credits
)
WHERE (previous IS DISTINCT FROM track_id) OR (previous_position IS DISTINCT FROM position)
ORDER BY track_id, position
