-- The index sync itself needs: each changed month of fact_plays is probed and
-- reconciled by its played_at range. Indexes for your own questions (plays by
-- user, by track) belong in a migration of your own after this one: every
-- index makes each load slower.
CREATE INDEX IF NOT EXISTS fact_plays_played_at_idx ON fact_plays (played_at);
