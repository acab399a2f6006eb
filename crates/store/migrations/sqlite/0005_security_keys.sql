-- The WebAuthn challenge a half-signed-in session is answering with a
-- security key (sealed state), single use.
CREATE TABLE webauthn_challenges (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
