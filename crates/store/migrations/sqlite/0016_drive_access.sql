-- Who may use a drive. Members of the drive's organization get the
-- drive's `member_access` unless a rule of their own says otherwise;
-- the organization's admins and legal representatives always read and
-- write. Access is 'read-write', 'read' or 'none'.
ALTER TABLE drives ADD COLUMN member_access TEXT NOT NULL DEFAULT 'read-write';
CREATE TABLE drive_members (
    drive_id INTEGER NOT NULL REFERENCES drives(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    access TEXT NOT NULL,
    PRIMARY KEY (drive_id, account_id)
);
