-- Plays and listeners by subscription level at the time of the play.
SELECT level, count(*) AS plays, count(DISTINCT user_id) AS listeners
FROM plays
WHERE counts_as_play
GROUP BY level
ORDER BY level
