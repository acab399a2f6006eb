-- When linking the authenticator app turned two-step verification on, the
-- new backup codes wait here (sealed) until the console that made the link
-- shows them once, for ten minutes at most.
CREATE TABLE linked_backup_codes (
    factor_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    sealed TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
