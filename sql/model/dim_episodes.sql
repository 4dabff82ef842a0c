-- One row per podcast episode streamed, with its show.
SELECT episode_id, name, show_id, show_name, source
FROM (
    SELECT episode_id, episode_name AS name, show_id, show_name, 'spotify_export' AS source,
           lag(episode_id) OVER (ORDER BY episode_id, history DESC, raw_sha256, record) AS previous
    FROM _spotify_streams
    WHERE episode_id IS NOT NULL
)
WHERE previous IS DISTINCT FROM episode_id
ORDER BY episode_id
