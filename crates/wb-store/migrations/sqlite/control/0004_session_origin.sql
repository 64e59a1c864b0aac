-- Where a session was opened from, for its owner's list of sessions.
ALTER TABLE sessions ADD COLUMN client TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
CREATE INDEX sessions_by_user ON sessions(user_id);
