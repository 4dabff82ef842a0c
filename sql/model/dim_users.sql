-- One row per user: name, gender, level, location and country from their
-- latest event (by time, then session position, never by file order); for a
-- Spotify Web API user, level (product), country and display name come from
-- the latest /v1/me.
WITH events AS (
    SELECT user_id, ts, session_id AS pos1, item_in_session AS pos2, first_name, last_name, gender, level,
           location, CAST(NULL AS VARCHAR) AS country, registration_ms, 'sparkify' AS source
    FROM stg_sparkify_events
    WHERE user_id IS NOT NULL
    UNION ALL
    SELECT account, ts, CAST(0 AS BIGINT), record, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR),
           CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), country, CAST(NULL AS BIGINT),
           'spotify_export'
    FROM stg_spotify_streams
    UNION ALL
    SELECT user_id, played_at, CAST(0 AS BIGINT), record, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR),
           CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR),
           CAST(NULL AS BIGINT), 'spotify_api'
    FROM stg_spotify_api_plays
    WHERE artist_position = 0
),
latest AS (
    SELECT DISTINCT ON (user_id)
        user_id, first_name, last_name, gender, level, location, country, registration_ms, source
    FROM events
    ORDER BY user_id, ts DESC, pos1 DESC, pos2 DESC, source
),
span AS (
    SELECT user_id, min(ts) AS first_seen, max(ts) AS last_seen
    FROM events
    GROUP BY user_id
),
profile AS (
    SELECT DISTINCT ON (user_id) user_id, display_name, country, product
    FROM stg_spotify_api_users
    ORDER BY user_id, seq DESC
)
SELECT
    l.user_id,
    l.first_name,
    l.last_name,
    l.gender,
    coalesce(p.product, l.level)                                        AS level,
    l.location,
    coalesce(p.country, l.country)                                      AS country,
    p.display_name,
    CAST(to_timestamp_micros(l.registration_ms * 1000) AS TIMESTAMP(6)) AS registered_at,
    s.first_seen,
    s.last_seen,
    CASE WHEN p.user_id IS NOT NULL THEN 'spotify_api' ELSE l.source END AS source
FROM latest l
JOIN span s ON s.user_id = l.user_id
LEFT JOIN profile p ON p.user_id = l.user_id
ORDER BY l.user_id
