//! Snapshot, then stream: every read of the app says which log position it is consistent
//! with (`Herald-Position`), and `/api/events?after=<position>` starts right after it, so a
//! client that loads and then subscribes neither misses nor repeats a change made in
//! between.
//!
//! Absence is proved without waiting: after the change that must not arrive, a "marker"
//! change the stream may see is made, and the stream's next event must be the marker.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, AppWorld, Reply, TestServer, header, id_of,
};

/// The position a read answered with.
#[track_caller]
fn position_of(reply: &Reply) -> u64 {
    let value = header(&reply.headers, "herald-position");
    value.parse().unwrap_or_else(|_| {
        panic!(
            "{}: Herald-Position {value:?} is not a position; headers {:?}",
            reply.what, reply.headers
        )
    })
}

/// Creates a todo titled `title` in `ws`; returns it.
async fn todo(by: &AppClient, ws: &str, title: &str) -> Value {
    by.create(ws, "todos", json!({"title": title})).await
}

/// The position of a `GET path` that answers 200.
async fn read_position(client: &AppClient, path: &str) -> u64 {
    let reply = client.get(path).await;
    let position = position_of(&reply);
    reply.expect(200);
    position
}

#[tokio::test]
async fn every_read_says_its_position() {
    let world = AppWorld::start().await;
    let AppWorld { alice, ws, .. } = &world;
    let todo = todo(alice, ws, "one").await;
    let note = alice.create(ws, "notes", json!({"content": "mine"})).await;
    let token = alice
        .post("/api/tokens", &json!({"name": "ci"}))
        .await
        .expect(201);
    let channel = &alice.items(&world.ws_path("channels")).await[0];
    let reads = [
        "/api/me".to_owned(),
        "/api/users".to_owned(),
        "/api/tokens".to_owned(),
        "/api/workspaces".to_owned(),
        world.ws_path(""),
        world.ws_path("members"),
        world.ws_path("todos"),
        world.ws_path(&format!("todos/{}", id_of(&todo))),
        world.ws_path("channels"),
        world.ws_path(&format!("channels/{}", id_of(channel))),
        world.ws_path("notes"),
        world.ws_path(&format!("notes/{}", id_of(&note))),
    ];
    let head = read_position(alice, "/api/me").await;
    assert!(head > 0, "changes were made: the position is past them");
    for path in &reads {
        assert_eq!(read_position(alice, path).await, head, "GET {path}");
    }
    // A token's reads too.
    let bearer = AppClient::with_bearer(&world.server, token["token"].as_str().unwrap());
    assert_eq!(read_position(&bearer, &world.ws_path("todos")).await, head);
    // A refused read says nothing of the log.
    let refused = world.carol.get(&world.ws_path("todos")).await;
    assert_eq!(header(&refused.headers, "herald-position"), "");
    refused.expect_error(404, "not_found");
}

#[tokio::test]
async fn a_stream_after_a_read_gets_each_change_made_since_exactly_once() {
    let world = AppWorld::start().await;
    let AppWorld { alice, bob, ws, .. } = &world;
    let mut position = 0;
    let mut between = Value::Null;
    for path in ["/api/events".to_owned(), world.ws_path("events")] {
        let before = todo(alice, ws, "before the read").await;
        let list = bob.get(&world.ws_path("todos")).await;
        position = position_of(&list);
        let items = list.expect(200)["items"].clone();
        assert!(
            items.as_array().unwrap().contains(&before),
            "the read holds what came before it: {items}"
        );
        between = todo(alice, ws, "between the read and the stream").await;
        let mut stream = bob.events(&format!("{path}?after={position}")).open().await;
        let marker = todo(alice, ws, "marker").await;
        let first = stream.next_event().await;
        assert_eq!(first.event, "todos:created", "{path}: {first:#?}");
        assert_eq!(first.data["data"], between, "{path}: {first:#?}");
        // Nothing before the read, and the change in between once: the marker is next.
        let next = stream.next_event().await;
        assert_eq!(next.data["data"], marker, "{path}: {next:#?}");
    }

    // A long-poll after the position answers with the change in between.
    let reply = bob
        .raw(
            Method::GET,
            &format!("/api/events?after={position}"),
            None,
            None,
            &[("accept", "application/json")],
        )
        .await
        .expect(200);
    let events: Vec<&Value> = reply["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {reply}"))
        .iter()
        .filter(|event| event["type"] == "todos:created")
        .collect();
    assert!(!events.is_empty(), "the poll waited for nothing: {reply}");
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["data"], between, "{reply}");
}

