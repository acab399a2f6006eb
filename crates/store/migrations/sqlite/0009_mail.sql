-- The language a member reads email in (set from the console's language).
ALTER TABLE accounts ADD COLUMN lang TEXT NOT NULL DEFAULT 'en';

-- Email waiting to go out: durable, retried with backoff, claimed with a
-- lease so several processes never send one twice at the same time.
CREATE TABLE mail_queue (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    to_addr TEXT NOT NULL,
    lang TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mail_queue_due ON mail_queue (sent_at, next_attempt_at);

-- Security emails a member turned off (only the optional kinds).
CREATE TABLE mail_opt_outs (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    PRIMARY KEY (account_id, kind)
);
