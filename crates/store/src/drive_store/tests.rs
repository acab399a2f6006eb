//! The drive store on both engines: walks, commit queues, deadlock retries
//! and races with deletions.

use drive::{Node, NodeId, PutOutcome};
use sqlx::Row;

use super::postgres::{NEW_FILES_PG, insert_new_files_pg};
use super::rows::signed;
use super::walk::{WALK_DEPTH, level_columns, made_once, member_walk_sql, walk_sql};
use super::*;
use crate::SqlStore;

/// Whether a folder was made.
fn stored(outcome: PutOutcome) -> bool {
    matches!(outcome, PutOutcome::Stored { .. })
}

/// How each engine reads the nodes of a three-name walk on tables it
/// has no statistics for, the lines of the plan that look nodes up.
/// On PostgreSQL, as a prepared statement on a new installation
/// keeps it: planned while the tables were empty, used after the
/// first uploads filled them.
async fn walk_plan(engine: crate::Engine) -> Option<Vec<String>> {
    let url = crate::testing::database_url(engine).await?;
    let store = SqlStore::open(&url).await.unwrap();
    let sql = walk_sql(engine, 3);
    let fill = "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
        VALUES ($1, 1, $2, $3, 0, 0, 0)";
    let mut conn = store.pool.acquire().await.unwrap();
    for setup in [
        "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
        "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 1000, 0)",
    ] {
        sqlx::query(setup).execute(&mut *conn).await.unwrap();
    }
    let lines: Vec<String> = match engine {
        crate::Engine::Postgres => {
            sqlx::query(sqlx::AssertSqlSafe(format!("PREPARE walk AS {sql}")))
                .execute(&mut *conn)
                .await
                .unwrap();
            // After five runs PostgreSQL keeps a generic plan.
            for _ in 0..6 {
                sqlx::query("EXECUTE walk(1, '', 'a', 'b', 'c')")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            for i in 0..2000 {
                // Ten folders at the top, the rest spread in them.
                let (folder, name) = if i < 10 {
                    (String::new(), format!("name-{i}"))
                } else {
                    (format!("node-{}", i % 10), format!("name-{}", i / 10))
                };
                sqlx::query(fill)
                    .bind(format!("node-{i}"))
                    .bind(folder)
                    .bind(name)
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            sqlx::query_scalar("EXPLAIN EXECUTE walk(1, '', 'name-0', 'name-5', 'c')")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
        }
        crate::Engine::Sqlite => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(1_i64)
                .bind("")
                .bind("a")
                .bind("b")
                .bind("c")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap()).collect()
        }
    };
    drop(conn);
    store.close().await;
    Some(
        lines
            .into_iter()
            .filter(|l| l.contains(" n") || l.contains("Cond"))
            .collect(),
    )
}

#[tokio::test]
async fn the_has_props_migration_marks_the_nodes_that_already_had_properties() {
    for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
        let Some(url) = crate::testing::database_url(engine).await else {
            continue;
        };
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let migrator = || match engine {
            crate::Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
            crate::Engine::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        // The schema as it was before the column.
        let mut before = migrator();
        before.migrations = before.migrations.iter().filter(|m| m.version < 17).cloned().collect();
        before.run(&pool).await.unwrap();
        for setup in [
            "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
            "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 1000, 0)",
            "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
             VALUES ('with', 1, '', 'with', 0, 0, 0), ('without', 1, '', 'without', 0, 0, 0)",
            "INSERT INTO drive_props (node_id, namespace, name, xml) VALUES ('with', 'urn:x', 'p', '<p/>')",
        ] {
            sqlx::query(setup).execute(&pool).await.unwrap();
        }
        migrator().run(&pool).await.unwrap();
        let marked: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, CAST(has_props AS BIGINT) FROM drive_nodes ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            marked,
            [("with".to_owned(), 1), ("without".to_owned(), 0)],
            "{engine:?}"
        );
        pool.close().await;
    }
}

#[test]
fn queries_made_once_are_the_ones_asked_for() {
    static MADE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
        for depth in 0..=WALK_DEPTH {
            assert_eq!(
                made_once(&MADE, member_walk_sql, engine, depth),
                member_walk_sql(engine, depth)
            );
        }
    }
    for i in 1..=WALK_DEPTH {
        assert_eq!(level_columns(i)[4], format!("l{i}_size"));
    }
}

