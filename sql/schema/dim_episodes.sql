-- One row per podcast episode, with its show.
CREATE TABLE dim_episodes (
    episode_id VARCHAR NOT NULL PRIMARY KEY,
    name       VARCHAR,
    show_id    VARCHAR,
    show_name  VARCHAR,
    source     VARCHAR NOT NULL
);
