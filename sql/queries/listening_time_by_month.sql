-- Hours listened and plays per month, from ms_played (not track lengths).
SELECT
    date_trunc('month', played_at)                        AS month,
    round(sum(ms_played) / 3600000.0, 1)                  AS hours,
    sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END)       AS plays,
    count(*)                                              AS streams
FROM fact_plays
GROUP BY date_trunc('month', played_at)
ORDER BY month
