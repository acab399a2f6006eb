//! Import jobs in SQL, on SQLite and PostgreSQL: each claim is counted and
//! progress resets the count (so a job whose input crashes the server is
//! seen as such, see `import::MAX_ATTEMPTS`), and an organization with its
//! limit of live jobs gets no more while others' jobs are still handed out.

use std::sync::Arc;

use blobs::LocalBlobs;
use drive::{Drives, Import, ImportItem, ImportState, ImportStore};
use identity::{AccountId, Identity, IdentityConfig, ManualClock, PasswordHasher, Role, ServerKey};
use store::{Engine, SqlStore};

const PASSWORD: &str = "violet tractor sunrise 42";
const LEASE: i64 = 30_000;
const NOW: i64 = 1_800_000_000_000;

fn job(id: &str, drive_id: drive::DriveId, account_id: &AccountId, created_at: i64) -> Import {
    Import {
        id: id.into(),
        drive_id,
        account_id: account_id.clone(),
        source_url: "https://nas.example.org/dav".into(),
        source_user: "nas".into(),
        sealed_secret: "sealed".into(),
        folder: "/".into(),
        state: ImportState::Queued,
        files_done: 0,
        bytes_done: 0,
        files_failed: 0,
        files_found: 0,
        current_file: String::new(),
        error: String::new(),
        cancel_requested: false,
        attempts: 0,
        created_at,
        finished_at: None,
    }
}

#[tokio::test]
async fn claims_are_counted_until_progress_and_bounded_per_organization() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(url) = store::testing::database_url(engine).await else {
            continue;
        };
        let store = SqlStore::open(&url).await.unwrap();
        let identity = Identity::new(
            Arc::new(store.clone()),
            Arc::new(ManualClock::at(NOW)),
            PasswordHasher::owasp_minimum(),
            ServerKey::generate(),
            IdentityConfig::default(),
        );
        let acme = identity.create_organization("Acme").await.unwrap();
        let other = identity.create_organization("Other").await.unwrap();
        let (ana, _) = identity
            .create_account("ana@example.org", "Ana", PASSWORD, Some(("Acme", Role::User)))
            .await
            .unwrap();
        let drives = Drives::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(LocalBlobs::new(store::testing::temp_dir("blobs"))),
            identity,
        );
        let acme_drive = drives.create(None, &acme.id, "Shared", None).await.unwrap().id;
        let other_drive = drives.create(None, &other.id, "Shared", None).await.unwrap().id;
        let jobs: &dyn ImportStore = &store;
        jobs.insert_import(&job("a1", acme_drive, &ana.id, NOW - 30))
            .await
            .unwrap();
        jobs.insert_import(&job("a2", acme_drive, &ana.id, NOW - 20))
            .await
            .unwrap();
        jobs.insert_import(&job("b1", other_drive, &ana.id, NOW - 10))
            .await
            .unwrap();

        // One live job per organization: Acme's second waits, Other's
        // does not wait behind it.
        let first = jobs.claim_import(NOW, LEASE, 1).await.unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.attempts), ("a1", 1), "{engine:?}");
        let second = jobs.claim_import(NOW, LEASE, 1).await.unwrap().unwrap();
        assert_eq!(second.id, "b1", "{engine:?}");
        assert_eq!(jobs.claim_import(NOW, LEASE, 1).await.unwrap(), None, "{engine:?}");
        // With room for two, Acme's second is handed out.
        let third = jobs.claim_import(NOW, LEASE, 2).await.unwrap().unwrap();
        assert_eq!(third.id, "a2", "{engine:?}");
        jobs.end_import("a2", ImportState::Done, "", NOW).await.unwrap();
        jobs.end_import("b1", ImportState::Done, "", NOW).await.unwrap();

        // a1's process dies again and again: every claim is counted.
        let mut later = NOW;
        for attempt in 2..=4 {
            later += LEASE + 1;
            let again = jobs.claim_import(later, LEASE, 1).await.unwrap().unwrap();
            assert_eq!((again.id.as_str(), again.attempts), ("a1", attempt), "{engine:?}");
        }
        // An item finished is progress: the count starts again.
        let item = ImportItem {
            path: "/a.txt".into(),
            is_dir: false,
            size: 1,
            modified_at: 0,
        };
        jobs.add_import_items("a1", std::slice::from_ref(&item)).await.unwrap();
        jobs.finish_import_item("a1", &item.path, Some(1), None).await.unwrap();
        assert_eq!(jobs.import("a1").await.unwrap().unwrap().attempts, 0, "{engine:?}");
        later += LEASE + 1;
        let resumed = jobs.claim_import(later, LEASE, 1).await.unwrap().unwrap();
        assert_eq!(resumed.attempts, 1, "{engine:?}");
    }
}
