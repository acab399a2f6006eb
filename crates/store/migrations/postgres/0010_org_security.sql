-- Organizations may require two-step verification of every member, with a
-- grace period; who changed it and when.
ALTER TABLE organizations ADD COLUMN require_two_factor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE organizations ADD COLUMN grace_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE organizations ADD COLUMN policy_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE organizations ADD COLUMN policy_by TEXT NOT NULL DEFAULT '';

-- Invitations by email: a single-use link, valid 7 days.
CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX invitations_org ON invitations (org_id);

-- The organization's audit log.
CREATE TABLE org_events (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX org_events_org ON org_events (org_id, id);

-- Security alerts sent, for the rate limit.
CREATE TABLE security_alerts (
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    sent_at BIGINT NOT NULL
);
CREATE INDEX security_alerts_member ON security_alerts (account_id, sent_at);
