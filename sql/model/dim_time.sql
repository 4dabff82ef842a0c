-- One row per distinct play time, from the fact table just built.
SELECT DISTINCT
    played_at                                         AS ts,
    CAST(date_part('hour', played_at) AS INT)         AS hour,
    CAST(date_part('day', played_at) AS INT)          AS day,
    CAST(date_part('week', played_at) AS INT)         AS week,
    CAST(date_part('month', played_at) AS INT)        AS month,
    CAST(date_part('year', played_at) AS INT)         AS year,
    CAST((date_part('dow', played_at) + 6) % 7 AS INT) AS weekday
FROM fact_plays
ORDER BY ts
