-- The listening clock: plays by local day of the week (Monday = 0) and hour.
SELECT local_weekday AS weekday, local_hour AS hour, count(*) AS plays
FROM plays
WHERE counts_as_play
GROUP BY local_weekday, local_hour
ORDER BY weekday, hour
