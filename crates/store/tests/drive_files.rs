//! A drive's files through the drive service over the real SQL store and
//! the local blob folder, on SQLite and PostgreSQL: folders and files,
//! overwrite, quota (before and while reading), delete, and that refused
//! or failed writes leave no file and no stray blob.

use std::sync::Arc;

use blobs::LocalBlobs;
use drive::{DeadProp, Drives, FileError, ListColumns, ListEntry, PropChange};
use identity::{Identity, IdentityConfig, ManualClock, PasswordHasher, Role, ServerKey};
use store::{Engine, SqlStore};
use tokio::io::AsyncReadExt;

const PASSWORD: &str = "violet tractor sunrise 42";
const MIB: u64 = 1024 * 1024;

fn blob_files(root: &std::path::Path) -> usize {
    walk(root)
        .into_iter()
        .filter(|p| !p.starts_with(root.join("tmp")))
        .count()
}

/// Temporary blobs, without the lock file that claims their folder.
fn temporary(root: &std::path::Path) -> usize {
    walk(&root.join("tmp"))
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn files_are_whole_counted_against_the_quota_and_freed() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, root) = one_drive(&url, Some(2 * MIB)).await;
        let (stranger, _) = drives
            .identity()
            .create_account("bo@example.org", "Bo", PASSWORD, None)
            .await
            .unwrap();

        drives.make_folder(&ana, id, "/Reports").await.unwrap();
        assert!(matches!(
            drives.make_folder(&ana, id, "/Reports").await,
            Err(FileError::Exists)
        ));
        assert!(matches!(
            drives.make_folder(&ana, id, "/Nope/Inner").await,
            Err(FileError::NotFound)
        ));
        let mut data: &[u8] = &[1u8; 40_000];
        let first = drives
            .put_file(&ana, id, "/Reports/q1.bin", &mut data, Some(40_000))
            .await
            .unwrap();
        assert_eq!(first.size, 40_000);
        assert_eq!(blob_files(&root), 1);
        let listed = drives.list(&ana, id, "/Reports").await.unwrap();
        assert_eq!(listed.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["q1.bin"]);

        // Overwrite: new contents, new ETag, the old blob is gone.
        let mut data: &[u8] = &[2u8; 50_000];
        let second = drives
            .put_file(&ana, id, "/Reports/q1.bin", &mut data, None)
            .await
            .unwrap();
        assert_ne!(first.etag, second.etag);
        assert_eq!(blob_files(&root), 1);
        let (node, mut reader) = drives.open_file(&ana, id, "/Reports/q1.bin").await.unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert_eq!((node.size, back.len(), back[0]), (50_000, 50_000, 2));
        assert_eq!(
            drives.access(&ana, id).await.unwrap().unwrap().0.used_bytes,
            50_000 + drive::FOLDER_BYTES
        );

        // Small files live in the database: no blob file, same contents,
        // charged to the quota like any other.
        let mut note: &[u8] = b"a small note";
        let small = drives
            .put_file(&ana, id, "/Reports/note.txt", &mut note, None)
            .await
            .unwrap();
        assert!(drive::is_inline(&small.blob_id));
        assert_eq!(blob_files(&root), 1);
        let (_, mut reader) = drives.open_file(&ana, id, "/Reports/note.txt").await.unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"a small note");
        drives.delete(&ana, id, "/Reports/note.txt").await.unwrap();
        assert_eq!(
            drives.access(&ana, id).await.unwrap().unwrap().0.used_bytes,
            50_000 + drive::FOLDER_BYTES
        );

        // The quota: refused up front when the size is known, and while
        // reading when it is not; nothing is left behind either way.
        let mut big: &[u8] = &vec![3u8; (2 * MIB) as usize];
        assert!(matches!(
            drives.put_file(&ana, id, "/big.bin", &mut big, Some(2 * MIB)).await,
            Err(FileError::InsufficientStorage)
        ));
        let mut big: &[u8] = &vec![3u8; (2 * MIB) as usize];
        assert!(matches!(
            drives.put_file(&ana, id, "/big.bin", &mut big, None).await,
            Err(FileError::InsufficientStorage)
        ));
        assert!(matches!(
            drives.stat(&ana, id, "/big.bin").await,
            Err(FileError::NotFound)
        ));
        assert_eq!(blob_files(&root), 1);
        assert_eq!(temporary(&root), 0);

        // Not a member: the drive does not exist for them.
        assert!(matches!(drives.list(&stranger, id, "/").await, Err(FileError::NoDrive)));
        assert!(matches!(
            drives.stat(&ana, id, "/a/../b").await,
            Err(FileError::InvalidPath(_))
        ));
        assert!(matches!(
            drives.delete(&ana, id, "/").await,
            Err(FileError::InvalidPath(_))
        ));

        // Paging a folder (as listings do) gives every entry once, in the
        // database's order, whatever the names.
        for name in ["b", "B", "a", "ñu", "Zeta", "año", "z z", "10", "9"] {
            drives.make_folder(&ana, id, &format!("/Reports/{name}")).await.unwrap();
        }
        let tree = drives.tree(&ana, id).await.unwrap();
        let folder = tree.stat("/Reports").await.unwrap();
        let mut paged = Vec::new();
        let mut after = String::new();
        loop {
            let page = tree.children_after(&folder, &after, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.name.clone();
            paged.extend(page.into_iter().map(|n| n.name));
        }
        let listed = names_in(&drives, &ana, id, "/Reports").await;
        assert_eq!(paged, listed);
        assert_eq!(paged.len(), 10);

        // Listing entries: the same pages, with only the columns asked
        // for, and an id only on entries that have dead properties.
        let mut note: &[u8] = b"listed";
        drives
            .put_file(&ana, id, "/Reports/zz.txt", &mut note, Some(6))
            .await
            .unwrap();
        let file = tree.stat("/Reports/zz.txt").await.unwrap();
        let marked = tree.stat("/Reports/año").await.unwrap();
        let color = DeadProp {
            namespace: "urn:x".into(),
            name: "color".into(),
            xml: r#"<color xmlns="urn:x">red</color>"#.into(),
        };
        tree.patch_props(&marked, &[PropChange::Set(color.clone())])
            .await
            .unwrap();
        for columns in [
            ListColumns::default(),
            ListColumns {
                created_at: true,
                checksums: true,
            },
        ] {
            let mut entries = Vec::new();
            let mut after = String::new();
            loop {
                let page = tree.entries_after(&folder, &after, 4, columns).await.unwrap();
                let Some(last) = page.last() else { break };
                after = last.name.clone();
                entries.extend(page);
            }
            let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
            let listed = names_in(&drives, &ana, id, "/Reports").await;
            assert_eq!((names.len(), names), (11, listed));
            let listed_file = entries.iter().find(|e| e.name == "zz.txt").unwrap();
            assert!(!listed_file.is_dir);
            assert_eq!((listed_file.size, listed_file.etag.as_str()), (6, file.etag.as_str()));
            assert_eq!(listed_file.modified_at, file.modified_at);
            if columns.checksums {
                assert!(listed_file.checksums.starts_with("SHA1:"), "{}", listed_file.checksums);
            } else {
                assert_eq!(listed_file.checksums, "");
            }
            assert_eq!(
                listed_file.created_at,
                if columns.created_at { file.created_at } else { 0 }
            );
            for entry in &entries {
                let props = tree.entry_props(entry).await.unwrap();
                if entry.name == "año" {
                    assert_eq!(entry.props_of.as_ref(), Some(&marked.id));
                    assert_eq!(props, vec![color.clone()]);
                } else {
                    assert_eq!(entry.props_of, None, "{}", entry.name);
                    assert!(props.is_empty());
                }
            }
        }
        // The flag follows the properties: a copy has them too, and a
        // node whose last one is removed has none.
        let with_props = |entries: Vec<drive::ListEntry>| -> Vec<(String, drive::NodeId)> {
            entries
                .into_iter()
                .filter_map(|e| e.props_of.map(|id| (e.name, id)))
                .collect()
        };
        tree.patch_props(&file, &[PropChange::Set(color.clone())])
            .await
            .unwrap();
        let copy = tree.copy_file("/Reports/zz.txt", "/Reports/zz copy.txt").await.unwrap();
        tree.patch_props(
            &marked,
            &[PropChange::Remove {
                namespace: "urn:x".into(),
                name: "color".into(),
            }],
        )
        .await
        .unwrap();
        let entries = tree
            .entries_after(&folder, "", 100, ListColumns::default())
            .await
            .unwrap();
        assert_eq!(
            with_props(entries),
            vec![
                ("zz copy.txt".to_owned(), copy.id.clone()),
                ("zz.txt".to_owned(), file.id.clone())
            ]
        );
        assert!(tree.stat("/Reports/zz copy.txt").await.unwrap().has_props);
        assert!(!tree.stat("/Reports/año").await.unwrap().has_props);
        assert_eq!(
            tree.entry_props(&ListEntry::from(&copy)).await.unwrap(),
            vec![color.clone()]
        );

        // Deleting a folder frees everything under it.
        drives.delete(&ana, id, "/Reports").await.unwrap();
        assert_eq!(drives.access(&ana, id).await.unwrap().unwrap().0.used_bytes, 0);
        assert_eq!(blob_files(&root), 0);
        assert!(drives.list(&ana, id, "/").await.unwrap().is_empty());
    }
}

