-- The Sparkify course's own tables, as views with its exact columns and
-- types, so the course's queries run unchanged. song_id and artist_id are set
-- only when a play matched the song catalogue, as in the course.
CREATE VIEW songplays AS
SELECT
    CAST(row_number() OVER (ORDER BY f.played_at, f.play_id) AS INT) AS songplay_id,
    CAST(f.played_at AS TIMESTAMP)                                  AS start_time,
    CAST(f.user_id AS INT)                                          AS user_id,
    CAST(f.level AS VARCHAR)                                        AS level,
    CAST(CASE WHEN t.origin = 'song_data' THEN f.track_id END AS VARCHAR)  AS song_id,
    CAST(CASE WHEN t.origin = 'song_data' THEN f.artist_id END AS VARCHAR) AS artist_id,
    CAST(f.session_id AS INT)                                       AS session_id,
    CAST(f.location AS VARCHAR)                                     AS location,
    CAST(f.user_agent AS VARCHAR)                                   AS user_agent
FROM fact_plays f
LEFT JOIN dim_tracks t ON t.track_id = f.track_id
WHERE f.source = 'sparkify';

CREATE VIEW users AS
SELECT CAST(user_id AS INT) AS user_id, CAST(first_name AS VARCHAR) AS first_name,
       CAST(last_name AS VARCHAR) AS last_name, CAST(gender AS VARCHAR) AS gender,
       CAST(level AS VARCHAR) AS level
FROM dim_users
WHERE source = 'sparkify';

CREATE VIEW songs AS
SELECT CAST(track_id AS VARCHAR) AS song_id, CAST(title AS VARCHAR) AS title,
       CAST(artist_id AS VARCHAR) AS artist_id, CAST(coalesce(year, 0) AS INT) AS year,
       CAST(duration_s AS FLOAT) AS duration
FROM dim_tracks
WHERE source = 'sparkify' AND origin = 'song_data';

CREATE VIEW artists AS
SELECT CAST(artist_id AS VARCHAR) AS artist_id, CAST(name AS VARCHAR) AS name,
       CAST(location AS VARCHAR) AS location, CAST(latitude AS FLOAT) AS latitude,
       CAST(longitude AS FLOAT) AS longitude
FROM dim_artists
WHERE source = 'sparkify' AND origin = 'song_data';

CREATE VIEW time AS
SELECT CAST(ts AS TIMESTAMP) AS start_time, hour, day, week, month, year, weekday
FROM dim_time;
