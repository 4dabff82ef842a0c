-- One row per play, ordered by time (the writer partitions by month).
SELECT
    event_id                                   AS play_id,
    ts                                         AS played_at,
    user_id,
    track_id,
    artist_id,
    CAST(NULL AS VARCHAR)                      AS album_id,
    session_id,
    item_in_session,
    CAST(round(length * 1000) AS BIGINT)       AS ms_played,
    CAST(NULL AS BOOLEAN)                      AS skipped,
    CAST(NULL AS BOOLEAN)                      AS shuffle,
    CAST(NULL AS VARCHAR)                      AS reason_start,
    CAST(NULL AS VARCHAR)                      AS reason_end,
    CAST(NULL AS VARCHAR)                      AS platform,
    CAST(NULL AS VARCHAR)                      AS country,
    location,
    user_agent,
    level,
    CAST(NULL AS VARCHAR)                      AS context_uri,
    'track'                                    AS content_type,
    'sparkify'                                 AS source
FROM _sparkify_plays
ORDER BY played_at, play_id
