//! Who is online in a workspace: streams opened with `presence=true` show their user online
//! in each workspace they follow while they last, and follow who else is; the list reads
//! like any workspace read (members only, with its position), and no Mercure subscriber
//! hears of it.

use serde_json::{Value, json};

use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::support::{AppEvent, AppStream, AppWorld, admin_token, header, id_of, text};

/// The next `presence` event on `stream` about `user`; other events are skipped.
async fn presence_of(stream: &mut AppStream, user: &str) -> AppEvent {
    loop {
        let event = stream.next_event().await;
        if event.event == "presence" && event.data["payload"]["userId"] == user {
            return event;
        }
    }
}

// Rule: an open stream with presence makes its user listed once, with that stream's id;
// a stream without presence changes nothing; the read carries its log position.
#[tokio::test]
async fn the_list_shows_each_online_member_once_with_their_streams() {
    let world = AppWorld::start().await;
    let path = format!("/api/workspaces/{}/presence", world.ws);
    assert_eq!(world.bob.get(&path).await.expect(200)["items"], json!([]));

    let _alice = world.alice.events("/api/events?presence=true").open().await;
    let _plain = world.alice.events("/api/events").open().await;
    let reply = world.bob.get(&path).await;
    let position = reply.headers.get("herald-position").cloned();
    let body = reply.expect(200);
    assert!(position.is_some(), "no Herald-Position");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(text(&items[0], "userId"), world.alice.id());
    assert_eq!(text(&items[0], "name"), "Alice");
    let subscribers = items[0]["subscribers"].as_array().expect("subscribers");
    assert_eq!(subscribers.len(), 1, "{body}");
    assert!(
        subscribers[0]
            .as_str()
            .is_some_and(|s| s.starts_with("urn:uuid:"))
    );
}

// Rule: a member's arrival and departure reach the other members' presence streams live,
// as `presence` events on the workspace's presence topic.
#[tokio::test]
async fn arrivals_and_departures_reach_members_live() {
    let world = AppWorld::start().await;
    let mut alice = world.alice.events("/api/events?presence=true").open().await;
    let bob = world
        .bob
        .events(&format!(
            "/api/workspaces/{}/events?presence=true",
            world.ws
        ))
        .open()
        .await;
    let arrived = presence_of(&mut alice, &world.bob.id()).await;
    let topic = format!("herald:ws/{}/presence", world.ws);
    assert_eq!(arrived.data["id"], topic.as_str(), "{arrived:#?}");
    assert_eq!(arrived.data["type"], "Subscription");
    assert_eq!(arrived.data["active"], true);
    assert_eq!(
        arrived.data["payload"],
        json!({"userId": world.bob.id(), "name": "Bob"})
    );
    assert!(!arrived.id.is_empty(), "presence events carry log ids");

    drop(bob);
    let left = presence_of(&mut alice, &world.bob.id()).await;
    assert_eq!(left.data["active"], false);
    assert_eq!(left.data["subscriber"], arrived.data["subscriber"]);
}

// Rule: who is online is the workspace's business: its list is a 404 to a non-member, and
// neither another workspace's stream nor a Mercure subscriber with every claim receives it.
#[tokio::test]
async fn outsiders_neither_read_nor_hear_presence() {
    let world = AppWorld::start().await;
    world
        .carol
        .get(&format!("/api/workspaces/{}/presence", world.ws))
        .await
        .expect_error(404, "not_found");
    let mut carol = world.carol.events("/api/events?presence=true").open().await;
    let mut mercure = world
        .server
        .subscribe()
        .topic("*")
        .bearer(&admin_token())
        .open()
        .await;

    let bob = world.bob.events("/api/events?presence=true").open().await;
    drop(bob);
    // After Bob's stream is gone, a sentinel: Carol's own workspace gets a todo.
    let todo = world
        .carol
        .create(&world.carol_ws, "todos", json!({"title": "sentinel"}))
        .await;
    loop {
        let event = carol.next_event().await;
        if event.event == "presence" {
            assert_eq!(
                event.data["payload"]["userId"],
                world.carol.id(),
                "{event:#?}"
            );
            assert_ne!(
                event.data["id"],
                Value::from(format!("herald:ws/{}/presence", world.ws))
            );
        }
        if event.event == "todos:created" && event.data["data"]["id"] == id_of(&todo).as_str() {
            break;
        }
    }
    world
        .server
        .publish_id("https://example.com/end", "end")
        .await;
    assert_eq!(mercure.ids_until("end").await, ["end"]);
}

/// The users listed online in `world.ws`, as Alice reads them.
async fn online(world: &AppWorld) -> Value {
    let path = format!("/api/workspaces/{}/presence", world.ws);
    world.alice.get(&path).await.expect(200)["items"].clone()
}

