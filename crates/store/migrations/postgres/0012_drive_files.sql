-- A drive's folders and files. A file points at a blob written (and
-- synced) before the row: a crash never shows a half-written file.
CREATE TABLE drive_nodes (
    id TEXT PRIMARY KEY,
    drive_id BIGINT NOT NULL REFERENCES drives(id) ON DELETE CASCADE,
    -- '' for the drive's top folder.
    parent_id TEXT NOT NULL,
    name TEXT NOT NULL,
    is_dir BIGINT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    blob_id TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    UNIQUE (drive_id, parent_id, name)
);
