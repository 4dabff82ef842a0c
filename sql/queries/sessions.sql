-- Listening sessions (plays less than 30 minutes apart, per listener), latest first: start, minutes, plays.
-- played_at is when a play ended, so a session runs from its first play's end to its last's.
WITH gaps AS (
    SELECT user_id, played_at, local_at,
           to_unixtime(played_at) - lag(to_unixtime(played_at)) OVER (PARTITION BY user_id ORDER BY played_at, play_id) AS gap_s
    FROM plays
),
numbered AS (
    SELECT *, sum(CASE WHEN gap_s IS NULL OR gap_s > 1800 THEN 1 ELSE 0 END)
                  OVER (PARTITION BY user_id ORDER BY played_at ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps
)
SELECT user_id, min(local_at) AS started,
       round((max(to_unixtime(played_at)) - min(to_unixtime(played_at))) / 60.0, 1) AS minutes,
       count(*) AS plays
FROM numbered
GROUP BY user_id, session
ORDER BY started DESC, user_id
LIMIT 100
