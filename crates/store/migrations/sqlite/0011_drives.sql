-- Drives: an organization's shared folders, reached over WebDAV. Ids are
-- numeric and random (the <id> of <id>.connect.<domain>).
CREATE TABLE drives (
    id INTEGER PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    quota_bytes INTEGER NOT NULL,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX drives_org ON drives (org_id);
