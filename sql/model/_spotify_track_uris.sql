-- Helper table: the track URI extended streaming history gives each pair of
-- normalized names, over every export (account-data rows have names only).
SELECT artist_key, title_key, min(track_uri) AS track_uri
FROM stg_spotify_streams
WHERE history = 'extended' AND track_uri IS NOT NULL
GROUP BY artist_key, title_key
