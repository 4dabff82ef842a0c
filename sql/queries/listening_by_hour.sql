-- Plays per hour of the day, local time.
SELECT local_hour AS hour, count(*) AS plays
FROM plays
WHERE counts_as_play
GROUP BY local_hour
ORDER BY hour