#[tokio::test]
async fn the_position_moves_by_the_events_a_change_emits() {
    let world = AppWorld::start().await;
    let AppWorld { alice, ws, .. } = &world;
    let start = read_position(alice, "/api/workspaces").await;
    // A todo: one event.
    let first = todo(alice, ws, "one").await;
    let after_todo = read_position(alice, &world.ws_path("todos")).await;
    assert_eq!(after_todo, start + 1);
    // A workspace: its creation and its `general` channel's.
    alice.create_workspace("Two events").await;
    let after_workspace = read_position(alice, "/api/workspaces").await;
    assert_eq!(after_workspace, after_todo + 2);

    // The position is the todo's: a stream after `start` gets the todo first, one after
    // `after_todo` does not get it.
    let mut from_start = alice
        .events(&format!("/api/events?after={start}"))
        .open()
        .await;
    let replayed = from_start.next_event().await;
    assert_eq!(replayed.data["data"], first, "{replayed:#?}");
    let mut from_todo = alice
        .events(&format!("/api/events?after={after_todo}"))
        .open()
        .await;
    let created = from_todo.next_event().await;
    assert_eq!(created.event, "workspaces:created", "{created:#?}");
    let mut from_head = alice
        .events(&format!("/api/events?after={after_workspace}"))
        .open()
        .await;
    let marker = todo(alice, ws, "marker").await;
    assert_eq!(from_head.next_event().await.data["data"], marker);
}

#[tokio::test]
async fn last_event_id_wins_over_a_position() {
    let world = AppWorld::start().await;
    let AppWorld { alice, bob, ws, .. } = &world;
    let position = read_position(bob, &world.ws_path("todos")).await;
    todo(alice, ws, "first").await;
    let second = todo(alice, ws, "second").await;
    let mut live = bob
        .events(&format!("/api/events?after={position}"))
        .open()
        .await;
    let first_event = live.next_event().await;
    assert_eq!(first_event.data["data"]["title"], "first");
    // Resuming from the first event's id, with the old position still in the URL (as a
    // browser reconnects): the id decides.
    for resumed in [
        bob.events(&format!("/api/events?after={position}"))
            .last_event_id(&first_event.id)
            .open()
            .await,
        bob.events(&format!(
            "/api/events?after={position}&lastEventId={}",
            first_event.id
        ))
        .open()
        .await,
    ] {
        let mut resumed = resumed;
        assert_eq!(resumed.next_event().await.data["data"], second);
    }
}

#[tokio::test]
async fn a_bad_position_is_a_400_that_says_why() {
    let world = AppWorld::start().await;
    let AppWorld { bob, .. } = &world;
    let head = read_position(bob, "/api/workspaces").await;
    let cases = [
        ("abc", "not a number"),
        ("-1", "not a number"),
        ("", "not a number"),
        ("1.5", "not a number"),
        ("%2B1", "not a number"),
        ("123456789012345678901", "longer than 20"),
        ("99999999999999999999", "larger than any position"),
    ];
    for path in ["/api/events".to_owned(), world.ws_path("events")] {
        for (after, why) in cases {
            let error = bob
                .events(&format!("{path}?after={after}"))
                .error(400, "bad_request")
                .await;
            assert!(
                error.message.contains("after must be a log position")
                    && error.message.contains(why),
                "{path}?after={after}: {error:?}"
            );
        }
        let ahead = head + 1000;
        let error = bob
            .events(&format!("{path}?after={ahead}"))
            .error(400, "bad_request")
            .await;
        assert!(
            error
                .message
                .contains(&format!("position {ahead} is beyond the newest")),
            "{error:?}"
        );
    }
    // The long-poll says the same.
    let reply = bob
        .raw(
            Method::GET,
            "/api/events?after=x",
            None,
            None,
            &[("accept", "application/json")],
        )
        .await;
    reply.expect_error(400, "bad_request");
}

#[tokio::test]
async fn an_old_position_replays_nothing_from_before_a_member_joined() {
    let world = AppWorld::start().await;
    let AppWorld {
        alice, carol, ws, ..
    } = &world;
    // A position from before anything happened in the workspace.
    let old = read_position(carol, "/api/workspaces").await;
    let secret = todo(alice, ws, "made before Carol joined").await;
    alice
        .patch(
            &world.ws_path(&format!("todos/{}", id_of(&secret))),
            &json!({"done": true}),
        )
        .await
        .expect(200);
    alice.add_member(ws, &carol.id(), "member").await;
    let after = todo(alice, ws, "after Carol joined").await;

    let mut stream = carol
        .events(&format!("{}?after={old}", world.ws_path("events")))
        .open()
        .await;
    let joined = stream.next_event().await;
    assert_eq!(joined.event, "members:added", "{joined:#?}");
    assert_eq!(joined.data["data"]["userId"], carol.id().as_str());
    let next = stream.next_event().await;
    assert_eq!(
        next.data["data"], after,
        "replayed from before she joined: {next:#?}"
    );
}

#[tokio::test]
async fn cors_exposes_the_position_to_listed_origins() {
    const ORIGIN: &str = "https://app.example.com";
    let server = TestServer::with_env(
        &[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        &["--cors-origin", ORIGIN],
    )
    .await;
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let reply = admin
        .raw(
            Method::GET,
            "/api/workspaces",
            None,
            None,
            &[("origin", ORIGIN)],
        )
        .await;
    assert_eq!(
        header(&reply.headers, "access-control-allow-origin"),
        ORIGIN
    );
    let exposed = header(&reply.headers, "access-control-expose-headers").to_ascii_lowercase();
    assert!(
        exposed
            .split(',')
            .any(|name| name.trim() == "herald-position"),
        "exposed: {exposed:?}"
    );
    position_of(&reply);
    reply.expect(200);
}
