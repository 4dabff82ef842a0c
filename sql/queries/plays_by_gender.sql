-- Plays and listeners by gender (Sparkify: the listener's latest event).
SELECT coalesce(u.gender, 'unknown') AS gender, count(*) AS plays, count(DISTINCT p.user_id) AS listeners
FROM plays p
JOIN dim_users u ON u.user_id = p.user_id
WHERE p.counts_as_play
GROUP BY 1
ORDER BY plays DESC, gender
