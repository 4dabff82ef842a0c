-- Cumulative summary: each user's latest event and first and last event over
-- every month, reduced from _users_by_month. The reduction only keeps a
-- latest, a minimum and a maximum, so an incremental build may feed it the
-- previous result plus the recomputed months and get the same rows.
WITH latest AS (
    SELECT * EXCLUDE (previous)
    FROM (
        SELECT
            month, user_id, first_name, last_name, gender, level, location, country, registration_ms, source,
            ts, pos1, pos2,
            lag(user_id) OVER (ORDER BY user_id, ts DESC, pos1 DESC, pos2 DESC, source) AS previous
        FROM _users_by_month
    )
    WHERE previous IS DISTINCT FROM user_id
),
span AS (
    SELECT user_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen
    FROM _users_by_month
    GROUP BY user_id
)
SELECT l.month, l.user_id, l.first_name, l.last_name, l.gender, l.level, l.location, l.country, l.registration_ms,
       l.source, l.ts, l.pos1, l.pos2, s.first_seen, s.last_seen
FROM latest l
JOIN span s ON s.user_id = l.user_id
ORDER BY l.user_id
