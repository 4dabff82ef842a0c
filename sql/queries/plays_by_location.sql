-- The 20 locations with the most plays (Sparkify: where the listener was at the time of the play).
SELECT location, count(*) AS plays, count(DISTINCT user_id) AS listeners
FROM plays
WHERE counts_as_play AND location IS NOT NULL
GROUP BY location
ORDER BY plays DESC, location
LIMIT 20
