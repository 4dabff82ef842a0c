-- One row per album (ids derived from the normalized artist and album name).
CREATE TABLE dim_albums (
    album_id  VARCHAR NOT NULL PRIMARY KEY,
    name      VARCHAR NOT NULL,
    artist_id VARCHAR NOT NULL,
    source    VARCHAR NOT NULL
);