/// A drive service over the store at `url`, with one member; (drives,
/// member, drive id, blob folder).
/// The names in a folder, as `Drives::list` gives them.
async fn names_in(drives: &Drives, account: &identity::Account, id: drive::DriveId, path: &str) -> Vec<String> {
    let nodes = drives.list(account, id, path).await.unwrap();
    nodes.into_iter().map(|n| n.name).collect()
}

async fn one_drive(url: &str, quota: Option<u64>) -> (Drives, identity::Account, drive::DriveId, std::path::PathBuf) {
    let store = SqlStore::open(url).await.unwrap();
    let identity = Identity::new(
        Arc::new(store.clone()),
        Arc::new(ManualClock::at(1_800_000_000_000)),
        PasswordHasher::owasp_minimum(),
        ServerKey::generate(),
        IdentityConfig::default(),
    );
    let org = identity.create_organization("Acme").await.unwrap();
    let (ana, _) = identity
        .create_account("ana@example.org", "Ana", PASSWORD, Some(("Acme", Role::User)))
        .await
        .unwrap();
    let root = store::testing::temp_dir("blobs");
    let drives = Drives::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(LocalBlobs::new(&root)),
        identity,
    );
    let drive = drives.create(None, &org.id, "Shared", quota).await.unwrap();
    (drives, ana, drive.id, root)
}

