-- Streaks: runs of consecutive local days with a play, per listener, longest first.
WITH days AS (
    SELECT DISTINCT user_id, local_date FROM plays WHERE counts_as_play
),
islands AS (
    SELECT user_id, local_date,
           CAST(to_unixtime(CAST(local_date AS TIMESTAMP)) / 86400 AS BIGINT)
             - row_number() OVER (PARTITION BY user_id ORDER BY local_date) AS island
    FROM days
)
SELECT user_id, min(local_date) AS first_day, max(local_date) AS last_day, count(*) AS days
FROM islands
GROUP BY user_id, island
ORDER BY days DESC, last_day DESC, user_id
LIMIT 20
