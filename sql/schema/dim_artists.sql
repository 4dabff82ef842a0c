-- One row per artist; origin as in dim_tracks.
CREATE TABLE dim_artists (
    artist_id VARCHAR NOT NULL PRIMARY KEY,
    name      VARCHAR NOT NULL,
    location  VARCHAR,
    latitude  DOUBLE PRECISION,
    longitude DOUBLE PRECISION,
    genres    VARCHAR,
    origin    VARCHAR NOT NULL,
    source    VARCHAR NOT NULL
);