#[tokio::test]
async fn deep_paths_resolve_in_walks_and_known_folders_take_writes() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, _) = one_drive(&url, None).await;
        // Eleven folders: more than one walk query's worth of names.
        let mut path = String::new();
        for depth in 1..=11 {
            path.push_str(&format!("/level {depth}"));
            drives.make_folder(&ana, id, &path).await.unwrap();
        }
        let file = format!("{path}/deep.txt");
        let mut data: &[u8] = b"deep";
        drives.put_file(&ana, id, &file, &mut data, None).await.unwrap();
        let tree = drives.tree(&ana, id).await.unwrap();
        let found = tree.stat(&file).await.unwrap();
        assert_eq!((found.name.as_str(), found.size), ("deep.txt", 4));
        let folder = tree.stat(&path).await.unwrap();
        assert!(folder.is_dir && folder.name == "level 11");

        // Locating: the node and its folder; a free name keeps the
        // folder; a path through a file or a missing folder has neither.
        let located = tree.locate(&file).await.unwrap();
        assert_eq!(located.node.unwrap().id, found.id);
        assert_eq!(located.parent.as_ref().unwrap().id, folder.id);
        let free = tree.locate(&format!("{path}/new.txt")).await.unwrap();
        assert!(free.node.is_none());
        let parent = free.parent.unwrap();
        assert_eq!(parent.id, folder.id);
        for nowhere in [format!("{file}/inside"), format!("{path}/missing/new.txt")] {
            let located = tree.locate(&nowhere).await.unwrap();
            assert!(located.node.is_none() && located.parent.is_none(), "{nowhere}");
        }
        let top = tree.locate("/level 1").await.unwrap();
        assert!(top.parent.unwrap().id.is_top(), "the top folder holds it");
        assert!(matches!(
            tree.stat(&format!("{file}/inside")).await,
            Err(FileError::NotFound)
        ));

        // Writing into the folder located: stored where the path says.
        let mut write = tree
            .begin_write_in(parent.clone(), "new.txt", None, Some(3), false)
            .await
            .unwrap();
        write.write(b"new").await.unwrap();
        write.commit(None, None, None).await.unwrap();
        assert_eq!(tree.stat(&format!("{path}/new.txt")).await.unwrap().size, 3);
        // What was read is stale now: the commit refuses, nothing changes.
        let mut stale = tree
            .begin_write_in(parent.clone(), "new.txt", None, None, false)
            .await
            .unwrap();
        stale.write(b"other").await.unwrap();
        assert!(matches!(stale.commit(None, None, None).await, Err(FileError::Conflict)));
        let (_, mut reader) = drives.open_file(&ana, id, &format!("{path}/new.txt")).await.unwrap();
        let mut kept = Vec::new();
        reader.read_to_end(&mut kept).await.unwrap();
        assert_eq!(kept, b"new");
        // Writing by path: a missing folder, or a file as the folder.
        assert!(matches!(
            tree.begin_write(&format!("{path}/missing/x"), None, false).await,
            Err(FileError::NotFound)
        ));
        assert!(matches!(
            tree.begin_write(&format!("{file}/x"), None, false).await,
            Err(FileError::NotAFolder)
        ));
        assert!(matches!(
            tree.begin_write("/", None, false).await,
            Err(FileError::InvalidPath(_))
        ));
        // Names with a slash, or a file as the folder, are refused.
        assert!(matches!(
            tree.begin_write_in(parent, "a/b", None, None, false).await,
            Err(FileError::InvalidPath(_))
        ));
        assert!(matches!(
            tree.begin_write_in(found, "x", None, None, false).await,
            Err(FileError::NotAFolder)
        ));
    }
}

