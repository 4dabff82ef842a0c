-- The 20 most active listeners, with their current level.
-- Plays are counted per user first, then joined to one row per user.
WITH per_user AS (
    SELECT user_id, count(*) AS plays
    FROM plays
    WHERE counts_as_play
    GROUP BY user_id
)
SELECT u.user_id, u.first_name, u.last_name, u.level, p.plays
FROM per_user p
JOIN dim_users u ON u.user_id = p.user_id
ORDER BY p.plays DESC, u.user_id
LIMIT 20
