-- One row per play (a stream, for Spotify exports: every stream is a row with
-- its ms_played; counts_as_play marks those of 30 s or more, and reports use
-- it). The contract sql/model/fact_plays.sql must produce, and the PostgreSQL
-- DDL. Timestamps are UTC, microseconds; played_at is the end of the play.
CREATE TABLE fact_plays (
    play_id         VARCHAR NOT NULL PRIMARY KEY,
    played_at       TIMESTAMP(6) NOT NULL,
    user_id         VARCHAR NOT NULL,
    track_id        VARCHAR,
    artist_id       VARCHAR,
    album_id        VARCHAR,
    session_id      BIGINT,
    item_in_session BIGINT,
    ms_played       BIGINT,
    skipped         BOOLEAN,
    shuffle         BOOLEAN,
    reason_start    VARCHAR,
    reason_end      VARCHAR,
    platform        VARCHAR,
    country         VARCHAR,
    location        VARCHAR,
    user_agent      VARCHAR,
    level           VARCHAR,
    context_uri     VARCHAR,
    episode_id      VARCHAR,
    chapter_id      VARCHAR,
    offline         BOOLEAN,
    incognito       BOOLEAN,
    counts_as_play  BOOLEAN NOT NULL,
    content_type    VARCHAR NOT NULL,
    source          VARCHAR NOT NULL
);
