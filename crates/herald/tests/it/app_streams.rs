//! The app's event streams (`docs/app-api.md`) against a real server: who may open them,
//! which change reaches whom with what envelope, replay by `Last-Event-ID`, an event
//! exactly when a change commits, streams that end when access is lost, and notifications
//! and broadcasts.
//!
//! Absence is proved without waiting: after the change that must not arrive, a "marker"
//! change the stream may see is made, and the stream's next event must be the marker.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{
    AppClient, AppEvent, AppStream, AppWorld, ITEM_TIMEOUT, PASSWORD, SESSION_COOKIE,
    assert_utc_timestamp, id_of, keys, text,
};

/// How soon a stream ends once its user lost access (removed from the workspace, logged
/// out): generous for a local server even on a busy machine.
const REVOCATION_WITHIN: Duration = Duration::from_secs(1);

/// The keys of a change's envelope.
const CHANGE_KEYS: [&str; 8] = [
    "action",
    "data",
    "id",
    "resourceType",
    "timestamp",
    "type",
    "user",
    "workspaceId",
];

/// Asserts that `event` is the envelope of the change `kind` (`todos:created`) of
/// `resource` in `ws`, made by `by`.
#[track_caller]
fn assert_change(event: &AppEvent, kind: &str, ws: &str, resource: &Value, by: &AppClient) {
    let (resource_type, action) = kind.split_once(':').expect("collection:action");
    assert_eq!(event.event, kind, "{event:#?}");
    assert!(!event.id.is_empty(), "no SSE id: {event:#?}");
    assert_eq!(keys(&event.data), CHANGE_KEYS, "{event:#?}");
    let envelope = &event.data;
    assert_eq!(envelope["id"], event.id.as_str(), "the SSE id: {event:#?}");
    assert_eq!(envelope["type"], kind, "{event:#?}");
    assert_eq!(envelope["action"], action, "{event:#?}");
    assert_eq!(envelope["resourceType"], resource_type, "{event:#?}");
    assert_eq!(envelope["workspaceId"], ws, "{event:#?}");
    assert_eq!(&envelope["data"], resource, "the resource: {event:#?}");
    assert_eq!(envelope["user"], by.event_user(), "{event:#?}");
    assert_utc_timestamp(&envelope["timestamp"]);
}

/// `value` without its `role`, as events carry a workspace.
fn without_role(mut value: Value) -> Value {
    value
        .as_object_mut()
        .expect("a workspace object")
        .remove("role");
    value
}

/// Creates a todo titled `title` in `ws`; returns it.
async fn todo(by: &AppClient, ws: &str, title: &str) -> Value {
    by.create(ws, "todos", json!({"title": title})).await
}

/// Asserts that the next event of each stream is the creation of `todo` in `ws` by `by`.
async fn expect_created(streams: &mut [&mut AppStream], ws: &str, todo: &Value, by: &AppClient) {
    for stream in streams {
        let event = stream.next_event().await;
        assert_change(&event, "todos:created", ws, todo, by);
    }
}

