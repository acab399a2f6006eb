-- What WebDAV clients keep beside contents: the checksums they send
-- (rclone's OC-Checksum), dead properties (PROPPATCH) and locks.
ALTER TABLE drive_nodes ADD COLUMN checksums TEXT NOT NULL DEFAULT '';
-- Copies share a blob; it is freed when the last node using it goes.
CREATE INDEX drive_nodes_blob ON drive_nodes (blob_id);

CREATE TABLE drive_props (
    node_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The whole element, as the client sent it.
    xml TEXT NOT NULL,
    PRIMARY KEY (node_id, namespace, name)
);

-- Locks are on paths (a lock may reserve a name not yet created).
CREATE TABLE drive_locks (
    token TEXT PRIMARY KEY,
    drive_id INTEGER NOT NULL REFERENCES drives(id) ON DELETE CASCADE,
    -- Decoded, from the drive's top, without a trailing slash ("" for the top).
    path TEXT NOT NULL,
    principal TEXT NOT NULL,
    owner_xml TEXT NOT NULL,
    -- Milliseconds since the epoch; 0 for a lock without a timeout.
    expires_at INTEGER NOT NULL,
    timeout_secs INTEGER NOT NULL,
    shared INTEGER NOT NULL,
    deep INTEGER NOT NULL
);
CREATE INDEX drive_locks_drive ON drive_locks (drive_id);