#[tokio::test]
async fn files_committed_together_keep_their_own_outcomes() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, root) = one_drive(&url, Some(MIB)).await;
        let tree = drives.tree(&ana, id).await.unwrap();
        // Two writers of one new name, both started before either ends:
        // the second to commit loses the race.
        let mut writes = Vec::new();
        for i in 0..2u8 {
            let mut write = tree.begin_write("/same.bin", None, false).await.unwrap();
            write.write(&[i; 1000]).await.unwrap();
            writes.push(write);
        }
        // Twenty files of 60,000 bytes: 17 fit beside it in 1 MiB.
        for i in 0..20u8 {
            let mut write = tree.begin_write(&format!("/f{i:02}.bin"), None, false).await.unwrap();
            write.write(&vec![i; 60_000]).await.unwrap();
            writes.push(write);
        }
        // All committed at once: the commit queue takes them in batches.
        let commits: Vec<_> = writes
            .into_iter()
            .map(|write| tokio::spawn(write.commit(None, None, None)))
            .collect();
        let mut outcomes = Vec::new();
        for commit in commits {
            outcomes.push(commit.await.unwrap());
        }
        let same: Vec<_> = outcomes.drain(..2).collect();
        assert_eq!(same.iter().filter(|o| o.is_ok()).count(), 1, "{engine:?}");
        assert!(same.iter().any(|o| matches!(o, Err(FileError::Conflict))), "{engine:?}");
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 17, "{engine:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Err(FileError::InsufficientStorage)))
                .count(),
            3,
            "{engine:?}"
        );
        // The quota counts exactly what is stored, and nothing else remains.
        let (used, _) = tree.usage().await.unwrap();
        assert_eq!(used, 1000 + 17 * 60_000, "{engine:?}");
        let listed = drives.list(&ana, id, "/").await.unwrap();
        assert_eq!(listed.len(), 18);
        assert_eq!(listed.iter().map(|n| n.size).sum::<u64>(), used);
        assert_eq!(blob_files(&root), 17);
        assert_eq!(temporary(&root), 0);
        let (_, mut reader) = drives.open_file(&ana, id, "/same.bin").await.unwrap();
        let mut kept = Vec::new();
        reader.read_to_end(&mut kept).await.unwrap();
        assert!(kept == [0u8; 1000] || kept == [1u8; 1000]);
        // Small files (kept in the database) past the quota: 27 of 30 fit
        // in the 27,576 bytes left, and only theirs are kept.
        let mut writes = Vec::new();
        for i in 0..30u8 {
            let mut write = tree
                .begin_write(&format!("/small{i:02}.txt"), None, false)
                .await
                .unwrap();
            write.write(&[i; 1000]).await.unwrap();
            writes.push(write);
        }
        let commits: Vec<_> = writes
            .into_iter()
            .map(|write| tokio::spawn(write.commit(None, None, None)))
            .collect();
        let mut stored = 0;
        for commit in commits {
            match commit.await.unwrap() {
                Ok(_) => stored += 1,
                Err(FileError::InsufficientStorage) => {}
                Err(e) => panic!("{engine:?}: {e}"),
            }
        }
        assert_eq!(stored, 27, "{engine:?}");
        let (used, _) = tree.usage().await.unwrap();
        assert_eq!(used, 1000 + 17 * 60_000 + 27 * 1000, "{engine:?}");
        assert_eq!(drives.list(&ana, id, "/").await.unwrap().len(), 18 + 27, "{engine:?}");
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let inline: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_inline")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(inline, 1 + 27, "{engine:?}: only the stored small files keep contents");
        pool.close().await;
    }
}

