-- One row per audiobook chapter, with its audiobook.
CREATE TABLE dim_audiobooks (
    chapter_id      VARCHAR NOT NULL PRIMARY KEY,
    chapter_title   VARCHAR,
    audiobook_id    VARCHAR,
    audiobook_title VARCHAR,
    source          VARCHAR NOT NULL
);
