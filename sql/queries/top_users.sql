-- The 20 most active listeners, with their current level.
SELECT u.user_id, u.first_name, u.last_name, u.level, count(*) AS plays
FROM fact_plays f
JOIN dim_users u ON u.user_id = f.user_id
WHERE f.counts_as_play
GROUP BY u.user_id, u.first_name, u.last_name, u.level
ORDER BY plays DESC, u.user_id
LIMIT 20
