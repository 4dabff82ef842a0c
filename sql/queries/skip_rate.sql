-- Skip rate where the source records skips (Spotify's extended history), per content type.
SELECT content_type,
       count(*) AS streams,
       sum(CASE WHEN skipped THEN 1 ELSE 0 END) AS skipped,
       round(100.0 * sum(CASE WHEN skipped THEN 1 ELSE 0 END) / count(*), 1) AS skip_rate_pct
FROM plays
WHERE skipped IS NOT NULL
GROUP BY content_type
ORDER BY content_type
