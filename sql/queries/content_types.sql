-- Music, podcasts and audiobooks: plays, streams and hours of each.
SELECT CASE content_type WHEN 'track' THEN 'music' WHEN 'episode' THEN 'podcasts'
                         WHEN 'audiobook' THEN 'audiobooks' ELSE 'other' END AS kind,
       sum(CASE WHEN counts_as_play THEN 1 ELSE 0 END) AS plays,
       count(*) AS streams,
       round(sum(coalesce(ms_played, 0)) / 3600000.0, 1) AS hours_timed
FROM plays
GROUP BY 1
ORDER BY plays DESC, kind
