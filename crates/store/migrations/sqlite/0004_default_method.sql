-- The second-factor kind a member wants offered first ('' = the one used
-- most recently).
ALTER TABLE accounts ADD COLUMN default_method TEXT NOT NULL DEFAULT '';
