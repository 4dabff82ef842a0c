-- One row per listener, with the attributes of their latest event.
CREATE TABLE dim_users (
    user_id       VARCHAR NOT NULL PRIMARY KEY,
    first_name    VARCHAR,
    last_name     VARCHAR,
    gender        VARCHAR,
    level         VARCHAR,
    location      VARCHAR,
    country       VARCHAR,
    display_name  VARCHAR,
    registered_at TIMESTAMP(6),
    first_seen    TIMESTAMP(6) NOT NULL,
    last_seen     TIMESTAMP(6) NOT NULL,
    source        VARCHAR NOT NULL
);
