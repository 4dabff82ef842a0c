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
span AS (
    SELECT month, user_id, min(ts) AS first_seen, max(ts) AS last_seen
    FROM by_month
    GROUP BY month, user_id
),
-- The latest event is at the user's last time of the month: the events at
-- that time are found by a hash join (span, a row per user and month, is
-- the side hashed; the events stream past it) and only they are ordered.
at_last AS (
    SELECT s.month, s.user_id, b.first_name, b.last_name, b.gender, b.level, b.location, b.country,
           b.registration_ms, b.source, b.ts, b.pos1, b.pos2, s.first_seen, s.last_seen
    FROM span s
    JOIN by_month b ON b.month = s.month AND b.user_id = s.user_id AND b.ts = s.last_seen
)
-- Events at the same last time (rare): the latest by session position, then
-- source. ts, first_seen and last_seen are the same on every row of a group.
SELECT
    month, user_id,
    first_value(first_name ORDER BY pos1 DESC, pos2 DESC, source) AS first_name,
    first_value(last_name ORDER BY pos1 DESC, pos2 DESC, source) AS last_name,
    first_value(gender ORDER BY pos1 DESC, pos2 DESC, source) AS gender,
    first_value(level ORDER BY pos1 DESC, pos2 DESC, source) AS level,
    first_value(location ORDER BY pos1 DESC, pos2 DESC, source) AS location,
    first_value(country ORDER BY pos1 DESC, pos2 DESC, source) AS country,
    first_value(registration_ms ORDER BY pos1 DESC, pos2 DESC, source) AS registration_ms,
    first_value(source ORDER BY pos1 DESC, pos2 DESC, source) AS source,
    max(ts) AS ts,
    max(pos1) AS pos1,
    first_value(pos2 ORDER BY pos1 DESC, pos2 DESC, source) AS pos2,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM at_last
GROUP BY month, user_id
ORDER BY month, user_id
