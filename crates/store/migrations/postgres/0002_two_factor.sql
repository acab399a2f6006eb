-- Two-step verification, backup codes, application passwords, and the
-- half-signed-in session stage.

ALTER TABLE sessions ADD COLUMN stage TEXT NOT NULL DEFAULT 'signed_in';
ALTER TABLE sessions ADD COLUMN password_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN factor_failures BIGINT NOT NULL DEFAULT 0;

CREATE TABLE second_factors (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    -- sealed with the server key (AES-256-GCM), bound to the row id
    secret TEXT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    counter BIGINT NOT NULL
);
CREATE INDEX second_factors_account ON second_factors(account_id);

-- HMAC-SHA-256 digests under the server key; used_at 0 = unused.
CREATE TABLE backup_codes (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, digest)
);

CREATE TABLE app_passwords (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    last_used_ip TEXT NOT NULL
);
CREATE INDEX app_passwords_account ON app_passwords(account_id);
