-- fact_plays' primary key is (played_at, play_id), in time order. Play ids
-- are digests, so under a key of play_id alone each new play went to a
-- random page of the whole table's index: a day of plays on a 5M-play
-- table read and rewrote about one index page per play (0.4 s for 1,700
-- plays, 15 MB of WAL), where now they go to its last pages (22 ms, 3 MB):
-- bench/README, "One more day". Every play id is a digest of its source's
-- record and time, so no two plays share an id and the key is as unique as
-- play_id alone. The key leads with played_at, so it also serves the sync's
-- probes of a month by time, which had an index of their own. To look plays
-- up by id, add an index of your own in a later migration (each sync then
-- keeps it up as it kept the old key).
ALTER TABLE fact_plays DROP CONSTRAINT IF EXISTS fact_plays_pkey;
ALTER TABLE fact_plays ADD CONSTRAINT fact_plays_pkey PRIMARY KEY (played_at, play_id);
DROP INDEX IF EXISTS fact_plays_played_at_idx;
