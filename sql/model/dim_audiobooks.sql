-- One row per audiobook chapter streamed, with its audiobook.
SELECT chapter_id, chapter_title, audiobook_id, audiobook_title, source
FROM (
    SELECT chapter_id, chapter_title, audiobook_id, audiobook_title, 'spotify_export' AS source,
           lag(chapter_id) OVER (ORDER BY chapter_id, history DESC, raw_sha256, record) AS previous
    FROM _spotify_streams
    WHERE chapter_id IS NOT NULL
)
WHERE previous IS DISTINCT FROM chapter_id
ORDER BY chapter_id
