-- A drive's folders and files. A file points at a blob written (and
-- synced) before the row: a crash never shows a half-written file.
CREATE TABLE drive_nodes (
    id TEXT PRIMARY KEY,
    drive_id INTEGER NOT NULL REFERENCES drives(id) ON DELETE CASCADE,
    -- '' for the drive's top folder.
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    blob_id TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    UNIQUE (drive_id, parent_id, name)
);