#[tokio::test]
async fn a_walk_looks_each_name_up_in_its_folder_even_without_statistics() {
    for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
        let Some(plan) = walk_plan(engine).await else {
            continue;
        };
        let text = plan.join("\n");
        // Each of the three names found through the index, by drive,
        // folder and name.
        let lookups = match engine {
            // `SEARCH n2 USING INDEX … (drive_id=? AND parent_id=? AND name=?)`
            crate::Engine::Sqlite => plan
                .iter()
                .filter(|l| l.starts_with("SEARCH n") && l.contains("(drive_id=? AND parent_id=? AND name=?)"))
                .count(),
            // `Index Cond: ((drive_id = $1) AND (parent_id = drive_nodes.id) AND (name = $4))`
            crate::Engine::Postgres => plan
                .iter()
                .filter(|l| {
                    l.contains("Index Cond: ((drive_id = ")
                        && l.contains("AND (parent_id = ")
                        && l.contains("AND (name = ")
                })
                .count(),
        };
        assert_eq!(lookups, 3, "{engine:?}: a name is not looked up by its folder:\n{text}");
    }
}

/// A new file of drive 1 for [`insert_new_files_pg`], and the
/// receiver its outcome would go to.
fn new_file(name: &str, size: u64, inline: bool) -> FileCommit {
    let (reply, _) = tokio::sync::oneshot::channel();
    FileCommit {
        node: Node {
            id: NodeId::new(format!("node-{name}")),
            drive_id: drive::DriveId::new(1),
            parent_id: NodeId::top(),
            name: name.to_owned(),
            is_dir: false,
            size,
            blob_id: format!("blob-{name}"),
            etag: format!("etag-{name}"),
            created_at: 1,
            modified_at: 2,
            checksums: String::new(),
            has_props: false,
        },
        replaced: None,
        inline: inline.then(|| vec![7; usize::try_from(size).unwrap()]),
        reply,
    }
}

/// Returns once a statement whose text starts with `start` waits for
/// a row another transaction holds; fails if `task`, which runs it,
/// ends first or it never waits.
async fn until_waiting_for_a_row<T>(pg: &sqlx::PgPool, start: &str, task: &tokio::task::JoinHandle<T>) {
    let pattern = format!("{start}%");
    for _ in 0..1000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(pg)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            !task.is_finished(),
            "`{start}…` ended without waiting for the other writer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("`{start}…` never waited for the other writer");
}

/// A store on `engine` with organization `org` and drive 1 (quota
/// 10,000 bytes), or `None` without that engine's database.
async fn store_with_drive(engine: crate::Engine) -> Option<SqlStore> {
    let url = crate::testing::database_url(engine).await?;
    let store = SqlStore::open(&url).await.unwrap();
    for setup in [
        "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
        "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 10000, 0)",
    ] {
        sqlx::query(setup).execute(&*store.writer.turn().await).await.unwrap();
    }
    Some(store)
}

/// Drive 1's used bytes and node ids.
async fn drive_state(store: &SqlStore) -> (i64, Vec<String>) {
    let used = sqlx::query_scalar("SELECT used_bytes FROM drives WHERE id = 1")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    let ids = sqlx::query_scalar("SELECT id FROM drive_nodes ORDER BY id")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    (used, ids)
}

fn folder(id: &str, parent_id: &NodeId) -> Node {
    Node {
        is_dir: true,
        size: 0,
        blob_id: String::new(),
        parent_id: parent_id.clone(),
        ..new_file(id, 0, false).node
    }
}

