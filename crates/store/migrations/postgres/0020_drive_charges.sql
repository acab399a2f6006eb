-- Folders and dead properties count toward a drive's quota (issue 21):
-- a folder takes 512 bytes (drive::FOLDER_BYTES), a property the bytes
-- of its namespace, name and XML (drive::prop_bytes).
-- From now on the store charges them as they are made and gives them
-- back as they go; what drives hold already is charged once here. A
-- drive this puts over its quota takes no more until space is freed.
--
-- Properties of a drive's top folder were kept under the node id '',
-- the same for every drive, and never shown: they go.
DELETE FROM drive_props WHERE node_id = '';
UPDATE drives SET used_bytes = used_bytes
    + COALESCE((SELECT COUNT(*) * 512
                FROM drive_nodes n WHERE n.drive_id = drives.id AND n.is_dir = 1), 0)
    + COALESCE((SELECT SUM(octet_length(p.namespace) + octet_length(p.name) + octet_length(p.xml))
                FROM drive_props p JOIN drive_nodes n ON n.id = p.node_id
                WHERE n.drive_id = drives.id), 0);
