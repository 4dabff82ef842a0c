-- Every artist of a track, in credit order: position 0 is the primary artist
-- (the one on fact_plays).
CREATE TABLE bridge_track_artists (
    track_id  VARCHAR NOT NULL,
    position  BIGINT NOT NULL,
    artist_id VARCHAR NOT NULL,
    source    VARCHAR NOT NULL,
    PRIMARY KEY (track_id, position)
);