#[tokio::test]
async fn streams_check_who_opens_them() {
    let world = AppWorld::start().await;
    let AppWorld {
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;
    let ws_events = world.ws_path("events");
    let anonymous = AppClient::anonymous(&world.server);
    let forged = AppClient::with_cookie(&world.server, &format!("{SESSION_COOKIE}=forged"));
    for who in [&anonymous, &forged] {
        for path in ["/api/events", ws_events.as_str()] {
            who.events(path).error(401, "unauthorized").await;
        }
    }
    carol.events(&ws_events).error(404, "not_found").await;
    carol
        .events(&format!("/api/events?workspace={ws}"))
        .error(404, "not_found")
        .await;
    let nothing = uuid::Uuid::new_v4();
    alice
        .events(&format!("/api/workspaces/{nothing}/events"))
        .error(404, "not_found")
        .await;
    alice
        .events("/api/events?types=todos,bogus")
        .error(400, "bad_request")
        .await;
    alice
        .events(&format!("{ws_events}?types=todo"))
        .error(400, "bad_request")
        .await;
    alice
        .events("/api/workspaces/not-a-uuid/events")
        .error(400, "bad_request")
        .await;

    // `connected` names the user and the workspaces of the stream.
    let stream = alice.events("/api/events").open().await;
    assert_eq!(stream.connected["userId"], alice.id());
    assert_eq!(stream.connected_workspaces(), vec![ws.clone()]);
    let stream = bob.events("/api/events").open().await;
    assert_eq!(stream.connected["userId"], bob.id());
    assert_eq!(stream.connected_workspaces(), vec![ws.clone()]);
    let stream = carol.events("/api/events").open().await;
    assert_eq!(stream.connected["userId"], carol.id());
    assert_eq!(stream.connected_workspaces(), vec![world.carol_ws.clone()]);
    let stream = bob.events(&ws_events).open().await;
    assert_eq!(stream.connected["userId"], bob.id());
    drop(stream);

    // Filters: by workspace, by type. (A second workspace first: creating one ends the
    // creator's streams.)
    let other = id_of(&alice.create_workspace("Other").await);
    let mut notes_here = alice
        .events(&format!("/api/events?workspace={ws}&types=notes"))
        .open()
        .await;
    let mut todos_only = alice.events("/api/events?types=todos").open().await;
    let mut here = alice.events(&ws_events).open().await;
    let todo_elsewhere = todo(alice, &other, "elsewhere").await;
    alice
        .create(&other, "notes", json!({"content": "elsewhere"}))
        .await;
    let todo_here = todo(alice, ws, "here").await;
    let note = alice.create(ws, "notes", json!({"content": "here"})).await;
    let event = notes_here.next_event().await;
    assert_change(&event, "notes:created", ws, &note, alice);
    expect_created(&mut [&mut todos_only], &other, &todo_elsewhere, alice).await;
    expect_created(&mut [&mut todos_only, &mut here], ws, &todo_here, alice).await;
    let event = here.next_event().await;
    assert_change(&event, "notes:created", ws, &note, alice);
    let marker = todo(alice, ws, "marker").await;
    expect_created(&mut [&mut todos_only, &mut here], ws, &marker, alice).await;
}

#[tokio::test]
async fn changes_reach_exactly_who_may_see_them() {
    let world = AppWorld::start().await;
    let AppWorld {
        admin,
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;
    let dave = admin
        .new_member(&world.server, "dave@example.com", "Dave")
        .await;
    let mut alice_all = alice.events("/api/events").open().await;
    let mut bob_all = bob.events("/api/events").open().await;
    let mut bob_ws = bob.events(&world.ws_path("events")).open().await;
    let mut carol_all = carol.events("/api/events").open().await;
    let mut admin_all = admin.events("/api/events").open().await;

    let created = todo(alice, ws, "ship it").await;
    let todo_path = world.ws_path(&format!("todos/{}", id_of(&created)));
    let updated = bob
        .patch(&todo_path, &json!({"done": true}))
        .await
        .expect(200);
    alice.delete(&todo_path).await.expect(204);
    let note = alice
        .create(ws, "notes", json!({"content": "for Alice's eyes"}))
        .await;
    let channel = bob.create(ws, "channels", json!({"name": "random"})).await;
    let member = alice.add_member(ws, &dave.id(), "member").await;
    let renamed = alice
        .patch(&world.ws_path(""), &json!({"name": "Team 2"}))
        .await
        .expect(200);
    let marker = todo(alice, ws, "marker").await;

    // Alice sees every change, in order; a deleted todo carries its last state.
    let expected: [(&str, &Value, &AppClient); 8] = [
        ("todos:created", &created, alice),
        ("todos:updated", &updated, bob),
        ("todos:deleted", &updated, alice),
        ("notes:created", &note, alice),
        ("channels:created", &channel, bob),
        ("members:added", &member, alice),
        ("workspaces:updated", &without_role(renamed), alice),
        ("todos:created", &marker, alice),
    ];
    let mut seen = Vec::new();
    for (kind, resource, by) in expected {
        let event = alice_all.next_event().await;
        assert_change(&event, kind, ws, resource, by);
        seen.push(event);
    }
    let mut distinct: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), seen.len(), "an id twice: {seen:#?}");
    let marker_id = seen.last().unwrap().id.clone();

    // The admin sees the same events; Bob all but Alice's note, on either stream.
    assert_eq!(admin_all.events_until(&marker_id).await, seen);
    let without_note: Vec<AppEvent> = seen
        .iter()
        .filter(|e| e.event != "notes:created")
        .cloned()
        .collect();
    assert_eq!(bob_all.events_until(&marker_id).await, without_note);
    assert_eq!(bob_ws.events_until(&marker_id).await, without_note);

    // Carol, in none of it: her next event is her own change.
    let carols = todo(carol, &world.carol_ws, "Carol's marker").await;
    expect_created(
        &mut [&mut carol_all, &mut admin_all],
        &world.carol_ws,
        &carols,
        carol,
    )
    .await;

    // Bob's own note reaches Bob and the admin, not Alice.
    let bobs = bob.create(ws, "notes", json!({"content": "Bob's"})).await;
    let marker = todo(bob, ws, "second marker").await;
    for stream in [&mut bob_all, &mut bob_ws, &mut admin_all] {
        let event = stream.next_event().await;
        assert_change(&event, "notes:created", ws, &bobs, bob);
    }
    expect_created(
        &mut [&mut alice_all, &mut bob_all, &mut bob_ws, &mut admin_all],
        ws,
        &marker,
        bob,
    )
    .await;
}

