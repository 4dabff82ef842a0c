-- Helper table: Spotify export streams, one per natural key. The same stream
-- in two exports (or the same export twice) is one row: the first copy by
-- raw file and record.
SELECT * EXCLUDE (copy)
FROM (
    SELECT *, row_number() OVER (PARTITION BY stream_id ORDER BY raw_sha256, record) AS copy
    FROM stg_spotify_streams
)
WHERE copy = 1
