-- One row per album: Spotify's ids from the Web API, ids derived from the
-- normalized artist and album name from exports.
CREATE TABLE dim_albums (
    album_id  VARCHAR NOT NULL PRIMARY KEY,
    name      VARCHAR NOT NULL,
    artist_id    VARCHAR NOT NULL,
    release_date VARCHAR,
    album_type   VARCHAR,
    source    VARCHAR NOT NULL
);
