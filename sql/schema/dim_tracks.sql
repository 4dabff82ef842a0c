-- One row per track. origin: 'song_data' (from the catalogue) or 'derived'
-- (seen only in plays; the id is derived from the normalized artist and title).
CREATE TABLE dim_tracks (
    track_id   VARCHAR NOT NULL PRIMARY KEY,
    title      VARCHAR NOT NULL,
    artist_id  VARCHAR NOT NULL,
    album_id   VARCHAR,
    duration_s DOUBLE PRECISION,
    year       BIGINT,
    origin     VARCHAR NOT NULL,
    source     VARCHAR NOT NULL
);
