-- Attempts reserved on a throttle key and not yet settled: a password or
-- code is checked only after its attempt is reserved, in one statement
-- that also checks the key has room (see identity/src/attempt.rs), so a
-- burst of concurrent guesses cannot all pass a check read before any of
-- them is counted. reserved_at lets a reservation that was never settled
-- (a crashed process) lapse.
ALTER TABLE throttles ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE throttles ADD COLUMN reserved_at INTEGER NOT NULL DEFAULT 0;
