//! The reserved namespace: the app's topics (`herald:…`) are out of reach of Mercure
//! tokens, whatever their claims. A subscriber allowed everything replays and receives
//! nothing of the app; a publisher allowed everything cannot put an update into a user's
//! app stream; naming a reserved topic is refused with a JSON reason.

use serde_json::json;

use crate::support::{AppWorld, text, token};

#[tokio::test]
async fn mercure_tokens_never_reach_the_apps_topics() {
    let world = AppWorld::start().await;
    let server = &world.server;
    let note = world
        .alice
        .create(&world.ws, "notes", json!({"content": "private plans"}))
        .await;
    let todo = world
        .bob
        .create(&world.ws, "todos", json!({"title": "shared"}))
        .await;
    let alice_id = world.alice.id();
    let mut alice_stream = world.alice.events("/api/events").open().await;

    // Everything, from the beginning, with a token allowed every topic and every private
    // update: only the Mercure sentinel arrives, none of the app's events.
    let everything = token(&["*"], &["*"]);
    let mut all = server
        .subscribe()
        .topic("*")
        .topic("{+anything}")
        .bearer(&everything)
        .query("lastEventID", "earliest")
        .open()
        .await;
    // Live too: a change made now does not reach it either.
    world
        .alice
        .create(&world.ws, "todos", json!({"title": "live"}))
        .await;
    server
        .publish_id("https://example.com/sentinel", "sentinel")
        .await;
    let seen = all.ids_until("sentinel").await;
    assert_eq!(
        seen,
        ["sentinel"],
        "app events reached a Mercure subscriber"
    );
    let frames = format!("{seen:?}");
    for id in [text(&note, "id"), text(&todo, "id")] {
        assert!(!frames.contains(&id), "{frames}");
    }

    // Naming a reserved topic, as an exact topic or as a template, is refused.
    for selector in [
        format!("herald:user/{alice_id}"),
        format!("herald:ws/{}", world.ws),
        "herald:ws/{ws}".to_owned(),
    ] {
        let error = server
            .subscribe()
            .topic("https://example.com/books/1")
            .topic(&selector)
            .bearer(&everything)
            .error()
            .await;
        assert_eq!((error.status, error.code.as_str()), (403, "forbidden"));
        assert!(error.message.contains("reserved"), "{}", error.message);
    }

    // A publisher allowed `*` cannot forge an app event or a notification: refused, and
    // nothing stored or delivered.
    for (topic, kind) in [
        (format!("herald:user/{alice_id}"), "notification"),
        (format!("herald:ws/{}/todos", world.ws), "todos:created"),
    ] {
        let response = server
            .publish_with(
                Some(&everything),
                &[
                    ("topic", "https://example.com/books/1"),
                    ("topic", topic.as_str()),
                    ("type", kind),
                    ("data", "{\"forged\":true}"),
                    ("private", "on"),
                ],
            )
            .await;
        assert_eq!(response.status(), 403, "publishing to {topic}");
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"], "forbidden");
        assert!(
            body["message"].as_str().unwrap().contains("reserved"),
            "{body}"
        );
    }
    let marker = world
        .alice
        .create(&world.ws, "todos", json!({"title": "marker"}))
        .await;
    // Alice's stream: the live todo, then the marker; never a forged event.
    let first = alice_stream.next_event().await;
    assert_eq!(first.event, "todos:created");
    assert_eq!(first.data["data"]["title"], "live");
    let next = alice_stream.next_event().await;
    assert_eq!(next.event, "todos:created", "{next:#?}");
    assert_eq!(next.data["data"]["id"], text(&marker, "id"));
    // And the log holds nothing forged: a replay of everything is the sentinel alone.
    assert_eq!(
        server
            .stored_ids_then("https://example.com/end", "end")
            .await,
        ["sentinel", "end"]
    );
}