/// A file of `size` bytes of `byte` written at `path` and committed.
async fn write_file(tree: drive::DriveTree, path: String, byte: u8, size: usize) -> Result<(), FileError> {
    let mut write = tree.begin_write(&path, None, false).await?;
    write.write(&vec![byte; size]).await?;
    write.commit(None, None, None).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_files_replacements_and_other_writes_at_the_same_moment_all_land() {
    // On SQLite, batches of new files are committed on a connection of
    // their own, and batches with replacements through the writer that
    // every other write uses: none of them may fail or be lost for meeting
    // the others.
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, _root) = one_drive(&url, Some(MIB)).await;
        let tree = drives.tree(&ana, id).await.unwrap();
        // Four writers of new files and four makers of folders, each
        // going on one after another, so that they keep meeting.
        let mut writes = Vec::new();
        for w in 0..4u8 {
            let (files, folders) = (tree.clone(), tree.clone());
            writes.push(tokio::spawn(async move {
                for i in (w * 15)..(w * 15 + 15) {
                    write_file(files.clone(), format!("/r{i}.txt"), i, 100).await?;
                }
                Ok(())
            }));
            writes.push(tokio::spawn(async move {
                for i in (w * 15)..(w * 15 + 15) {
                    folders.make_folder(&format!("/d{i}")).await?;
                }
                Ok(())
            }));
        }
        for write in writes.drain(..) {
            write
                .await
                .unwrap()
                .unwrap_or_else(|e: FileError| panic!("{engine:?}: {e}"));
        }
        // Then replacements of those files while new files are written.
        for i in 0..60u8 {
            writes.push(tokio::spawn(write_file(
                tree.clone(),
                format!("/r{i}.txt"),
                100 + i,
                200,
            )));
            writes.push(tokio::spawn(write_file(tree.clone(), format!("/d{i}/n.txt"), i, 300)));
        }
        for write in writes {
            write.await.unwrap().unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        }
        let (used, _) = tree.usage().await.unwrap();
        assert_eq!(used, 60 * 200 + 60 * 300 + 60 * drive::FOLDER_BYTES, "{engine:?}");
        assert_eq!(drives.list(&ana, id, "/").await.unwrap().len(), 120, "{engine:?}");
        for (path, contents) in [("/r3.txt", vec![103u8; 200]), ("/d7/n.txt", vec![7u8; 300])] {
            let (_, mut reader) = drives.open_file(&ana, id, path).await.unwrap();
            let mut kept = Vec::new();
            reader.read_to_end(&mut kept).await.unwrap();
            assert_eq!(kept, contents, "{engine:?}: {path}");
        }
    }
}

