-- Cumulative summary: each derived track's first unmatched play over every
-- month (by time, then raw file and line), reduced from _sparkify_unmatched.
-- A minimum is idempotent, so an incremental build may feed it the previous
-- result plus the recomputed months and get the same rows; and plays later
-- than a track's first never change its row, so a new day only adds rows.
SELECT month, track_id, song, artist, artist_id, artist_origin, length, ts, raw_sha256, line
FROM (
    SELECT *, lag(track_id) OVER (ORDER BY track_id, ts, raw_sha256, line) AS previous
    FROM _sparkify_unmatched
)
WHERE previous IS DISTINCT FROM track_id
ORDER BY track_id
