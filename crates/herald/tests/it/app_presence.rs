//! Who is online in a workspace: streams opened with `presence=true` show their user online
//! in each workspace they follow while they last, and follow who else is; the list reads
//! like any workspace read (members only, with its position), and no Mercure subscriber
//! hears of it.

use serde_json::{Value, json};

use crate::support::{AppEvent, AppStream, AppWorld, admin_token, id_of, text};

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
