-- One row per audiobook chapter streamed, with its audiobook.
SELECT chapter_id, chapter_title, audiobook_id, audiobook_title, source
FROM (
    SELECT chapter_id, chapter_title, audiobook_id, audiobook_title, 'spotify_export' AS source,
           row_number() OVER (PARTITION BY chapter_id ORDER BY history DESC, raw_sha256, record) AS pick
    FROM _spotify_streams
    WHERE chapter_id IS NOT NULL
)
WHERE pick = 1
ORDER BY chapter_id
