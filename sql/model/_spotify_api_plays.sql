-- Helper table: Spotify Web API plays, one per natural key (user, played_at,
-- track), with the primary artist and the user's latest country and level.
-- A play a Spotify export also has (same user and track, end times within
-- 10 s) is the same play: duplicate_of names the export stream, which wins
-- since it carries ms_played.
WITH plays AS (
    SELECT * EXCLUDE (previous)
    FROM (
        SELECT *, lag(play_id) OVER (ORDER BY play_id, raw_sha256, record) AS previous
        FROM stg_spotify_api_plays
        WHERE artist_position = 0
    )
    WHERE previous IS DISTINCT FROM play_id
),
in_export AS (
    SELECT p.play_id, min(e.stream_id) AS duplicate_of
    FROM plays p
    JOIN _spotify_streams e ON e.account = p.user_id AND e.track_id = p.track_id
    WHERE e.duplicate_of IS NULL
        AND e.ts >= p.played_at - INTERVAL '10 seconds'
        AND e.ts <= p.played_at + INTERVAL '10 seconds'
    GROUP BY p.play_id
),
profile AS (
    SELECT DISTINCT ON (user_id) user_id, country, product
    FROM stg_spotify_api_users
    ORDER BY user_id, seq DESC
)
SELECT p.*, i.duplicate_of, u.country, u.product
FROM plays p
LEFT JOIN in_export i ON i.play_id = p.play_id
LEFT JOIN profile u ON u.user_id = p.user_id
