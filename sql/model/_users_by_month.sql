-- Monthly summary: each user's latest event of the month (by time, then
-- session position, never by file order) and the month's first and last
-- event, from every source. dim_users reduces these over all months.
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
by_month AS (
    SELECT CAST(date_trunc('month', ts) AS TIMESTAMP(6)) AS month, * FROM events
),
latest AS (
    SELECT * EXCLUDE (previous, previous_month)
    FROM (
        SELECT
            month, user_id, first_name, last_name, gender, level, location, country, registration_ms, source,
            ts, pos1, pos2,
            lag(user_id) OVER (ORDER BY month, user_id, ts DESC, pos1 DESC, pos2 DESC, source) AS previous,
            lag(month) OVER (ORDER BY month, user_id, ts DESC, pos1 DESC, pos2 DESC, source) AS previous_month
        FROM by_month
    )
    WHERE (previous IS DISTINCT FROM user_id) OR (previous_month IS DISTINCT FROM month)
),
span AS (
    SELECT month, user_id, min(ts) AS first_seen, max(ts) AS last_seen
    FROM by_month
    GROUP BY month, user_id
)
SELECT l.month, l.user_id, l.first_name, l.last_name, l.gender, l.level, l.location, l.country, l.registration_ms,
       l.source, l.ts, l.pos1, l.pos2, s.first_seen, s.last_seen
FROM latest l
JOIN span s ON s.month = l.month AND s.user_id = l.user_id
ORDER BY l.month, l.user_id
