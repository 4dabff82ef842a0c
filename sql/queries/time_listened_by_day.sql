-- Hours listened and plays per local day (ms_played where the source gives it, else the track's length).
-- Only untimed streams (Spotify and Sparkify time every play) join the tracks for their length.
WITH timed AS (
    SELECT local_date, sum(ms_played) AS ms,
           sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END) AS plays, count(*) AS streams
    FROM plays
    GROUP BY local_date
),
untimed AS (
    SELECT p.local_date, sum(t.duration_s) * 1000 AS ms
    FROM plays p
    JOIN dim_tracks t ON t.track_id = p.track_id
    WHERE p.ms_played IS NULL
    GROUP BY p.local_date
)
SELECT m.local_date AS day,
       round((coalesce(m.ms, 0) + coalesce(u.ms, 0)) / 3600000.0, 1) AS hours,
       m.plays,
       m.streams
FROM timed m
LEFT JOIN untimed u ON u.local_date = m.local_date
ORDER BY day
