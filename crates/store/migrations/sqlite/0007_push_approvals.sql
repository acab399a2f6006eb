-- Push approval requests sent to the authenticator app (number matching).
-- The session id is kept without a foreign key: a denial ends the
-- half-signed-in session, and the waiting browser still learns the answer.
CREATE TABLE approval_requests (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    -- The number shown on the sign-in page, and the three the app offers.
    number INTEGER NOT NULL,
    choices TEXT NOT NULL,
    -- pending, approved, denied, wrong_number, used
    status TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    answered_at INTEGER NOT NULL DEFAULT 0,
    answered_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approval_requests_account ON approval_requests (account_id, created_at);
CREATE INDEX approval_requests_session ON approval_requests (session_id);
