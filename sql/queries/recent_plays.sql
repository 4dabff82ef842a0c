-- The 50 latest plays and streams, local time.
SELECT p.local_at AS at,
       coalesce(t.title, e.name, b.chapter_title) AS title,
       coalesce(a.name, e.show_name, b.audiobook_title) AS artist_or_show,
       p.ms_played,
       p.content_type,
       p.source
FROM (SELECT * FROM plays ORDER BY played_at DESC, play_id LIMIT 50) p
LEFT JOIN dim_tracks t ON t.track_id = p.track_id
LEFT JOIN dim_artists a ON a.artist_id = p.artist_id
LEFT JOIN dim_episodes e ON e.episode_id = p.episode_id
LEFT JOIN dim_audiobooks b ON b.chapter_id = p.chapter_id
ORDER BY p.played_at DESC, p.play_id
