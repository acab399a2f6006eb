-- Small files live in the database: written with their row in one
-- transaction (one sync instead of three, no file to create). Their
-- blob id starts with 'i'; copies share it like any blob.
CREATE TABLE drive_inline (
    blob_id TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
