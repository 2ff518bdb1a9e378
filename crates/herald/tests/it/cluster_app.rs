//! The app on a cluster: three real nodes sharing PostgreSQL (the app's data) and Redis
//! (the event log). A change made through one node reaches streams on the others exactly
//! once and in order, private notes stay private across nodes, revocation ends streams
//! held by another node, and a kill -9 between nodes loses nothing. Changes are ordered
//! per workspace, not cluster-wide: a workspace's change held up on one node stalls no
//! other workspace, only the next change of its own, and every stream sees each
//! workspace's events in commit order.

use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep, timeout};

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, AppEvent, AppStream, ITEM_TIMEOUT, PASSWORD,
    PG_SESSION_NAME, Postgres, Redis, TestServer, id_of,
};

/// A node of the cluster on `redis` and `postgres`, whose first start may make the admin.
async fn node(redis: &Redis, postgres: &Postgres) -> TestServer {
    let (redis, postgres) = (redis.url(), postgres.url());
    TestServer::with_env(
        &[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        &["--redis-url", &redis, "--database-url", &postgres],
    )
    .await
}

/// The events of `stream` up to and including the `kind` event about resource `id`.
async fn until_resource(stream: &mut AppStream, kind: &str, id: &str) -> Vec<AppEvent> {
    let mut events = Vec::new();
    loop {
        let event = stream.next_event().await;
        let done = event.event == kind && event.data["data"]["id"] == id;
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The titles of the `todos:created` events among `events`, in order.
fn todo_titles(events: &[AppEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "todos:created")
        .map(|e| {
            e.data["data"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_app_works_across_nodes() {
    let (redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&redis, &postgres).await);
    }
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);

    // Users and sessions are shared: made through node 1, signed in through others.
    let admin = AppClient::login(n1, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    admin
        .create_user("alice@example.com", "Alice", "member")
        .await;
    admin.create_user("bob@example.com", "Bob", "member").await;
    admin
        .create_user("carol@example.com", "Carol", "member")
        .await;
    let alice = AppClient::login(n3, "alice@example.com", PASSWORD).await;
    let bob = AppClient::login(n1, "bob@example.com", PASSWORD).await;
    let carol = AppClient::login(n2, "carol@example.com", PASSWORD).await;
    let ws = id_of(&alice.create_workspace("Team").await);
    alice.add_member(&ws, &bob.id(), "member").await;

    // Bob's browser-like stream is on node 1, Carol's (not a member) on node 2; Alice
    // works through node 3.
    let bob_on_n1 = AppClient::with_cookie(n1, &bob.cookie());
    let mut bob_stream = bob_on_n1.events("/api/events").open().await;
    assert_eq!(bob_stream.connected_workspaces(), vec![ws.clone()]);
    let carol_on_n2 = AppClient::with_cookie(n2, &carol.cookie());
    let mut carol_stream = carol_on_n2.events("/api/events").open().await;

    let mut titles = Vec::new();
    for i in 0..20 {
        let title = format!("todo {i}");
        alice.create(&ws, "todos", json!({ "title": title })).await;
        titles.push(title);
        if i == 9 {
            // A private note, made through node 3: it must not reach Bob on node 1.
            alice
                .create(&ws, "notes", json!({ "content": "Alice's secret" }))
                .await;
        }
    }
    let marker = alice
        .create(&ws, "channels", json!({ "name": "marker" }))
        .await;
    // The whole log, replayed on node 2 to the admin (who may read everything from the
    // start; a member is replayed only from when they joined).
    let admin_on_n2 = AppClient::with_cookie(n2, &admin.cookie());
    let mut admin_stream = admin_on_n2
        .events(&format!("/api/events?workspace={ws}"))
        .last_event_id("earliest")
        .open()
        .await;
    let all = until_resource(&mut admin_stream, "channels:created", &id_of(&marker)).await;
    let alice_on_n2 = AppClient::with_cookie(n2, &alice.cookie());
    assert!(
        all.iter().any(|e| e.event == "notes:created"),
        "admins see notes"
    );
    assert_eq!(todo_titles(&all), titles, "replayed on node 2 in order");

    let received = until_resource(&mut bob_stream, "channels:created", &id_of(&marker)).await;
    assert_eq!(
        todo_titles(&received),
        titles,
        "every todo, once, in order, on another node"
    );
    assert!(
        received.iter().all(|e| e.event != "notes:created"),
        "a private note reached another user on another node: {received:#?}"
    );
    // Carol sees nothing of the workspace: her next event is her own notification.
    admin
        .post(
            "/api/notify",
            &json!({ "userId": carol.id(), "data": { "hello": "Carol" } }),
        )
        .await
        .expect(202);
    let next = carol_stream.next_event().await;
    assert_eq!(next.event, "notification", "{next:#?}");

    // Bob is removed through node 2; his stream on node 1 shows why, then ends, and
    // nothing Alice adds afterwards reaches it.
    alice_on_n2
        .delete(&format!("/api/workspaces/{ws}/members/{}", bob.id()))
        .await
        .expect(204);
    let removed = bob_stream.next_event().await;
    assert_eq!(removed.event, "members:removed", "{removed:#?}");
    bob_stream.expect_end(ITEM_TIMEOUT).await;

    // A node dies; Alice's stream resumes on another one from its last id, and sees the
    // changes made meanwhile exactly once.
    let resume_from = removed.id.clone();
    let mut nodes = nodes;
    nodes[0].kill9().await;
    let after: Vec<String> = (0..5).map(|i| format!("after kill {i}")).collect();
    for title in &after {
        alice.create(&ws, "todos", json!({ "title": title })).await;
    }
    let end = alice
        .create(&ws, "channels", json!({ "name": "end" }))
        .await;
    let alice_on_n3 = AppClient::with_cookie(&nodes[2], &alice.cookie());
    let mut resumed = alice_on_n3
        .events(&format!("/api/events?workspace={ws}"))
        .last_event_id(&resume_from)
        .open()
        .await;
    let tail = until_resource(&mut resumed, "channels:created", &id_of(&end)).await;
    assert_eq!(todo_titles(&tail), after);
}

#[tokio::test]
async fn app_changes_fail_cleanly_while_redis_is_down() {
    let (mut redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let server = node(&redis, &postgres).await;
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ws = id_of(&admin.create_workspace("Team").await);
    let todos = format!("/api/workspaces/{ws}/todos");
    let mut stream = admin
        .events(&format!("/api/events?workspace={ws}"))
        .open()
        .await;

    redis.stop().await;
    // The event log is down: a change is refused with a 503 and a JSON body, and is not
    // made (the database keeps nothing of it).
    let refused = admin
        .post(&todos, &json!({ "title": "while Redis is down" }))
        .await
        .expect_error(503, "unavailable");
    assert!(
        refused.message.contains("nothing was changed"),
        "{refused:?}"
    );
    assert!(
        admin.items(&todos).await.is_empty(),
        "the refused todo was not stored"
    );

    redis.restart().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let made = loop {
        let reply = admin
            .post(&todos, &json!({ "title": "after Redis returned" }))
            .await;
        if reply.status == 201 {
            break reply.expect(201);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "changes still refused 30 s after Redis returned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // The stream stayed up through the outage and gets the change, and only it.
    let event = stream.next_event().await;
    assert_eq!(event.event, "todos:created", "{event:#?}");
    assert_eq!(event.data["data"], made);
    assert_eq!(admin.items(&todos).await, vec![made]);
}

/// Revoking a token and deactivating a user through one node end the streams they affect on
/// another, at once; the credentials get a 401 on every node. (The tokens and the `active`
/// flag live in PostgreSQL here.)
#[tokio::test]
async fn revocations_end_streams_on_other_nodes() {
    let (redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let n1 = node(&redis, &postgres).await;
    let n2 = node(&redis, &postgres).await;
    let within = std::time::Duration::from_secs(2);

    let admin = AppClient::login(&n1, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    admin.create_user("bob@example.com", "Bob", "member").await;
    let bob = AppClient::login(&n1, "bob@example.com", PASSWORD).await;
    let made = bob
        .post("/api/tokens", &json!({ "name": "script", "ttl": "1h" }))
        .await
        .expect(201);
    let token = made["token"].as_str().expect("the secret").to_owned();
    let listed = bob.items("/api/tokens").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0]["expiresAt"].is_string(), "{listed:?}");

    let bob_on_n2 = AppClient::with_cookie(&n2, &bob.cookie());
    let token_on_n2 = AppClient::with_bearer(&n2, &token);
    let mut session_stream = bob_on_n2.events("/api/events").open().await;
    let mut token_stream = token_on_n2.events("/api/events").open().await;

    // The token, revoked through node 1: its stream on node 2 ends, the session's does not.
    let revoked = tokio::time::Instant::now();
    admin
        .delete(&format!("/api/tokens/{}", id_of(&made)))
        .await
        .expect(204);
    token_stream.expect_end(within).await;
    assert!(revoked.elapsed() < within);
    token_on_n2
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");

    // Bob, deactivated through node 1: his stream on node 2 ends, his session is refused
    // on both nodes, and node 2 lists him inactive.
    let deactivated = tokio::time::Instant::now();
    admin
        .post(&format!("/api/users/{}/deactivate", bob.id()), &json!({}))
        .await
        .expect(200);
    session_stream
        .expect_end(within.saturating_sub(deactivated.elapsed()))
        .await;
    for client in [&bob, &bob_on_n2] {
        client
            .get("/api/me")
            .await
            .expect_error(401, "unauthorized");
    }
    let admin_on_n2 = AppClient::with_cookie(&n2, &admin.cookie());
    let users = admin_on_n2.items("/api/users").await;
    let listed_bob = users
        .iter()
        .find(|u| u["id"] == bob.id())
        .expect("Bob is listed");
    assert_eq!(listed_bob["active"], false, "{users:?}");
}

/// Positions are the shared log's: a read through one node, then a stream through another
/// after its position, gets the change made in between once.
#[tokio::test]
async fn a_position_read_on_one_node_starts_a_stream_on_another() {
    let (redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let (n1, n2) = (node(&redis, &postgres).await, node(&redis, &postgres).await);
    let admin = AppClient::login(&n1, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    admin
        .create_user("alice@example.com", "Alice", "member")
        .await;
    let alice = AppClient::login(&n1, "alice@example.com", PASSWORD).await;
    let ws = id_of(&alice.create_workspace("Team").await);
    let todos = format!("/api/workspaces/{ws}/todos");
    alice.create(&ws, "todos", json!({"title": "before"})).await;

    let read = alice.get(&todos).await;
    let position = crate::support::header(&read.headers, "herald-position");
    assert!(
        !position.is_empty(),
        "no Herald-Position: {:?}",
        read.headers
    );
    read.expect(200);
    let between = alice
        .create(&ws, "todos", json!({"title": "between"}))
        .await;

    let on_n2 = AppClient::with_cookie(&n2, &alice.cookie());
    let mut stream = on_n2
        .events(&format!("/api/workspaces/{ws}/events?after={position}"))
        .open()
        .await;
    let marker = alice.create(&ws, "todos", json!({"title": "marker"})).await;
    let events = until_resource(&mut stream, "todos:created", &id_of(&marker)).await;
    assert_eq!(todo_titles(&events), ["between", "marker"], "{events:#?}");
    assert_eq!(events[0].data["data"], between);

    let ahead = position.parse::<u64>().unwrap() + 1_000;
    on_n2
        .events(&format!("/api/events?after={ahead}"))
        .error(400, "bad_request")
        .await;
}

/// The titles of the todo events (`todos:created`, `todos:updated`) of workspace `ws`
/// among `events`, in order.
fn titles_in(events: &[AppEvent], ws: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event.starts_with("todos:") && e.data["workspaceId"] == ws)
        .map(|e| {
            e.data["data"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Waits until the count that `sql` answers reaches `want`; says `what` when it does not
/// within 30 s.
async fn wait_for_count(postgres: &Postgres, sql: &str, want: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: u32 = postgres.psql(sql).await.parse().expect("a count");
        if got >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {got} after 30 s");
        sleep(Duration::from_millis(50)).await;
    }
}

/// How long a change of another workspace may take while one is held up: it waits for
/// nothing of the held one, so this is only a bound on a slow machine.
const UNRELATED_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn workspaces_commit_side_by_side_and_each_in_order() {
    let (redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&redis, &postgres).await);
    }
    let admin = AppClient::login(&nodes[0], ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let on: Vec<AppClient> = nodes
        .iter()
        .map(|node| AppClient::with_cookie(node, &admin.cookie()))
        .collect();
    let (a, b, c) = (
        id_of(&admin.create_workspace("A").await),
        id_of(&admin.create_workspace("B").await),
        id_of(&admin.create_workspace("C").await),
    );
    let todo_a = id_of(&admin.create(&a, "todos", json!({"title": "a 0"})).await);
    let path_a = format!("/api/workspaces/{a}/todos/{todo_a}");
    let mut streams = Vec::new();
    for client in &on {
        streams.push(client.events("/api/events").open().await);
    }

    // Sequential changes of A through each node in turn.
    for i in 1..=3 {
        on[i % 3]
            .patch(&path_a, &json!({"title": format!("a {i}")}))
            .await
            .expect(200);
    }

    // The test's own transaction locks A's todo; node 1's change of it then holds A's write
    // lock and waits for the row.
    let mut holder = postgres.session();
    holder
        .send(&format!(
            "BEGIN; SELECT id FROM todos WHERE id = '{todo_a}' FOR UPDATE;"
        ))
        .await;
    wait_for_count(
        &postgres,
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = '{PG_SESSION_NAME}' AND state = 'idle in transaction'"
        ),
        1,
        "the test's transaction holds the row",
    )
    .await;
    let first = tokio::spawn({
        let (client, path) = (on[0].clone(), path_a.clone());
        async move { client.patch(&path, &json!({"title": "a 4"})).await }
    });
    wait_for_count(
        &postgres,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND wait_event <> 'advisory'",
        1,
        "node 1's change waits for the row",
    )
    .await;

    // Meanwhile B and C change through nodes 2 and 3.
    for (client, ws, title) in [(&on[1], &b, "b 1"), (&on[2], &c, "c 1")] {
        let made = timeout(
            UNRELATED_CHANGE_TIMEOUT,
            client.post(
                &format!("/api/workspaces/{ws}/todos"),
                &json!({"title": title}),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{title:?} waited for a change of another workspace"));
        made.expect(201);
    }
    assert!(!first.is_finished(), "node 1's change of A went ahead");

    // A second change of A, through node 2, waits for A's write lock.
    let second = tokio::spawn({
        let (client, path) = (on[1].clone(), path_a.clone());
        async move { client.patch(&path, &json!({"title": "a 5"})).await }
    });
    wait_for_count(
        &postgres,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        1,
        "node 2's change of A waits for A's write lock",
    )
    .await;
    assert!(!first.is_finished(), "node 1's change of A went ahead");
    assert!(!second.is_finished(), "node 2's change of A went ahead");

    // The transaction ends: both changes of A complete, in turn.
    holder.send("COMMIT;").await;
    holder.end().await;
    let first = first.await.expect("node 1's change").expect(200);
    assert_eq!(first["title"], "a 4");
    let second = second.await.expect("node 2's change").expect(200);
    assert_eq!(second["title"], "a 5");
    on[2]
        .patch(&path_a, &json!({"title": "a 6"}))
        .await
        .expect(200);
    on[0].create(&b, "todos", json!({"title": "b 2"})).await;
    on[1].create(&c, "todos", json!({"title": "c 2"})).await;
    let end = id_of(&on[2].create(&a, "channels", json!({"name": "end"})).await);

    // Every stream, on every node, sees each workspace's changes once, in commit order.
    let want_a: Vec<String> = (1..=6).map(|i| format!("a {i}")).collect();
    for (n, stream) in streams.iter_mut().enumerate() {
        let events = until_resource(stream, "channels:created", &end).await;
        assert_eq!(titles_in(&events, &a), want_a, "A on node {}", n + 1);
        assert_eq!(
            titles_in(&events, &b),
            ["b 1", "b 2"],
            "B on node {}",
            n + 1
        );
        assert_eq!(
            titles_in(&events, &c),
            ["c 1", "c 2"],
            "C on node {}",
            n + 1
        );
    }
    let stored = on[1].get(&path_a).await.expect(200);
    assert_eq!(stored["title"], "a 6");
}

/// Two changes of one workspace, made at once through two nodes, are serialized: the log
/// holds their events in the order the database committed them, so the last event of each
/// round is the state the database kept.
#[tokio::test]
async fn one_workspace_changed_through_two_nodes_at_once_stays_in_commit_order() {
    let (redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let n1 = node(&redis, &postgres).await;
    let n2 = node(&redis, &postgres).await;
    let admin = AppClient::login(&n1, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_on_n2 = AppClient::with_cookie(&n2, &admin.cookie());
    let ws = id_of(&admin.create_workspace("Team").await);
    let todo = id_of(&admin.create(&ws, "todos", json!({"title": "start"})).await);
    let path = format!("/api/workspaces/{ws}/todos/{todo}");
    let mut streams = [
        admin.events("/api/events").open().await,
        admin_on_n2.events("/api/events").open().await,
    ];
    let mut kept = Vec::new();
    for round in 0..10 {
        let (one, two) = (format!("{round} through 1"), format!("{round} through 2"));
        let (one, two) = (json!({"title": one}), json!({"title": two}));
        let (r1, r2) = tokio::join!(admin.patch(&path, &one), admin_on_n2.patch(&path, &two));
        r1.expect(200);
        r2.expect(200);
        let stored = admin.get(&path).await.expect(200);
        kept.push(stored["title"].as_str().expect("a title").to_owned());
    }
    let end = id_of(&admin.create(&ws, "channels", json!({"name": "end"})).await);
    for (n, stream) in streams.iter_mut().enumerate() {
        let events = until_resource(stream, "channels:created", &end).await;
        let titles = titles_in(&events, &ws);
        assert_eq!(titles.len(), 20, "node {}: {titles:?}", n + 1);
        let last_of_each: Vec<String> = titles.chunks(2).map(|pair| pair[1].clone()).collect();
        assert_eq!(last_of_each, kept, "node {}: {titles:?}", n + 1);
    }
}

/// Rows left in the outbox by a node that died keep each workspace's order: a change of A
/// finds an older row of A and B, takes B's lock too (waiting while the test holds it),
/// and publishes B's older row before that one, then its own event.
#[tokio::test]
async fn leftover_events_are_published_in_the_order_of_each_of_their_workspaces() {
    let (redis, postgres) = tokio::join!(Redis::start(), Postgres::start());
    let n1 = node(&redis, &postgres).await;
    let admin = AppClient::login(&n1, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (a, b) = (
        id_of(&admin.create_workspace("A").await),
        id_of(&admin.create_workspace("B").await),
    );
    let todo_a = id_of(&admin.create(&a, "todos", json!({"title": "a 0"})).await);
    let mut stream = admin.events("/api/events").open().await;

    // The test holds B's write lock, then leaves two rows as a dead node would have.
    let mut holder = postgres.session();
    let key_b = herald_app::db::lock_key(&format!("ws:{b}"));
    holder
        .send(&format!("SELECT pg_advisory_lock({key_b});"))
        .await;
    wait_for_count(
        &postgres,
        &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND s.application_name = '{PG_SESSION_NAME}'"
        ),
        1,
        "the test holds B's lock",
    )
    .await;
    let row = |uid: &str, ws: &str, topics: serde_json::Value, scope: &str, title: &str| {
        let data = json!({
            "id": uid, "type": "todos:created", "action": "created", "resourceType": "todos",
            "workspaceId": ws, "data": {"id": uid, "title": title}, "user": null,
        });
        format!(
            "('{uid}', '{topics}', 'todos:created', '{data}', '', 0, '{scope}')",
            topics = topics,
        )
    };
    postgres
        .psql(&format!(
            "INSERT INTO outbox (uid, topics, type, data, closes, created_at, scope) VALUES {}, {}",
            row(
                "left-1",
                &b,
                json!([format!("herald:ws/{b}")]),
                &format!(" ws:{b} "),
                "left in B"
            ),
            row(
                "left-2",
                &a,
                json!([format!("herald:ws/{a}"), format!("herald:ws/{b}")]),
                &format!(" ws:{a} ws:{b} "),
                "left in A and B"
            ),
        ))
        .await;

    // A change of A now needs B's lock as well.
    let change = tokio::spawn({
        let (client, path) = (admin.clone(), format!("/api/workspaces/{a}/todos/{todo_a}"));
        async move { client.patch(&path, &json!({"title": "a 1"})).await }
    });
    wait_for_count(
        &postgres,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        1,
        "a writer waits for B's lock",
    )
    .await;
    assert!(
        !change.is_finished(),
        "the change of A went ahead without B's lock"
    );
    holder.send("SELECT pg_advisory_unlock_all();").await;
    holder.end().await;
    change.await.expect("the change of A").expect(200);

    let events = until_resource(&mut stream, "todos:updated", &todo_a).await;
    let titles: Vec<&str> = events
        .iter()
        .filter_map(|e| e.data["data"]["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        ["left in B", "left in A and B", "a 1"],
        "{events:#?}"
    );
    let left: u32 = postgres
        .psql("SELECT count(*) FROM outbox")
        .await
        .parse()
        .expect("a count");
    assert_eq!(left, 0, "the published rows left the outbox");
}