#[tokio::test]
async fn nothing_is_written_into_a_folder_that_is_gone() {
    for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
        let Some(store) = store_with_drive(engine).await else {
            continue;
        };
        let gone = folder("gone", &NodeId::top());
        assert!(stored(store.create_folder(&gone).await.unwrap()));
        let top = new_file("top", 100, true).node;
        assert_eq!(
            store.put_file(&top, None, Some(&[7; 100])).await.unwrap(),
            PutOutcome::Stored { replaced_blob: None }
        );
        store.delete_tree(&gone).await.unwrap();
        assert_eq!(
            drive_state(&store).await,
            (100, vec!["node-top".to_owned()]),
            "{engine:?}"
        );

        // An upload into the folder, small or not, a folder made in
        // it, a node moved or copied into it: each is refused and
        // changes nothing.
        for (name, inline) in [("small", true), ("large", false)] {
            let mut file = new_file(name, 50, inline);
            file.node.parent_id = gone.id.clone();
            let outcome = store.put_file(&file.node, None, file.inline.as_deref()).await.unwrap();
            assert_eq!(outcome, PutOutcome::Conflict, "{engine:?} {name}");
        }
        assert!(
            !stored(store.create_folder(&folder("inner", &gone.id)).await.unwrap()),
            "{engine:?}"
        );
        assert!(!store.move_node(&top, &gone.id, "moved").await.unwrap(), "{engine:?}");
        let copy = Node {
            id: NodeId::new("node-copy"),
            parent_id: gone.id.clone(),
            ..top.clone()
        };
        assert_eq!(
            store.copy_file(&top, &copy).await.unwrap(),
            PutOutcome::Conflict,
            "{engine:?}"
        );
        assert_eq!(
            drive_state(&store).await,
            (100, vec!["node-top".to_owned()]),
            "{engine:?}"
        );

        // Into a folder that is there, all of them work.
        let here = folder("here", &NodeId::top());
        assert!(stored(store.create_folder(&here).await.unwrap()));
        let mut file = new_file("small", 50, true);
        file.node.parent_id = here.id.clone();
        let outcome = store.put_file(&file.node, None, file.inline.as_deref()).await.unwrap();
        assert_eq!(outcome, PutOutcome::Stored { replaced_blob: None }, "{engine:?}");
        assert!(stored(store.create_folder(&folder("inner", &here.id)).await.unwrap()));
        assert!(store.move_node(&top, &here.id, "moved").await.unwrap());
        let copy = Node {
            parent_id: here.id.clone(),
            ..copy
        };
        assert_eq!(
            store.copy_file(&top, &copy).await.unwrap(),
            PutOutcome::Stored { replaced_blob: None }
        );
        // Two folders ("here", "inner") and the files' 250 bytes.
        let folders = 2 * signed(drive::FOLDER_BYTES).unwrap();
        assert_eq!(drive_state(&store).await.0, 250 + folders, "{engine:?}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_group_of_new_files_looks_its_folders_and_names_up_even_without_statistics() {
    let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
        return;
    };
    let pg = store.native.pg().cloned().unwrap();
    let mut conn = pg.acquire().await.unwrap();
    // A new drive's first folder and its first files.
    let fill = "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
         SELECT 'node-' || i, 1, CASE WHEN i = 0 THEN '' ELSE 'node-0' END, 'name-' || i, CASE WHEN i = 0 THEN 1 ELSE 0 END,
            0, 0
         FROM generate_series($1::int8, $2::int8) i";
    sqlx::query(fill)
        .bind(0_i64)
        .bind(10_i64)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PREPARE files(int8, text[], text[], text[], int8[], text[], text[], int8[], int8[], text[], bytea[],
            bool[], int8) AS {NEW_FILES_PG}"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    // Planned while the tables are nearly empty; after five runs
    // PostgreSQL keeps a generic plan. The folder is missing: nothing
    // is stored.
    let run = "files(1, '{a}', '{missing}', '{a}', '{1}', '{b}', '{e}', '{1}', '{1}', '{\"\"}', '{\"\\\\x00\"}',
        '{true}', 1)";
    for _ in 0..6 {
        let stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXECUTE {run}")))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(stored, 0);
    }
    sqlx::query(fill)
        .bind(11_i64)
        .bind(5000_i64)
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE {run}")))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert!(
        !plan.iter().any(|line| line.contains("Seq Scan on drive_nodes")),
        "{}",
        plan.join("\n")
    );
    drop(conn);
    store.close().await;
}

