-- One row per podcast episode streamed, with its show.
SELECT episode_id, name, show_id, show_name, source
FROM (
    SELECT episode_id, episode_name AS name, show_id, show_name, 'spotify_export' AS source,
           row_number() OVER (PARTITION BY episode_id ORDER BY history DESC, raw_sha256, record) AS pick
    FROM _spotify_streams
    WHERE episode_id IS NOT NULL
)
WHERE pick = 1
ORDER BY episode_id
