-- One row per play from every source, ordered by time (the writer
-- partitions by month). Sparkify's NextSong events are plays by definition;
-- a Spotify export stream counts as a play from 30 s of listening; a Web API
-- play is one Spotify itself lists as played (ms_played unknown).
SELECT * FROM (
    SELECT
        event_id                                   AS play_id,
        ts                                         AS played_at,
        user_id,
        track_id,
        artist_id,
        CAST(NULL AS VARCHAR)                      AS album_id,
        session_id,
        item_in_session,
        CAST(round(length * 1000) AS BIGINT)       AS ms_played,
        CAST(NULL AS BOOLEAN)                      AS skipped,
        CAST(NULL AS BOOLEAN)                      AS shuffle,
        CAST(NULL AS VARCHAR)                      AS reason_start,
        CAST(NULL AS VARCHAR)                      AS reason_end,
        CAST(NULL AS VARCHAR)                      AS platform,
        CAST(NULL AS VARCHAR)                      AS country,
        location,
        user_agent,
        level,
        CAST(NULL AS VARCHAR)                      AS context_uri,
        CAST(NULL AS VARCHAR)                      AS episode_id,
        CAST(NULL AS VARCHAR)                      AS chapter_id,
        CAST(NULL AS BOOLEAN)                      AS offline,
        CAST(NULL AS BOOLEAN)                      AS incognito,
        TRUE                                       AS counts_as_play,
        'track'                                    AS content_type,
        'sparkify'                                 AS source
    FROM _sparkify_plays
    UNION ALL
    SELECT
        stream_id,
        ts,
        account,
        track_id,
        artist_id,
        album_id,
        CAST(NULL AS BIGINT),
        CAST(NULL AS BIGINT),
        ms_played,
        skipped,
        shuffle,
        reason_start,
        reason_end,
        platform,
        country,
        CAST(NULL AS VARCHAR),
        CAST(NULL AS VARCHAR),                     -- user agents stay in raw
        CAST(NULL AS VARCHAR),
        CAST(NULL AS VARCHAR),
        episode_id,
        chapter_id,
        offline,
        incognito,
        ms_played >= 30000,
        content_type,
        'spotify_export'
    FROM _spotify_streams
    WHERE duplicate_of IS NULL
    UNION ALL
    SELECT
        play_id,
        played_at,
        user_id,
        track_id,
        artist_id,
        album_id,
        CAST(NULL AS BIGINT),
        CAST(NULL AS BIGINT),
        CAST(NULL AS BIGINT),                      -- the API does not say how long
        CAST(NULL AS BOOLEAN),
        CAST(NULL AS BOOLEAN),
        CAST(NULL AS VARCHAR),
        CAST(NULL AS VARCHAR),
        CAST(NULL AS VARCHAR),
        country,
        CAST(NULL AS VARCHAR),
        CAST(NULL AS VARCHAR),
        product,
        context_uri,
        CAST(NULL AS VARCHAR),
        CAST(NULL AS VARCHAR),
        CAST(NULL AS BOOLEAN),
        CAST(NULL AS BOOLEAN),
        TRUE,                                      -- Spotify lists a track once it counts as played
        'track',
        'spotify_api'
    FROM _spotify_api_plays
    WHERE duplicate_of IS NULL
)
ORDER BY played_at, play_id