/// A transaction of another writer that holds `first`'s row, starts
/// `task` and, once `task` waits for that row (its statement starting
/// with `waiting`), asks for `second`'s, which `task` holds: a
/// deadlock, which PostgreSQL breaks by aborting `task`'s transaction
/// (it waited first; this one waits 10 s before looking). Gives both
/// rows back once it has them; `task`.
async fn deadlock<T>(
    pg: &sqlx::PgPool,
    [first, second]: [&NodeId; 2],
    waiting: &str,
    task: impl FnOnce() -> tokio::task::JoinHandle<T>,
) -> tokio::task::JoinHandle<T> {
    let mut other = pg.begin().await.unwrap();
    sqlx::query("SET LOCAL deadlock_timeout = '10s'")
        .execute(&mut *other)
        .await
        .unwrap();
    let lock = "SELECT 1 FROM drive_nodes WHERE id = $1 FOR UPDATE";
    sqlx::query(lock)
        .bind(first.as_str())
        .execute(&mut *other)
        .await
        .unwrap();
    let task = task();
    until_waiting_for_a_row(pg, waiting, &task).await;
    sqlx::query(lock)
        .bind(second.as_str())
        .execute(&mut *other)
        .await
        .unwrap();
    other.rollback().await.unwrap();
    task
}

#[tokio::test]
async fn postgres_runs_a_move_or_a_deletion_again_when_it_aborts_it_to_break_a_deadlock() {
    let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
        return;
    };
    let pg = store.native.pg().cloned().unwrap();
    let top = folder("top", &NodeId::top());
    let into = folder("into", &top.id);
    assert!(stored(store.create_folder(&top).await.unwrap()));
    assert!(stored(store.create_folder(&into).await.unwrap()));
    let mut file = new_file("file", 100, true).node;
    file.parent_id = top.id.clone();
    store.put_file(&file, None, Some(&[7; 100])).await.unwrap();

    // The move holds the folder it moves into and waits for the file,
    // which the other writer holds before asking for the folder.
    let moving = deadlock(&pg, [&file.id, &into.id], "UPDATE drive_nodes SET parent_id", || {
        let (store, file, into) = (store.clone(), file.clone(), into.id.clone());
        tokio::spawn(async move { store.move_node(&file, &into, "moved").await })
    })
    .await;
    assert!(moving.await.unwrap().unwrap(), "the move, run again, is done");
    file.parent_id = into.id.clone();
    file.name = "moved".into();

    // The deletion holds the top folder and waits for the file, which
    // the other writer holds before asking for the top folder.
    let deleting = deadlock(&pg, [&file.id, &top.id], "DELETE FROM drive_nodes", || {
        let (store, top) = (store.clone(), top.clone());
        tokio::spawn(async move { store.delete_tree(&top).await })
    })
    .await;
    deleting.await.unwrap().unwrap();
    assert_eq!(drive_state(&store).await, (0, Vec::<String>::new()));
    store.close().await;
}

#[tokio::test]
async fn postgres_commits_a_group_of_files_aborted_for_a_deadlock_file_by_file() {
    let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
        return;
    };
    let pg = store.native.pg().cloned().unwrap();
    let (a, b) = (folder("a", &NodeId::top()), folder("b", &NodeId::top()));
    assert!(stored(store.create_folder(&a).await.unwrap()));
    assert!(stored(store.create_folder(&b).await.unwrap()));
    // The group holds its folders one after the other, in an order of
    // PostgreSQL's choosing; the other writer takes them one way, then
    // the other, and one of the two meets the group the other way
    // round.
    for (round, (first, second)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
        let (files, queue) = tokio::sync::mpsc::unbounded_channel();
        let mut answers = Vec::new();
        for (name, into) in [("x", &a), ("y", &b)] {
            let mut file = new_file(&format!("{name}{round}"), 10, true);
            file.node.parent_id = into.id.clone();
            let (reply, answer) = tokio::sync::oneshot::channel();
            file.reply = reply;
            files.send(file).unwrap();
            answers.push(answer);
        }
        drop(files);
        let committing = deadlock(&pg, [&first.id, &second.id], "WITH input AS", || {
            tokio::spawn(commit_files_on_postgres(store.writer.clone(), pg.clone(), queue))
        })
        .await;
        committing.await.unwrap();
        for answer in answers {
            assert_eq!(
                answer.await.unwrap().unwrap(),
                PutOutcome::Stored { replaced_blob: None },
                "round {round}"
            );
        }
    }
    let (used, nodes) = drive_state(&store).await;
    let folders = 2 * signed(drive::FOLDER_BYTES).unwrap();
    assert_eq!((used, nodes.len()), (40 + folders, 6));
    store.close().await;
}

