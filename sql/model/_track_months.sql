-- Monthly summary of fact_plays for the report: per month, track, artist
-- and album, the plays of 30 s or more and the first of them. The report
-- sums these for the months its period covers whole instead of reading
-- every play. Not synced.
SELECT
    CAST(date_trunc('month', played_at) AS TIMESTAMP(6)) AS month,
    track_id,
    artist_id,
    album_id,
    count(*) AS plays,
    min(played_at) AS first_at
FROM fact_plays
WHERE counts_as_play
GROUP BY 1, 2, 3, 4
ORDER BY month
