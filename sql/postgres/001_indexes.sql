-- Indexes for the usual questions: plays by user, by track, by time.
CREATE INDEX IF NOT EXISTS fact_plays_user_idx ON fact_plays (user_id);
CREATE INDEX IF NOT EXISTS fact_plays_track_idx ON fact_plays (track_id);
CREATE INDEX IF NOT EXISTS fact_plays_played_at_idx ON fact_plays (played_at);
