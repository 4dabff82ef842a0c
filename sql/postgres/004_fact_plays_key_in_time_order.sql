-- fact_plays' primary key is (played_at, play_id), in time order. Play ids
-- are digests, so under a key of play_id alone each new play went to a
-- random page of the whole table's index, read and rewritten (with a
-- full-page image in the WAL) for that one play; now a sync's new plays go
-- to the index's last pages (bench/README, "One more day"). Every play id is a digest of its source's
-- record and time, so no two plays share an id and the key is as unique as
-- play_id alone. The key leads with played_at, so it also serves the sync's
-- probes of a month by time, which had an index of their own. To look plays
-- up by id, add an index of your own in a later migration (each sync then
-- keeps it up as it kept the old key).
ALTER TABLE fact_plays DROP CONSTRAINT IF EXISTS fact_plays_pkey;
ALTER TABLE fact_plays ADD CONSTRAINT fact_plays_pkey PRIMARY KEY (played_at, play_id);
DROP INDEX IF EXISTS fact_plays_played_at_idx;