#[tokio::test]
async fn opening_a_drive_tells_whether_anything_on_it_is_locked() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, _) = one_drive(&url, None).await;
        let drive::Opened { tree, locked, .. } = drives.open(&ana, id, "").await.unwrap();
        assert!(!locked, "{engine:?}: a new drive has no locks");
        let lock = drive::Lock {
            token: "urn:uuid:8c5b1d0e-0000-4000-8000-000000000001".to_owned(),
            path: "/Reports".to_owned(),
            principal: "ana@example.org".to_owned(),
            owner_xml: String::new(),
            expires_at: 0,
            timeout_secs: 60,
            shared: false,
            deep: true,
        };
        tree.lock(lock.clone()).await.unwrap().unwrap();
        let locked = drives.open(&ana, id, "").await.unwrap().locked;
        assert!(locked, "{engine:?}: a live lock is seen when the drive is opened");
        assert!(tree.unlock(&lock.path, &lock.token, &lock.principal).await.unwrap());
        let locked = drives.open(&ana, id, "").await.unwrap().locked;
        assert!(!locked, "{engine:?}: an unlocked drive reads as such");
    }
}

#[tokio::test]
async fn opening_a_drive_at_a_path_finds_what_a_walk_finds() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, _) = one_drive(&url, None).await;
        let tree = drives.tree(&ana, id).await.unwrap();
        tree.make_folder("/Año 2026").await.unwrap();
        let mut data: &[u8] = b"minutes";
        drives
            .put_file(&ana, id, "/Año 2026/notes.txt", &mut data, Some(7))
            .await
            .unwrap();
        let deep: String = (0..10).map(|i| format!("/d{i}")).collect();
        for i in 1..=10 {
            let path: String = (0..i).map(|i| format!("/d{i}")).collect();
            tree.make_folder(&path).await.unwrap();
        }
        for path in [
            "",
            "/",
            "/Año 2026",
            "/Año 2026/",
            "/Año 2026/notes.txt",
            "/Año 2026/missing.txt",
            "/missing/notes.txt",
            "/Año 2026/notes.txt/below",
            "/d0/d1/d2/d3/d4/d5/d6/d7",
        ] {
            let opened = drives.open(&ana, id, path).await.unwrap();
            let located = opened.located.expect("a short path is walked with the access check");
            let walked = tree.locate(path).await.unwrap();
            assert_eq!(located.node, walked.node, "{engine:?} {path}");
            assert_eq!(located.parent, walked.parent, "{engine:?} {path}");
        }
        let opened = drives.open(&ana, id, "/Año 2026/notes.txt").await.unwrap();
        assert_eq!(opened.located.unwrap().node.unwrap().size, 7, "{engine:?}");
        let missing = drives.open(&ana, id, "/Año 2026/missing.txt").await.unwrap();
        let missing = missing.located.unwrap();
        assert!(missing.node.is_none(), "{engine:?}");
        assert_eq!(missing.parent.unwrap().name, "Año 2026", "{engine:?}");
        // Deeper than one walk, or not a valid path: the access check
        // alone; the request walks (or refuses) the path itself.
        let opened = drives.open(&ana, id, &deep).await.unwrap();
        assert!(opened.located.is_none(), "{engine:?}");
        let opened = drives.open(&ana, id, "/a/../b").await.unwrap();
        assert!(opened.located.is_none(), "{engine:?}");
        // Someone outside the drive's organization learns nothing.
        let identity = Identity::new(
            Arc::new(SqlStore::open(&url).await.unwrap()),
            Arc::new(ManualClock::at(1_800_000_000_000)),
            PasswordHasher::owasp_minimum(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        let (outsider, _) = identity
            .create_account("eve@example.org", "Eve", PASSWORD, None)
            .await
            .unwrap();
        assert!(
            matches!(drives.open(&outsider, id, "/Año 2026").await, Err(FileError::NoDrive)),
            "{engine:?}"
        );
    }
}

