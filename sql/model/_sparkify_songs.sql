-- Helper table: the song catalogue, one row per song_id (the first record
-- seen, by raw file and position, so the choice never depends on file order).
SELECT * EXCLUDE (previous)
FROM (
    SELECT
        song_id, title, artist_id, artist_name, artist_location, artist_latitude,
        artist_longitude, year, duration, artist_key, title_key,
        lag(song_id) OVER (ORDER BY song_id, raw_sha256, record) AS previous
    FROM stg_sparkify_songs
)
WHERE previous IS DISTINCT FROM song_id
