-- Monthly summary: the Sparkify plays no catalogue song matched, one row per
-- derived track and month (its first play: by time, then raw file and line).
-- dim_tracks and dim_artists read these instead of every play, so a build
-- that adds a day recomputes one month of them, not the whole history.
SELECT month, track_id, song, artist, artist_id, artist_origin, length, ts, raw_sha256, line
FROM (
    SELECT
        CAST(date_trunc('month', ts) AS TIMESTAMP(6)) AS month,
        track_id, song, artist, artist_id, artist_origin, length, ts, raw_sha256, line,
        lag(track_id) OVER (ORDER BY date_trunc('month', ts), track_id, ts, raw_sha256, line) AS previous,
        lag(date_trunc('month', ts)) OVER (ORDER BY date_trunc('month', ts), track_id, ts, raw_sha256, line)
            AS previous_month
    FROM _sparkify_plays
    WHERE NOT matched
)
WHERE (previous IS DISTINCT FROM track_id) OR (previous_month IS DISTINCT FROM month)
ORDER BY month, track_id
