-- One row per distinct play time (UTC). week is the ISO week; weekday
-- counts from Monday = 0, as in the course.
CREATE TABLE dim_time (
    ts      TIMESTAMP(6) NOT NULL PRIMARY KEY,
    hour    INT NOT NULL,
    day     INT NOT NULL,
    week    INT NOT NULL,
    month   INT NOT NULL,
    year    INT NOT NULL,
    weekday INT NOT NULL
);
