-- Helper table: the song catalogue, one row per song_id (the first record
-- seen, by raw file and position, so the choice never depends on file order).
SELECT DISTINCT ON (song_id)
    song_id, title, artist_id, artist_name, artist_location, artist_latitude,
    artist_longitude, year, duration, artist_key, title_key
FROM stg_sparkify_songs
ORDER BY song_id, raw_sha256, record