#[tokio::test]
async fn replay_resumes_with_exactly_the_missed_visible_events() {
    let world = AppWorld::start().await;
    let AppWorld { alice, bob, ws, .. } = &world;
    // Alice's stream sees everything: the reference for ids.
    let mut alice_all = alice.events("/api/events").open().await;
    let mut bob_all = bob.events("/api/events").open().await;
    let first = todo(alice, ws, "seen").await;
    let seen = bob_all.next_event().await;
    assert_change(&seen, "todos:created", ws, &first, alice);
    assert_eq!(alice_all.next_event().await, seen);
    drop(bob_all);

    // While Bob is away.
    let second = todo(alice, ws, "missed").await;
    alice
        .create(ws, "notes", json!({"content": "not for Bob"}))
        .await;
    let second_path = world.ws_path(&format!("todos/{}", id_of(&second)));
    alice
        .patch(&second_path, &json!({"done": true}))
        .await
        .expect(200);
    alice
        .delete(&world.ws_path(&format!("todos/{}", id_of(&first))))
        .await
        .expect(204);
    alice
        .create(ws, "channels", json!({"name": "missed"}))
        .await;
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(alice_all.next_event().await);
    }
    let kinds: Vec<&str> = missed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "todos:created",
            "notes:created",
            "todos:updated",
            "todos:deleted",
            "channels:created"
        ]
    );
    missed.retain(|e| e.event != "notes:created");

    // Each way of resuming gets exactly what Bob missed and may see, in order, then live
    // events, nothing twice. Each round's live marker is missed by the next ones.
    let by_query = format!("/api/events?lastEventId={}", seen.id);
    let rounds = [
        ("header", bob.events("/api/events").last_event_id(&seen.id)),
        ("query", bob.events(&by_query)),
        (
            "workspace stream",
            bob.events(&world.ws_path("events")).last_event_id(&seen.id),
        ),
    ];
    let mut expected = missed;
    for (how, request) in rounds {
        let mut again = request.open().await;
        let marker = todo(alice, ws, &format!("live after the {how}")).await;
        let marker_event = alice_all.next_event().await;
        assert_change(&marker_event, "todos:created", ws, &marker, alice);
        expected.push(marker_event.clone());
        assert_eq!(
            again.events_until(&marker_event.id).await,
            expected,
            "{how}"
        );
        let live = todo(alice, ws, &format!("second live after the {how}")).await;
        let live_event = again.next_event().await;
        assert_change(&live_event, "todos:created", ws, &live, alice);
        assert_eq!(alice_all.next_event().await, live_event);
        expected.push(live_event);
    }

    // Resuming from the newest id replays nothing.
    let newest = expected.last().unwrap().id.clone();
    let mut again = bob
        .events("/api/events")
        .last_event_id(&newest)
        .open()
        .await;
    let live = todo(alice, ws, "after the newest").await;
    expect_created(&mut [&mut again], ws, &live, alice).await;

    // An id the log does not know: `reset` (reload state), then live events.
    let mut unknown = bob
        .events("/api/events")
        .last_event_id("no-such-event")
        .open()
        .await;
    let reset = unknown.next_event().await;
    assert_eq!(reset.event, "reset", "{reset:#?}");
    let live = todo(alice, ws, "after the reset").await;
    expect_created(&mut [&mut unknown], ws, &live, alice).await;
}

