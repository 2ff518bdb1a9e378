//! The app on PostgreSQL (`herald serve --database-url postgres://…`), against a real
//! PostgreSQL server: the same API and events as on SQLite, the data in PostgreSQL and
//! still there after a restart, and the write locks that PostgreSQL makes cluster-wide,
//! taken by every change for its workspace (or user) and released on every path.

use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep, timeout};

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, PASSWORD, Postgres, TestServer, herald_command, id_of,
};

/// How long a released advisory lock may take to show as gone (a failed change releases it
/// in the background).
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory locks granted in the cluster right now.
async fn advisory_locks(postgres: &Postgres) -> u32 {
    let count = postgres
        .psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        .await;
    count.parse().expect("a count")
}

/// Waits until exactly `want` advisory locks are granted.
async fn wait_for_advisory_locks(postgres: &Postgres, want: u32) {
    let deadline = Instant::now() + UNLOCK_TIMEOUT;
    loop {
        let got = advisory_locks(postgres).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} advisory locks held after {UNLOCK_TIMEOUT:?}, expected {want}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// How long the whole scenario may take: a write lock that is never released would make the
/// next change wait forever, and the test hang rather than fail.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `scenario` within [`SCENARIO_TIMEOUT`].
async fn within_timeout(scenario: impl Future<Output = ()>) {
    timeout(SCENARIO_TIMEOUT, scenario)
        .await
        .unwrap_or_else(|_| panic!("the scenario took more than {SCENARIO_TIMEOUT:?}"));
}

/// A fresh PostgreSQL, and a server with the first admin keeping its data there.
async fn server_on_postgres() -> (Postgres, TestServer) {
    let postgres = Postgres::start().await;
    let server = TestServer::with_env(
        &[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        &["--database-url", &postgres.url()],
    )
    .await;
    (postgres, server)
}

#[tokio::test]
async fn the_app_keeps_its_data_in_postgres() {
    within_timeout(scenario()).await;
}

async fn scenario() {
    let (postgres, mut server) = server_on_postgres().await;
    let url = postgres.url();

    // Users; emails are one account whatever their case, and stored in lower case.
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let alice = admin
        .new_member(&server, "Alice@Example.com", "Alice")
        .await;
    assert_eq!(alice.user["email"], "alice@example.com");
    let bob = admin.new_member(&server, "bob@example.com", "Bob").await;
    let ws = id_of(&alice.create_workspace("Team").await);
    alice.add_member(&ws, &bob.id(), "member").await;
    let mut stream = bob.events("/api/events").open().await;
    assert_eq!(stream.connected_workspaces(), [ws.as_str()]);

    // Todo CRUD; a member's stream receives every change.
    let todos = format!("/api/workspaces/{ws}/todos");
    let todo = alice
        .create(&ws, "todos", json!({"title": "Buy milk"}))
        .await;
    assert_eq!(todo["done"], false);
    let event = stream.next_event().await;
    assert_eq!(event.event, "todos:created");
    assert_eq!(event.data["data"], todo);
    let one = format!("{todos}/{}", id_of(&todo));
    let done = alice.patch(&one, &json!({"done": true})).await.expect(200);
    assert_eq!(done["done"], true);
    let event = stream.next_event().await;
    assert_eq!(event.event, "todos:updated");
    assert_eq!(event.data["data"], done);
    assert_eq!(bob.get(&one).await.expect(200), done);
    assert_eq!(bob.items(&todos).await, std::slice::from_ref(&done));

    // A note stays private: not found for Bob, even to change (a change that fails inside
    // its transaction), and no event on his stream.
    let note = alice
        .create(&ws, "notes", json!({"content": "Alice's secret"}))
        .await;
    let note_path = format!("/api/workspaces/{ws}/notes/{}", id_of(&note));
    bob.get(&note_path).await.expect_error(404, "not_found");
    bob.patch(&note_path, &json!({"content": "Bob's now"}))
        .await
        .expect_error(404, "not_found");
    assert!(
        bob.items(&format!("/api/workspaces/{ws}/notes"))
            .await
            .is_empty()
    );
    alice.delete(&one).await.expect(204);
    let event = stream.next_event().await;
    assert_eq!(event.event, "todos:deleted", "{event:?}");
    assert_eq!(event.data["data"], done);
    bob.get(&one).await.expect_error(404, "not_found");

    // Changes take their workspace's write lock in PostgreSQL: while another session holds
    // it, a change waits, then goes ahead.
    wait_for_advisory_locks(&postgres, 0).await;
    let key = herald_app::db::lock_key(&format!("ws:{ws}"));
    let hold = format!("SELECT pg_advisory_lock({key}); SELECT pg_sleep(3)");
    let holder = postgres.psql(&hold);
    let waiting = async {
        wait_for_advisory_locks(&postgres, 1).await;
        let (alice, ws) = (alice.clone(), ws.clone());
        let request = tokio::spawn(async move {
            alice
                .create(&ws, "todos", json!({"title": "after the lock"}))
                .await
        });
        sleep(Duration::from_secs(1)).await;
        assert!(
            !request.is_finished(),
            "a change went ahead while another session held the write lock"
        );
        request.await.expect("the change after the lock")
    };
    let (_, later) = tokio::join!(holder, waiting);
    let event = stream.next_event().await;
    assert_eq!(event.event, "todos:created");
    assert_eq!(event.data["data"], later);
    // Every change released it, the failed ones too.
    wait_for_advisory_locks(&postgres, 0).await;

    // Killed and started again, Herald finds everything in PostgreSQL, sessions included.
    server.restart().await;
    assert_eq!(bob.items(&todos).await, [later]);
    assert_eq!(
        alice.items(&format!("/api/workspaces/{ws}/notes")).await,
        [note]
    );
    bob.get(&note_path).await.expect_error(404, "not_found");
    let again = AppClient::login(&server, "ALICE@example.com", PASSWORD).await;
    assert_eq!(again.user, alice.user);

    // `herald user token` reaches the same database.
    let output = herald_command()
        .args(["user", "token", "alice@example.com", "--database-url", &url])
        .output()
        .await
        .expect("run herald user token");
    assert!(
        output.status.success(),
        "herald user token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("UTF-8");
    let as_token = AppClient::with_bearer(&server, token.trim());
    assert_eq!(as_token.get("/api/me").await.expect(200), alice.user);
    assert_eq!(postgres.psql("SELECT count(*) FROM users").await, "3");
}

/// A change whose outbox rows cannot be deleted after the log took its events still stands,
/// and its write lock is released all the same (the connection that failed is closed, which
/// ends the session's locks): the next change of the workspace goes ahead. The rows stay
/// until a delete succeeds, and their events are delivered once.
#[tokio::test]
async fn a_failed_outbox_cleanup_still_releases_the_write_lock() {
    within_timeout(failed_cleanup()).await;
}

async fn failed_cleanup() {
    let (postgres, server) = server_on_postgres().await;
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ws = id_of(&admin.create_workspace("Team").await);
    let mut stream = admin.events("/api/events").open().await;
    wait_for_advisory_locks(&postgres, 0).await;

    postgres
        .psql(
            "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'outbox deletes are refused'; END $$; \
             CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox \
             FOR EACH ROW EXECUTE FUNCTION refuse_delete()",
        )
        .await;
    let first = admin.create(&ws, "todos", json!({"title": "first"})).await;
    assert_eq!(stream.next_event().await.data["data"], first);
    wait_for_advisory_locks(&postgres, 0).await;
    assert_eq!(postgres.psql("SELECT count(*) FROM outbox").await, "1");

    // The workspace's next change is not held up by the failed one; it finds the row left
    // behind, sees its event in the log, and cannot delete it either.
    let second = admin.create(&ws, "todos", json!({"title": "second"})).await;
    assert_eq!(stream.next_event().await.data["data"], second);
    wait_for_advisory_locks(&postgres, 0).await;
    assert_eq!(postgres.psql("SELECT count(*) FROM outbox").await, "2");

    // Once deletes succeed again, the relay clears the rows without publishing them again.
    postgres.psql("DROP TRIGGER refuse_delete ON outbox").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while postgres.psql("SELECT count(*) FROM outbox").await != "0" {
        assert!(Instant::now() < deadline, "the outbox was not cleared");
        sleep(Duration::from_millis(100)).await;
    }
    let third = admin.create(&ws, "todos", json!({"title": "third"})).await;
    let next = stream.next_event().await;
    assert_eq!(
        next.data["data"], third,
        "a second copy came first: {next:?}"
    );
}
