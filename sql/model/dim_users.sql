-- One row per user: name, gender, level, location and country from their
-- latest event (by time, then session position, never by file order); for a
-- Spotify Web API user, level (product), country and display name come from
-- the latest /v1/me. Reads the cumulative summary (_users_all), not every
-- event.
WITH profile AS (
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
    l.first_seen,
    l.last_seen,
    CASE WHEN p.user_id IS NOT NULL THEN 'spotify_api' ELSE l.source END AS source
FROM _users_all l
LEFT JOIN profile p ON p.user_id = l.user_id
ORDER BY l.user_id