#[tokio::test]
async fn a_folder_deleted_while_a_file_is_written_into_it_takes_the_file_along_on_postgres() {
    let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
        return;
    };
    let pg = store.native.pg().cloned().unwrap();
    let gone = folder("gone", &NodeId::top());
    assert!(stored(store.create_folder(&gone).await.unwrap()));

    // Another process writes a file into the folder, as the commit
    // of an upload does: the folder's row share-locked, the file
    // charged and inserted. It has not committed when the deletion
    // reads the folder's tree.
    let mut other = pg.begin().await.unwrap();
    let mut file = new_file("late", 40, true);
    file.node.parent_id = gone.id.clone();
    // Small contents' ids start with `i`.
    file.node.blob_id = "ilate".into();
    let stored = sqlx::query_scalar::<_, i64>(NEW_FILES_PG)
        .bind(1_i64)
        .bind(vec![file.node.id.as_str()])
        .bind(vec![gone.id.as_str()])
        .bind(vec!["late"])
        .bind(vec![40_i64])
        .bind(vec![file.node.blob_id.as_str()])
        .bind(vec!["etag"])
        .bind(vec![1_i64])
        .bind(vec![2_i64])
        .bind(vec![""])
        .bind(vec![file.inline.as_deref().unwrap()])
        .bind(vec![true])
        .bind(40_i64)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    let deleting = {
        let store = store.clone();
        let gone = gone.clone();
        tokio::spawn(async move { store.delete_tree(&gone).await })
    };
    // The deletion waits for the folder's row; then the write commits.
    until_waiting_for_a_row(&pg, "DELETE FROM drive_nodes", &deleting).await;
    other.commit().await.unwrap();
    deleting.await.unwrap().unwrap();
    // The file went with its folder, and its bytes with it.
    assert_eq!(drive_state(&store).await, (0, Vec::<String>::new()));
    let contents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_inline")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(contents, 0);
    store.close().await;
}

#[tokio::test]
async fn a_group_of_new_files_is_stored_whole_or_not_at_all_on_postgres() {
    let Some(store) = store_with_drive(crate::Engine::Postgres).await else {
        return;
    };
    let pg = store.native.pg().cloned().unwrap();
    let state = || async {
        let used: i64 = sqlx::query_scalar("SELECT used_bytes FROM drives WHERE id = 1")
            .fetch_one(&pg)
            .await
            .unwrap();
        let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_nodes")
            .fetch_one(&pg)
            .await
            .unwrap();
        let inline: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_inline")
            .fetch_one(&pg)
            .await
            .unwrap();
        (used, nodes, inline)
    };
    let (a, b) = (new_file("a", 1000, true), new_file("b", 2000, false));
    assert!(insert_new_files_pg(&pg, &[&a, &b]).await.unwrap());
    assert_eq!(state().await, (3000, 2, 1));
    let stored: (String, i64, String, i64, i64) = sqlx::query_as(
        "SELECT n.parent_id, n.size, n.etag, n.created_at, n.modified_at
         FROM drive_nodes n JOIN drive_inline i ON i.blob_id = n.blob_id WHERE n.name = 'a'",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(stored, (String::new(), 1000, "etag-a".to_owned(), 1, 2));

    // One name of the group taken, or the group past the quota:
    // nothing of it is stored or charged.
    let (c, taken) = (new_file("c", 10, true), new_file("a", 10, true));
    assert!(!insert_new_files_pg(&pg, &[&c, &taken]).await.unwrap());
    let (d, big) = (new_file("d", 10, false), new_file("e", 7000, false));
    assert!(!insert_new_files_pg(&pg, &[&d, &big]).await.unwrap());
    assert_eq!(state().await, (3000, 2, 1));

    // A name taken by a writer whose transaction commits while the
    // statement waits on it: the statement's check did not see it,
    // the insert fails as a duplicate, and the charge is undone.
    let mut other = pg.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO drive_nodes (id, drive_id, parent_id, name, is_dir, created_at, modified_at)
         VALUES ('other', 1, '', 'f', 1, 0, 0)",
    )
    .execute(&mut *other)
    .await
    .unwrap();
    let (f, g) = (new_file("f", 10, true), new_file("g", 10, true));
    let pool = pg.clone();
    let waiting = tokio::spawn(async move { insert_new_files_pg(&pool, &[&g, &f]).await });
    // Committed once the statement waits on the row (so its check
    // ran before the row was there).
    until_waiting_for_a_row(&pg, "WITH input AS", &waiting).await;
    other.commit().await.unwrap();
    assert!(!waiting.await.unwrap().unwrap());
    assert_eq!(state().await, (3000, 3, 1));
    store.close().await;
}

