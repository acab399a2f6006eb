-- Times an import job was claimed since one of its items last finished:
-- a job whose source crashes the server is failed after a few, instead of
-- being claimed again after every restart.
ALTER TABLE drive_imports ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
