-- "Import external data" jobs: durable, resumable, their source password
-- sealed while they run and erased when they end.
CREATE TABLE drive_imports (
    id TEXT PRIMARY KEY,
    drive_id BIGINT NOT NULL REFERENCES drives(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    source_url TEXT NOT NULL,
    source_user TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    folder TEXT NOT NULL,
    state TEXT NOT NULL,
    files_done BIGINT NOT NULL DEFAULT 0,
    bytes_done BIGINT NOT NULL DEFAULT 0,
    files_failed BIGINT NOT NULL DEFAULT 0,
    files_found BIGINT NOT NULL DEFAULT 0,
    current_file TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX drive_imports_drive ON drive_imports (drive_id, created_at);
CREATE INDEX drive_imports_state ON drive_imports (state);

-- The source's folders and files, as they are found: the work list that
-- lets a job resume without copying anything twice.
CREATE TABLE drive_import_items (
    import_id TEXT NOT NULL REFERENCES drive_imports(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    is_dir BIGINT NOT NULL,
    size BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    -- 'pending', 'done' or 'failed'
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (import_id, path)
);
CREATE INDEX drive_import_items_pending ON drive_import_items (import_id, state, is_dir);
