-- Helper table: Spotify export streams (one per natural key, from
-- _spotify_unique) with their ids. An account-data row (minute precision, no URI) that extended history also has
-- (same account, names and ms_played, within the minute) is a duplicate:
-- duplicate_of names the extended stream, and the fact leaves it out.
-- Genuine repeats minutes apart have other keys and stay. An account row
-- without a URI takes the URI extended history has for the same names
-- (_spotify_track_uris, over every export).
WITH extended AS (
    SELECT stream_id, account, ts, ms_played, content_type, artist_key, title_key, track_uri
    FROM _spotify_unique
    WHERE history = 'extended'
),
covered AS (
    SELECT a.stream_id, min(e.stream_id) AS duplicate_of
    FROM _spotify_unique a
    JOIN extended e
        ON e.account = a.account
        AND e.content_type = a.content_type
        AND e.artist_key = a.artist_key
        AND e.title_key = a.title_key
        AND e.ms_played = a.ms_played
    WHERE a.history = 'account'
        AND e.ts >= a.ts - INTERVAL '1 minute'
        AND e.ts < a.ts + INTERVAL '2 minutes'
    GROUP BY a.stream_id
)
SELECT
    s.*,
    c.duplicate_of,
    CASE WHEN s.content_type = 'track' THEN coalesce(
        nullif(split_part(coalesce(s.track_uri, n.track_uri), ':', 3), ''),
        'TLT' || substr(md5(s.artist_key || chr(31) || s.title_key), 1, 16)
    ) END AS track_id,
    CASE WHEN s.content_type = 'track' AND coalesce(s.track_uri, n.track_uri) IS NOT NULL THEN 'spotify' ELSE 'derived' END
        AS track_origin,
    CASE WHEN s.content_type = 'track' THEN 'TLA' || substr(md5(s.artist_key), 1, 16) END AS artist_id,
    CASE WHEN s.content_type = 'track' AND s.album_name IS NOT NULL
        THEN 'TLL' || substr(md5(s.artist_key || chr(31) || lower(trim(s.album_name))), 1, 16) END AS album_id,
    CASE WHEN s.content_type = 'episode' THEN coalesce(
        nullif(split_part(s.episode_uri, ':', 3), ''),
        'TLE' || substr(md5(coalesce(s.artist_key, '') || chr(31) || coalesce(s.title_key, '')), 1, 16)
    ) END AS episode_id,
    CASE WHEN s.content_type = 'episode' AND s.show_name IS NOT NULL
        THEN 'TLS' || substr(md5(s.artist_key), 1, 16) END AS show_id,
    CASE WHEN s.content_type = 'audiobook' THEN coalesce(
        nullif(split_part(s.chapter_uri, ':', 3), ''),
        'TLC' || substr(md5(coalesce(s.artist_key, '') || chr(31) || coalesce(s.title_key, '')), 1, 16)
    ) END AS chapter_id,
    CASE WHEN s.content_type = 'audiobook' THEN coalesce(
        nullif(split_part(s.audiobook_uri, ':', 3), ''),
        'TLB' || substr(md5(coalesce(s.artist_key, '')), 1, 16)
    ) END AS audiobook_id
FROM _spotify_unique s
LEFT JOIN covered c ON c.stream_id = s.stream_id
LEFT JOIN _spotify_track_uris n ON n.artist_key = s.artist_key AND n.title_key = s.title_key AND s.track_uri IS NULL
