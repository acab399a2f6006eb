-- Single-use links that register a device running the authenticator app.
CREATE TABLE authenticator_links (
    token_hash TEXT PRIMARY KEY,
    factor_id TEXT NOT NULL REFERENCES second_factors(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
