-- One row per track. origin: 'song_data' (the Sparkify catalogue), 'spotify'
-- (the id is Spotify's) or 'derived' (seen only by name; the id is derived
-- from the normalized artist and title, the same way for every source).
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
