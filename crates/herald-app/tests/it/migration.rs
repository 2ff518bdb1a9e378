//! Moving the app's data into the event log's file: an older version's `app.db`, migrated
//! with the old migration numbers, is imported at the first start, its outbox relayed, and
//! never imported twice.

use std::{sync::Arc, time::Duration};

use herald_app::{App, Commits, NewUser, UserRole, open_db};
use herald_hub::{Durability, Hub, HubConfig, SqliteLog};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::support::PASSWORD;

/// Writes an `app.db` as an older version left it: today's schema, with the app's migrations
/// numbered 1 and 2, one user, one workspace and an event still in the outbox.
async fn old_app_file(dir: &std::path::Path) {
    let path = dir.join("app.db");
    let url = format!("sqlite://{}", path.display());
    let pool = open_db(Some(&url), dir).await.unwrap();
    // The old version had the first two migrations only, numbered 1 and 2.
    for statement in [
        "ALTER TABLE outbox DROP COLUMN scope",
        "DELETE FROM _sqlx_migrations WHERE version > 1002",
        "UPDATE _sqlx_migrations SET version = version - 1000",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let accounts = herald_app::Accounts::new(pool.clone(), TaskTracker::new());
    accounts
        .add_user(NewUser {
            email: "old@example.com".into(),
            name: "Old".into(),
            password: PASSWORD.into(),
            role: UserRole::Admin,
        })
        .await
        .unwrap();
    for statement in [
        "INSERT INTO workspaces (id, name, created_by, created_at, updated_at) \
         SELECT 'w1', 'kept', id, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z' FROM users",
        "INSERT INTO outbox (uid, topics, type, data, closes, created_at) \
         VALUES ('left-behind', '[\"herald:ws/w1\"]', 'todos:created', '{}', '', 0)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn an_older_app_file_is_imported_once_and_its_outbox_relayed() {
    let dir = tempfile::tempdir().unwrap();
    old_app_file(dir.path()).await;

    let log = SqliteLog::open(&dir.path().join("herald.db"), Durability::Normal)
        .await
        .unwrap();
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let hub = Hub::start(
        HubConfig::default(),
        Arc::new(log),
        &tracker,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let pool = open_db(None, dir.path()).await.unwrap();
    assert!(!dir.path().join("app.db").exists(), "app.db was moved away");
    assert!(dir.path().join("app.db.imported").is_file());
    let (users, workspaces): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM workspaces)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((users, workspaces), (1, 1));

    // The event the old version left in the outbox reaches the log at the start, once.
    let app = App::start(
        pool.clone(),
        hub.clone(),
        Commits::WithLog,
        &tracker,
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert!(hub.contains("left-behind").await.unwrap());
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let actor = {
        let (_, secret) = app
            .accounts()
            .login("old@example.com", PASSWORD.to_owned())
            .await
            .unwrap();
        app.accounts()
            .authenticate(herald_app::accounts::Credentials::Session(&secret))
            .await
            .unwrap()
    };
    assert_eq!(app.workspaces(&actor).await.unwrap().data.len(), 1);
    drop(app);
    pool.close().await;

    // A second start imports nothing, and the migrations agree with the file.
    let pool = open_db(None, dir.path()).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 1001, 1002, 1003]);
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .unwrap();
}

/// An import that committed but stopped before the rename (a crash) finishes at the next
/// start with the rename alone, copying nothing twice.
#[tokio::test]
async fn an_import_cut_before_the_rename_only_renames_next_time() {
    let dir = tempfile::tempdir().unwrap();
    old_app_file(dir.path()).await;
    let pool = open_db(None, dir.path()).await.unwrap();
    pool.close().await;
    // As if the rename had not happened.
    std::fs::copy(
        dir.path().join("app.db.imported"),
        dir.path().join("app.db"),
    )
    .unwrap();
    let pool = open_db(None, dir.path()).await.unwrap();
    assert!(!dir.path().join("app.db").exists());
    let (users, workspaces): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM workspaces)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((users, workspaces), (1, 1));
}

/// Data in both files is two installations: the start refuses rather than merge them.
#[tokio::test]
async fn an_older_app_file_beside_users_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pool = open_db(None, dir.path()).await.unwrap();
    herald_app::Accounts::new(pool.clone(), TaskTracker::new())
        .add_user(NewUser {
            email: "new@example.com".into(),
            name: "New".into(),
            password: PASSWORD.into(),
            role: UserRole::Admin,
        })
        .await
        .unwrap();
    pool.close().await;
    old_app_file(dir.path()).await;
    let error = open_db(None, dir.path()).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("holds 1 other users already"),
        "{error:#}"
    );
    assert!(
        dir.path().join("app.db").is_file(),
        "the old file is left alone"
    );
}
