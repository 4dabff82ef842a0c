-- Hours listened and plays per local week, from Monday (ms_played where the source gives it, else the track's length).
-- Time is summed per track first, so the tracks join one row per (week, track) instead of one per play.
WITH per_track AS (
    SELECT local_week, track_id,
           sum(ms_played) AS ms, count(*) - count(ms_played) AS untimed,
           sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END) AS plays, count(*) AS streams
    FROM plays
    GROUP BY local_week, track_id
)
SELECT p.local_week AS week,
       round(sum(coalesce(p.ms, 0) + p.untimed * coalesce(t.duration_s, 0) * 1000) / 3600000.0, 1) AS hours,
       sum(p.plays) AS plays,
       sum(p.streams) AS streams
FROM per_track p
LEFT JOIN dim_tracks t ON t.track_id = p.track_id
GROUP BY p.local_week
ORDER BY week
