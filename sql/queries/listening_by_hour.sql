-- Plays per hour of the day (UTC).
SELECT t.hour, count(*) AS plays
FROM fact_plays f
JOIN dim_time t ON t.ts = f.played_at
WHERE f.counts_as_play
GROUP BY t.hour
ORDER BY t.hour
