-- SMS codes: the code waiting for each number (digest only), and the log
-- of messages sent, for the daily caps (numbers as keyed digests).

CREATE TABLE sms_codes (
    factor_id TEXT PRIMARY KEY REFERENCES second_factors(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);

CREATE TABLE sms_sends (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    number_digest TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX sms_sends_number ON sms_sends(number_digest, sent_at);
CREATE INDEX sms_sends_account ON sms_sends(account_id, sent_at);