#[tokio::test]
async fn failed_changes_emit_nothing() {
    let world = AppWorld::start().await;
    let AppWorld {
        admin,
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;
    let note = alice
        .create(ws, "notes", json!({"content": "Alice's"}))
        .await;
    let existing = todo(alice, ws, "existing").await;
    let general = id_of(&alice.items(&world.ws_path("channels")).await[0]);
    let todos = world.ws_path("todos");
    let existing_path = format!("{todos}/{}", id_of(&existing));
    let note_path = world.ws_path(&format!("notes/{}", id_of(&note)));
    let members = world.ws_path("members");
    let nothing = uuid::Uuid::new_v4().to_string();
    let mut alice_all = alice.events("/api/events").open().await;
    let mut bob_all = bob.events("/api/events").open().await;
    let mut admin_all = admin.events("/api/events").open().await;

    let json_type = Some("application/json");
    let valid = || Some(br#"{"title":"valid"}"#.to_vec());
    let huge = serde_json::to_vec(&json!({"title": "t".repeat(70 * 1024)})).unwrap();
    alice
        .delete(&world.ws_path(&format!("channels/{general}")))
        .await
        .expect_error(409, "conflict");
    alice
        .post(&todos, &json!({"title": ""}))
        .await
        .expect_error(400, "bad_request");
    alice
        .raw(Method::POST, &todos, json_type, Some(b"{".to_vec()), &[])
        .await
        .expect_error(400, "bad_request");
    alice
        .raw(Method::POST, &todos, Some("text/plain"), valid(), &[])
        .await
        .expect_error(415, "unsupported_media_type");
    alice
        .raw(Method::POST, &todos, json_type, Some(huge), &[])
        .await
        .expect_error(413, "payload_too_large");
    alice
        .raw(
            Method::POST,
            &todos,
            json_type,
            valid(),
            &[("origin", "http://evil.example.com")],
        )
        .await
        .expect_error(403, "forbidden");
    alice
        .patch(&existing_path, &json!({"title": "t".repeat(501)}))
        .await
        .expect_error(400, "bad_request");
    alice
        .patch(&format!("{todos}/{nothing}"), &json!({"title": "x"}))
        .await
        .expect_error(404, "not_found");
    alice
        .delete(&format!("{todos}/{nothing}"))
        .await
        .expect_error(404, "not_found");
    bob.patch(&note_path, &json!({"content": "hijacked"}))
        .await
        .expect_error(404, "not_found");
    bob.delete(&note_path).await.expect_error(404, "not_found");
    bob.patch(&world.ws_path(""), &json!({"name": "Bob's"}))
        .await
        .expect_error(403, "forbidden");
    bob.delete(&world.ws_path(""))
        .await
        .expect_error(403, "forbidden");
    alice
        .patch(&world.ws_path(""), &json!({"name": ""}))
        .await
        .expect_error(400, "bad_request");
    alice
        .post(&members, &json!({"userId": bob.id(), "role": "member"}))
        .await
        .expect_error(409, "conflict");
    alice
        .post(&members, &json!({"userId": nothing, "role": "member"}))
        .await
        .expect_error(404, "not_found");
    alice
        .delete(&format!("{members}/{}", alice.id()))
        .await
        .expect_error(409, "conflict");
    carol
        .post(&todos, &json!({"title": "intruder"}))
        .await
        .expect_error(404, "not_found");
    carol
        .delete(&existing_path)
        .await
        .expect_error(404, "not_found");
    bob.post("/api/notify", &json!({"userId": alice.id(), "data": 1}))
        .await
        .expect_error(403, "forbidden");
    bob.post(&world.ws_path("broadcast"), &json!({"data": 1}))
        .await
        .expect_error(403, "forbidden");
    alice
        .post("/api/workspaces", &json!({"name": ""}))
        .await
        .expect_error(400, "bad_request");
    let duplicate =
        json!({"email": "alice@example.com", "name": "A", "password": PASSWORD, "role": "member"});
    admin
        .post("/api/users", &duplicate)
        .await
        .expect_error(409, "conflict");

    // The next event anyone gets is the first change that succeeded.
    let after = todo(alice, ws, "after the failures").await;
    expect_created(
        &mut [&mut alice_all, &mut bob_all, &mut admin_all],
        ws,
        &after,
        alice,
    )
    .await;
}

#[tokio::test]
async fn losing_access_ends_open_streams() {
    let world = AppWorld::start().await;
    let AppWorld {
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;
    let members = world.ws_path("members");
    let bob_member = alice
        .items(&members)
        .await
        .into_iter()
        .find(|m| m["userId"] == bob.id())
        .expect("Bob is a member");
    // Bob's own workspace, made before his streams open (creating one ends them).
    let bobs_ws = id_of(&bob.create_workspace("Bob's").await);
    let mut bob_all = bob.events("/api/events").open().await;
    let mut bob_ws = bob.events(&world.ws_path("events")).open().await;
    let mut alice_all = alice.events("/api/events").open().await;

    // Removed: Bob's streams tell him, then end.
    let started = Instant::now();
    alice
        .delete(&format!("{members}/{}", bob.id()))
        .await
        .expect(204);
    let deadline = started + REVOCATION_WITHIN;
    let mut removed = None;
    for stream in [&mut bob_all, &mut bob_ws] {
        let event = stream.next_event().await;
        assert_change(&event, "members:removed", ws, &bob_member, alice);
        stream
            .expect_end(deadline.saturating_duration_since(Instant::now()))
            .await;
        removed = Some(event);
    }
    let removed = removed.unwrap();
    // Alice's stream goes on.
    assert_eq!(alice_all.next_event().await, removed);

    // Nothing of the workspace reaches Bob any more: not a new stream, nor a resumed one.
    bob.events(&world.ws_path("events"))
        .error(404, "not_found")
        .await;
    bob.events(&format!("/api/events?workspace={ws}"))
        .error(404, "not_found")
        .await;
    let hidden = todo(alice, ws, "after Bob left").await;
    let hidden_event = alice_all.next_event().await;
    assert_change(&hidden_event, "todos:created", ws, &hidden, alice);
    let visible = todo(bob, &bobs_ws, "Bob's own").await;
    let mut resumed = bob
        .events("/api/events")
        .last_event_id(&removed.id)
        .open()
        .await;
    assert_eq!(resumed.connected_workspaces(), vec![bobs_ws.clone()]);
    expect_created(&mut [&mut resumed], &bobs_ws, &visible, bob).await;
    let hidden = todo(alice, ws, "later, after Bob left").await;
    let visible = todo(bob, &bobs_ws, "Bob's second").await;
    expect_created(&mut [&mut resumed], &bobs_ws, &visible, bob).await;
    expect_created(&mut [&mut alice_all], ws, &hidden, alice).await;

    // Added: the stream tells, then ends, so that the next one includes the workspace.
    let mut carol_all = carol.events("/api/events").open().await;
    let carol_member = alice.add_member(ws, &carol.id(), "member").await;
    let added = carol_all.next_event().await;
    assert_change(&added, "members:added", ws, &carol_member, alice);
    carol_all.expect_end(ITEM_TIMEOUT).await;
    let mut carol_ws = [ws.clone(), world.carol_ws.clone()];
    carol_ws.sort_unstable();
    assert_eq!(
        carol
            .events("/api/events")
            .open()
            .await
            .connected_workspaces(),
        carol_ws
    );

    // Creating a workspace ends the creator's stream after its event, likewise.
    let mut alice_fresh = alice.events("/api/events").open().await;
    let created = without_role(alice.create_workspace("Fresh").await);
    let fresh = id_of(&created);
    let mut seen_created = false;
    loop {
        match alice_fresh.next_event_within(ITEM_TIMEOUT).await {
            Ok(None) => break,
            Ok(Some(event)) if event.event == "workspaces:created" => {
                assert_change(&event, "workspaces:created", &fresh, &created, alice);
                seen_created = true;
            }
            // The creator may also be told that she became its owner.
            Ok(Some(event)) => {
                assert_eq!(event.event, "members:added", "{event:#?}");
                assert_eq!(event.data["workspaceId"], fresh.as_str(), "{event:#?}");
            }
            Err(()) => panic!("the stream did not end within {ITEM_TIMEOUT:?}"),
        }
    }
    assert!(seen_created, "no workspaces:created before the end");

    // Logout ends the streams of that session, and only those.
    let bob_again = AppClient::login(&world.server, "bob@example.com", PASSWORD).await;
    let mut doomed = bob_again.events("/api/events").open().await;
    let started = Instant::now();
    bob_again
        .call(Method::POST, "/api/logout", None)
        .await
        .expect(204);
    doomed
        .expect_end((started + REVOCATION_WITHIN).saturating_duration_since(Instant::now()))
        .await;
    bob_again
        .events("/api/events")
        .error(401, "unauthorized")
        .await;
    bob_again
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
    let still = todo(bob, &bobs_ws, "the other session lives").await;
    expect_created(&mut [&mut resumed], &bobs_ws, &still, bob).await;
}

/// Asserts that `event` is the notification `id` to `to` with `data`, sent by `by`.
#[track_caller]
fn assert_notification(event: &AppEvent, id: &str, to: &AppClient, data: &Value, by: &AppClient) {
    assert_eq!(event.event, "notification", "{event:#?}");
    assert_eq!(event.id, id, "{event:#?}");
    assert_eq!(
        keys(&event.data),
        ["data", "id", "timestamp", "type", "user", "userId"],
        "{event:#?}"
    );
    assert_eq!(event.data["id"], id);
    assert_eq!(event.data["type"], "notification");
    assert_eq!(event.data["userId"], to.id());
    assert_eq!(&event.data["data"], data);
    assert_eq!(event.data["user"], by.event_user());
    assert_utc_timestamp(&event.data["timestamp"]);
}

/// Asserts that `event` is the announcement `id` to `ws` with `data`, sent by `by`.
#[track_caller]
fn assert_announcement(event: &AppEvent, id: &str, ws: &str, data: &Value, by: &AppClient) {
    assert_eq!(event.event, "announcement", "{event:#?}");
    assert_eq!(event.id, id, "{event:#?}");
    assert_eq!(
        keys(&event.data),
        ["data", "id", "timestamp", "type", "user", "workspaceId"],
        "{event:#?}"
    );
    assert_eq!(event.data["id"], id);
    assert_eq!(event.data["type"], "announcement");
    assert_eq!(event.data["workspaceId"], ws);
    assert_eq!(&event.data["data"], data);
    assert_eq!(event.data["user"], by.event_user());
    assert_utc_timestamp(&event.data["timestamp"]);
}

#[tokio::test]
async fn notifications_and_broadcasts_reach_only_their_audience() {
    let world = AppWorld::start().await;
    let AppWorld {
        admin,
        alice,
        bob,
        carol,
        ws,
        carol_ws,
        ..
    } = &world;
    let mut alice_all = alice.events("/api/events").open().await;
    let mut bob_all = bob.events("/api/events").open().await;
    let mut bob_ws = bob.events(&world.ws_path("events")).open().await;
    let mut carol_all = carol.events("/api/events").open().await;
    let mut admin_all = admin.events("/api/events").open().await;

    // A notification reaches the streams of its user only.
    let data = json!({"text": "hello Bob", "n": [1, 2, null]});
    let sent = admin
        .post("/api/notify", &json!({"userId": bob.id(), "data": data}))
        .await
        .expect(202);
    assert_eq!(keys(&sent), ["id"]);
    let id = text(&sent, "id");
    for stream in [&mut bob_all, &mut bob_ws] {
        let event = stream.next_event().await;
        assert_notification(&event, &id, bob, &data, admin);
    }
    let marker = todo(alice, ws, "marker").await;
    expect_created(
        &mut [&mut alice_all, &mut bob_all, &mut bob_ws, &mut admin_all],
        ws,
        &marker,
        alice,
    )
    .await;
    let carols = todo(carol, carol_ws, "Carol's marker").await;
    expect_created(&mut [&mut carol_all], carol_ws, &carols, carol).await;
    // The admin sees Carol's workspace too.
    expect_created(&mut [&mut admin_all], carol_ws, &carols, carol).await;

    // Who may notify: admins, not owners or members; and bad bodies.
    for who in [alice, bob] {
        who.post("/api/notify", &json!({"userId": carol.id(), "data": "x"}))
            .await
            .expect_error(403, "forbidden");
    }
    for body in [
        json!({"userId": "bob", "data": "x"}),
        json!({"userId": bob.id()}),
        json!({"userId": bob.id(), "data": "x", "urgent": true}),
    ] {
        admin
            .post("/api/notify", &body)
            .await
            .expect_error(400, "bad_request");
    }

    // Who may broadcast: owners and admins, not members; non-members do not see it.
    bob.post(&world.ws_path("broadcast"), &json!({"data": "x"}))
        .await
        .expect_error(403, "forbidden");
    carol
        .post(&world.ws_path("broadcast"), &json!({"data": "x"}))
        .await
        .expect_error(404, "not_found");

    // A broadcast reaches every member's stream, and not a non-member's. (Whether an
    // admin who is not a member receives it is not specified: the admin's stream stops.)
    drop(admin_all);
    let data = json!({"text": "all hands"});
    let sent = alice
        .post(&world.ws_path("broadcast"), &json!({"data": data}))
        .await
        .expect(202);
    assert_eq!(keys(&sent), ["id"]);
    let id = text(&sent, "id");
    for stream in [&mut alice_all, &mut bob_all, &mut bob_ws] {
        let event = stream.next_event().await;
        assert_announcement(&event, &id, ws, &data, alice);
    }
    let carols = todo(carol, carol_ws, "Carol's second marker").await;
    expect_created(&mut [&mut carol_all], carol_ws, &carols, carol).await;

    // An admin broadcasts too; any JSON is data.
    let data = json!([1, "two", {"three": 3}]);
    let sent = admin
        .post(&world.ws_path("broadcast"), &json!({"data": data}))
        .await
        .expect(202);
    let id = text(&sent, "id");
    for stream in [&mut alice_all, &mut bob_all, &mut bob_ws] {
        let event = stream.next_event().await;
        assert_announcement(&event, &id, ws, &data, admin);
    }
    let marker = todo(bob, ws, "last marker").await;
    expect_created(
        &mut [&mut alice_all, &mut bob_all, &mut bob_ws],
        ws,
        &marker,
        bob,
    )
    .await;
}

#[tokio::test]
async fn a_new_member_is_not_replayed_what_happened_before_they_joined() {
    let world = AppWorld::start().await;
    let AppWorld {
        alice,
        bob,
        carol,
        ws,
        ..
    } = &world;
    // Before Carol joins: a todo is made and deleted. Its content must not reach her. Bob,
    // a member all along, sees it live.
    let mut bob_live = bob.events(&world.ws_path("events")).open().await;
    let secret = todo(alice, ws, "made and deleted before Carol joined").await;
    alice
        .delete(&world.ws_path(&format!("todos/{}", id_of(&secret))))
        .await
        .expect(204);
    let created = bob_live.next_event().await;
    assert_change(&created, "todos:created", ws, &secret, alice);
    alice.add_member(ws, &carol.id(), "member").await;

    // Resuming from the beginning replays what happened since she joined, starting with
    // her own arrival, and nothing of before.
    let mut from_start = carol
        .events(&world.ws_path("events"))
        .last_event_id("earliest")
        .open()
        .await;
    // (Her own events — she created a workspace of her own first — come through her own
    // topic.)
    let joined = loop {
        let event = from_start.next_event().await;
        assert!(
            !event.event.starts_with("todos:"),
            "replayed from before Carol joined: {event:#?}"
        );
        if event.event == "members:added" {
            break event;
        }
    };
    assert_eq!(joined.data["data"]["userId"], carol.id().as_str());
    let after = todo(alice, ws, "after Carol joined").await;
    expect_created(&mut [&mut from_start], ws, &after, alice).await;

    // From an id of after she joined, the replay is exact.
    let mut resumed = carol
        .events(&world.ws_path("events"))
        .last_event_id(&joined.id)
        .open()
        .await;
    expect_created(&mut [&mut resumed], ws, &after, alice).await;

    // Bob, a member since before those changes, is replayed them.
    let mut bob_resumed = bob
        .events(&world.ws_path("events"))
        .last_event_id(&created.id)
        .open()
        .await;
    let deleted = bob_resumed.next_event().await;
    assert_change(&deleted, "todos:deleted", ws, &secret, alice);
}
