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
-- A time is in one month, so the join needs no month: the events are not
-- truncated to theirs.
at_last AS (
    SELECT s.month, s.user_id, b.first_name, b.last_name, b.gender, b.level, b.location, b.country,
           b.registration_ms, b.source, b.ts, b.pos1, b.pos2, s.first_seen, s.last_seen
    FROM span s
    JOIN events b ON b.user_id = s.user_id AND b.ts = s.last_seen
),
-- Events at the same last time (rare): the latest by session position, then
-- source, is the first row of its user and month in that order (a sort of
-- these few rows; first_value(... ORDER BY ...) per column was slower in
-- DataFusion 55: bench/README). ts, first_seen and last_seen are the same on
-- every row of a group.
ranked AS (
    SELECT *,
        lag(user_id) OVER (ORDER BY month, user_id, pos1 DESC, pos2 DESC, source) AS previous_user,
        lag(month) OVER (ORDER BY month, user_id, pos1 DESC, pos2 DESC, source) AS previous_month
    FROM at_last
)
SELECT * EXCLUDE (previous_user, previous_month)
FROM ranked
WHERE (previous_user IS DISTINCT FROM user_id) OR (previous_month IS DISTINCT FROM month)
ORDER BY month, user_id