/// Drive numbers come from URLs; one past what a column holds (2^63 and
/// up) names no drive, on every way in, instead of failing the store.
#[tokio::test]
async fn drive_numbers_no_column_holds_name_no_drive() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, _root) = one_drive(&url, None).await;
        assert_eq!(names_in(&drives, &ana, id, "/").await, Vec::<String>::new());
        for huge in [1u64 << 63, u64::MAX].map(drive::DriveId::new) {
            assert!(drives.access(&ana, huge).await.unwrap().is_none(), "{engine:?} {huge}");
            assert!(
                matches!(drives.list(&ana, huge, "/").await, Err(FileError::NoDrive)),
                "{engine:?} {huge}"
            );
            assert!(
                matches!(drives.members(None, huge).await, Err(drive::DriveError::NotFound)),
                "{engine:?} {huge}"
            );
            assert!(
                matches!(
                    drives.imports(&ana, huge).await,
                    Err(drive::ImportError::File(FileError::NoDrive))
                ),
                "{engine:?} {huge}"
            );
        }
    }
}

/// Issue 21, item 6c, at the store: a folder and each dead property are
/// charged in the transaction that makes them, refused past the quota
/// (nothing of the refused change stays), given back by a deletion, and
/// charged again to a copy that keeps them.
#[tokio::test]
async fn folders_and_dead_properties_are_charged_and_given_back() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let (drives, ana, id, _) = one_drive(&url, Some(MIB)).await;
        let tree = drives.tree(&ana, id).await.unwrap();
        let prop = |name: String| DeadProp {
            namespace: "urn:x".into(),
            xml: format!(r#"<{name} xmlns="urn:x">{}</{name}>"#, "v".repeat(60_000)),
            name,
        };
        let folder = tree.make_folder("/a").await.unwrap();
        assert_eq!(tree.usage().await.unwrap().0, drive::FOLDER_BYTES, "{engine:?}");
        let first = prop("p0".into());
        tree.patch_props(&folder, &[PropChange::Set(first.clone())])
            .await
            .unwrap();
        let charged = drive::FOLDER_BYTES + first.charged_bytes();
        assert_eq!(tree.usage().await.unwrap().0, charged, "{engine:?}");

        // Until the quota refuses one.
        let mut refused = false;
        for i in 1..20 {
            let before = tree.usage().await.unwrap().0;
            match tree
                .patch_props(&folder, &[PropChange::Set(prop(format!("p{i}")))])
                .await
            {
                Ok(()) => {}
                Err(FileError::InsufficientStorage) => {
                    assert_eq!(tree.usage().await.unwrap().0, before, "{engine:?}");
                    assert!(
                        !tree
                            .props(&tree.stat("/a").await.unwrap())
                            .await
                            .unwrap()
                            .iter()
                            .any(|p| p.name == format!("p{i}"))
                    );
                    refused = true;
                    break;
                }
                Err(e) => panic!("{engine:?}: {e}"),
            }
        }
        assert!(refused, "{engine:?}: properties were stored past the quota");
        assert!(tree.usage().await.unwrap().0 <= MIB);

        // A deletion gives the folder and all its properties back.
        tree.delete("/a").await.unwrap();
        assert_eq!(tree.usage().await.unwrap().0, 0, "{engine:?}");

        // A copy keeps the properties, and is charged for them.
        let mut data: &[u8] = b"12345";
        drives.put_file(&ana, id, "/f.txt", &mut data, Some(5)).await.unwrap();
        let file = tree.stat("/f.txt").await.unwrap();
        let small = DeadProp {
            namespace: "urn:x".into(),
            name: "s".into(),
            xml: r#"<s xmlns="urn:x">1</s>"#.into(),
        };
        tree.patch_props(&file, &[PropChange::Set(small.clone())])
            .await
            .unwrap();
        tree.copy_file("/f.txt", "/g.txt").await.unwrap();
        assert_eq!(
            tree.usage().await.unwrap().0,
            2 * (5 + small.charged_bytes()),
            "{engine:?}"
        );
        let removed = [PropChange::Remove {
            namespace: "urn:x".into(),
            name: "s".into(),
        }];
        tree.patch_props(&file, &removed).await.unwrap();
        assert_eq!(
            tree.usage().await.unwrap().0,
            2 * 5 + small.charged_bytes(),
            "{engine:?}"
        );
    }
}