/// Waits, for at most 10 s, until `world.ws` lists no one but Alice.
async fn until_only_alice(world: &AppWorld) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let items = online(world).await;
        let others = items
            .as_array()
            .expect("items")
            .iter()
            .filter(|user| user["userId"] != world.alice.id().as_str())
            .count();
        if others == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "still online: {items}");
        sleep(Duration::from_millis(50)).await;
    }
}

// Rule: a user is announced once per workspace however many streams they open: a join
// when the first opens, a leave when the last closes, and one listed subscriber.
#[tokio::test]
async fn a_user_with_many_streams_is_announced_once() {
    let world = AppWorld::start().await;
    let mut alice = world.alice.events("/api/events?presence=true").open().await;
    presence_of(&mut alice, &world.alice.id()).await;
    let first = world.bob.events("/api/events?presence=true").open().await;
    let second = world.bob.events("/api/events?presence=true").open().await;
    let items = online(&world).await;
    let bob = items
        .as_array()
        .expect("items")
        .iter()
        .find(|user| user["userId"] == world.bob.id().as_str())
        .unwrap_or_else(|| panic!("Bob is not listed: {items}"));
    assert_eq!(
        bob["subscribers"].as_array().map(Vec::len),
        Some(1),
        "{items}"
    );

    drop(first);
    drop(second);
    let joined = presence_of(&mut alice, &world.bob.id()).await;
    assert_eq!(joined.data["active"], true, "{joined:#?}");
    let left = presence_of(&mut alice, &world.bob.id()).await;
    assert_eq!(
        left.data["active"], false,
        "one join, then the leave: {left:#?}"
    );
    assert_eq!(left.data["subscriber"], joined.data["subscriber"]);
    // Nothing more about Bob up to a change made after his leave.
    let todo = world
        .alice
        .create(&world.ws, "todos", json!({"title": "sentinel"}))
        .await;
    loop {
        let event = alice.next_event().await;
        assert_ne!(
            event.data["payload"]["userId"],
            world.bob.id().as_str(),
            "{event:#?}"
        );
        if event.event == "todos:created" && event.data["data"]["id"] == id_of(&todo).as_str() {
            break;
        }
    }
}

// Rule: an admin who reads a workspace without being a member follows its presence but is
// not shown in it.
#[tokio::test]
async fn an_admin_outside_a_workspace_is_not_shown_in_it() {
    let world = AppWorld::start().await;
    let mut admin = world.admin.events("/api/events?presence=true").open().await;
    let _bob = world.bob.events("/api/events?presence=true").open().await;
    let arrived = presence_of(&mut admin, &world.bob.id()).await;
    assert_eq!(arrived.data["active"], true);
    let items = online(&world).await;
    let users: Vec<&str> = items
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|user| user["userId"].as_str())
        .collect();
    assert_eq!(users, [world.bob.id().as_str()], "{items}");
}

// Rule: presence announcements are charged to the user (`--presence-rate`); a stream whose
// announcements the user cannot pay for gets 429 with `Retry-After`, and another stream
// that announces nothing new is free.
#[tokio::test]
async fn presence_over_the_rate_is_refused() {
    let world = AppWorld::start_with(&["--presence-rate", "1/1h"]).await;
    let first = world.bob.events("/api/events?presence=true").open().await;
    let second = world.bob.events("/api/events?presence=true").open().await;
    drop((first, second));
    until_only_alice(&world).await;
    let response = world.bob.events("/api/events?presence=true").send().await;
    assert_eq!(response.status(), 429);
    assert!(
        header(response.headers(), "retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s > 0)
    );
    assert_eq!(online(&world).await, json!([]));
    let counted = world
        .server
        .metric("herald_rate_limited_total{limit=\"presence\"}")
        .await;
    assert_eq!(counted, 1.0);
    // Without presence, the stream costs nothing.
    world.bob.events("/api/events").open().await;
}

// Rule: a graceful stop ends its users' presence in the log: a client that resumes after a
// restart learns that they left.
#[tokio::test]
async fn a_graceful_stop_announces_that_everyone_left() {
    let mut world = AppWorld::start().await;
    let mut alice = world.alice.events("/api/events?presence=true").open().await;
    let _bob = world.bob.events("/api/events?presence=true").open().await;
    let arrived = presence_of(&mut alice, &world.bob.id()).await;
    assert_eq!(arrived.data["active"], true);
    drop(alice);

    assert!(world.server.terminate().await.success());
    world.server.restart().await;
    let mut resumed = world
        .alice
        .events("/api/events?presence=true")
        .last_event_id(&arrived.id)
        .open()
        .await;
    let left = presence_of(&mut resumed, &world.bob.id()).await;
    assert_eq!(left.data["active"], false, "{left:#?}");
    assert_eq!(left.data["subscriber"], arrived.data["subscriber"]);
}
