-- Helper table: Spotify export streams, one per natural key. The same stream
-- in two exports (or the same export twice) is one row: the first copy by
-- raw file and record.
SELECT * EXCLUDE (previous)
FROM (
    SELECT *, lag(stream_id) OVER (ORDER BY stream_id, raw_sha256, record) AS previous
    FROM stg_spotify_streams
)
WHERE previous IS DISTINCT FROM stream_id
