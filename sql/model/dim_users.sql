-- One row per user: name, gender, level and location from their latest event
-- of any page (by time, then session position, never by file order).
WITH latest AS (
    SELECT DISTINCT ON (user_id)
        user_id, first_name, last_name, gender, level, location, registration_ms
    FROM stg_sparkify_events
    WHERE user_id IS NOT NULL
    ORDER BY user_id, ts DESC, session_id DESC, item_in_session DESC
),
span AS (
    SELECT user_id, min(ts) AS first_seen, max(ts) AS last_seen
    FROM stg_sparkify_events
    WHERE user_id IS NOT NULL
    GROUP BY user_id
)
SELECT
    l.user_id,
    l.first_name,
    l.last_name,
    l.gender,
    l.level,
    l.location,
    CAST(to_timestamp_micros(l.registration_ms * 1000) AS TIMESTAMP(6)) AS registered_at,
    s.first_seen,
    s.last_seen,
    'sparkify' AS source
FROM latest l
JOIN span s ON s.user_id = l.user_id
ORDER BY l.user_id