/// Issue 23: a lock is taken in one statement exactly when the rule of
/// [`drive::lock_conflict`] lets it (every pair of locks on nested,
/// sibling and prefix-sharing paths, shared or not, deep or not), an
/// expired lock stands in no way, the bounds hold, and a lock is removed
/// in one statement only by who took it (or a manager) on its path or
/// below, with the drive's expired locks.
#[tokio::test]
async fn locks_are_taken_and_removed_in_one_statement_by_the_same_rules() {
    for engine in [crate::Engine::Sqlite, crate::Engine::Postgres] {
        let Some(url) = crate::testing::database_url(engine).await else {
            continue;
        };
        let store = SqlStore::open(&url).await.unwrap();
        for setup in [
            "INSERT INTO organizations (id, name, name_key, created_at) VALUES ('org', 'Org', 'org', 0)",
            "INSERT INTO drives (id, org_id, name, quota_bytes, created_at) VALUES (1, 'org', 'Drive', 1000, 0)",
        ] {
            sqlx::query(setup).execute(&store.pool).await.unwrap();
        }
        const DRIVE: drive::DriveId = drive::DriveId::new(1);
        let now = 1_000_000;
        let lock = |token: &str, path: &str, shared: bool, deep: bool| drive::Lock {
            token: token.into(),
            path: path.into(),
            principal: "ana@example.org".into(),
            owner_xml: String::new(),
            expires_at: now + 600_000,
            timeout_secs: 600,
            shared,
            deep,
        };
        let paths = ["", "/a", "/a/b", "/a/bc", "/ab", "/a/b/c", "/é"];
        let kinds = [(false, false), (false, true), (true, false), (true, true)];
        let (mut taken, mut refused) = (0, 0);
        for held_path in paths {
            for (held_shared, held_deep) in kinds {
                let held = lock("held", held_path, held_shared, held_deep);
                assert!(store.add_lock_if_free(DRIVE, &held, now, 16, 1000).await.unwrap());
                for path in paths {
                    for (shared, deep) in kinds {
                        let new = lock("new", path, shared, deep);
                        let free =
                            drive::lock_conflict(std::slice::from_ref(&held), path, None, true, deep, &[], shared)
                                .is_none();
                        let stored = store.add_lock_if_free(DRIVE, &new, now, 16, 1000).await.unwrap();
                        assert_eq!(stored, free, "{engine:?}: {held:?} then {new:?}");
                        if stored {
                            taken += 1;
                            assert!(store.remove_lock(DRIVE, "new").await.unwrap());
                        } else {
                            refused += 1;
                        }
                    }
                }
                assert!(store.remove_lock(DRIVE, "held").await.unwrap());
            }
        }
        assert!(taken > 100 && refused > 100, "{taken} {refused}");

        // An expired lock stands in no way, and the next removal clears it.
        let mut old = lock("old", "/a", false, true);
        old.expires_at = now - 1;
        assert!(store.add_lock_if_free(DRIVE, &old, now - 10, 16, 1000).await.unwrap());
        assert!(
            store
                .add_lock_if_free(DRIVE, &lock("t1", "/a/b", false, false), now, 16, 1000)
                .await
                .unwrap()
        );
        // The bounds: locks on a name, locks of a member.
        assert!(
            !store
                .add_lock_if_free(DRIVE, &lock("t2", "/a/b", true, false), now, 1, 1000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .add_lock_if_free(DRIVE, &lock("t2", "/x", true, false), now, 16, 1)
                .await
                .unwrap()
        );

        // Removal: not by another member, not from a path outside the lock.
        assert!(
            !store
                .remove_held_lock(DRIVE, "t1", "/a/b", "eve@example.org", false, now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .remove_held_lock(DRIVE, "t1", "/a", "ana@example.org", false, now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .remove_held_lock(DRIVE, "t1", "/a/bc", "ana@example.org", false, now)
                .await
                .unwrap()
        );
        // By a manager, from below the lock's path; the expired lock goes too.
        assert!(
            store
                .remove_held_lock(DRIVE, "t1", "/a/b/c", "eve@example.org", true, now)
                .await
                .unwrap()
        );
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM drive_locks")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "{engine:?}");
    }
}
