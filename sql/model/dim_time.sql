-- One row per distinct play time, from the fact table just built.
SELECT
    ts,
    CAST(date_part('hour', ts) AS INT)          AS hour,
    CAST(date_part('day', ts) AS INT)           AS day,
    CAST(date_part('week', ts) AS INT)          AS week,
    CAST(date_part('month', ts) AS INT)         AS month,
    CAST(date_part('year', ts) AS INT)          AS year,
    CAST((date_part('dow', ts) + 6) % 7 AS INT) AS weekday
FROM (SELECT DISTINCT played_at AS ts FROM fact_plays)
ORDER BY ts
