-- Whether a node has dead properties, kept with the node: listings read
-- it with each entry instead of looking in drive_props for every one
-- (on PostgreSQL, a third of a folder page's time). Set in the same
-- transaction as the properties it describes.
ALTER TABLE drive_nodes ADD COLUMN has_props BIGINT NOT NULL DEFAULT 0;
UPDATE drive_nodes SET has_props = 1 WHERE id IN (SELECT node_id FROM drive_props);
