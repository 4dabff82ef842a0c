-- Discoveries: per local month, the artists and tracks played (30 s or more) for the first time in the lake.
-- In one listener's lake these are their discoveries; in a lake of many (Sparkify), the catalogue's.
WITH track_firsts AS (
    SELECT min(played_at) AS first_at FROM fact_plays
    WHERE counts_as_play AND track_id IS NOT NULL
    GROUP BY track_id
),
artist_firsts AS (
    SELECT min(played_at) AS first_at FROM fact_plays
    WHERE counts_as_play AND artist_id IS NOT NULL
    GROUP BY artist_id
),
new_tracks AS (
    SELECT CAST(date_trunc('month', local_time(first_at)) AS DATE) AS month, count(*) AS n
    FROM track_firsts GROUP BY 1
),
new_artists AS (
    SELECT CAST(date_trunc('month', local_time(first_at)) AS DATE) AS month, count(*) AS n
    FROM artist_firsts GROUP BY 1
),
months AS (SELECT DISTINCT local_month AS month FROM plays)
SELECT m.month, coalesce(a.n, 0) AS new_artists, coalesce(t.n, 0) AS new_tracks
FROM months m
LEFT JOIN new_artists a ON a.month = m.month
LEFT JOIN new_tracks t ON t.month = m.month
ORDER BY m.month
