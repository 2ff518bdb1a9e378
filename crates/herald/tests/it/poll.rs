//! Long-polling: a stream URL asked for with `Accept: application/json` answers the same
//! events as the stream, as one JSON document, with the same authorization, limits, replay
//! and `reset`; and a client that polls from answer to answer misses nothing and sees
//! nothing twice.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{AppClient, AppWorld, TestServer, id_of, token};

const T: &str = "https://example.com/poll";

/// One poll of the hub for `T` with `token`, resuming after `last` (query) if given.
async fn poll(server: &TestServer, bearer: Option<&str>, last: Option<&str>) -> (u16, Value) {
    let mut request = server
        .subscribe()
        .topic(T)
        .header("accept", "application/json");
    if let Some(bearer) = bearer {
        request = request.bearer(bearer);
    }
    if let Some(last) = last {
        request = request.query("lastEventID", last);
    }
    let response = request.send().await;
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "a poll answers JSON"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let body = response.text().await.expect("a body");
    (status, serde_json::from_str(&body).expect("a JSON body"))
}

/// A poll of [`T`] after `last`, in a task of its own: resolves with its answer. Returns
/// once the server holds it (its stream slot is taken).
async fn waiting_poll(server: &TestServer, last: &str) -> tokio::task::JoinHandle<Value> {
    let request = server
        .subscribe()
        .topic(T)
        .query("lastEventID", last)
        .header("accept", "application/json");
    let waiting = tokio::spawn(async move {
        let body = request.send().await.text().await.unwrap();
        serde_json::from_str::<Value>(&body).unwrap()
    });
    server
        .wait_metric("herald_streams_open", Duration::from_secs(5), |open| {
            open == 1.0
        })
        .await;
    waiting
}

/// The ids of an answer's events.
fn ids(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_poll_answers_the_missed_events_then_waits_for_the_next() {
    let server = TestServer::with_args(&["--anonymous", "--poll-timeout", "1s"]).await;
    for id in ["p1", "p2", "p3"] {
        server.publish_id(T, id).await;
    }
    let (status, answer) = poll(&server, None, Some("p1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "events": [
                {"type": "message", "id": "p2", "data": "p2"},
                {"type": "message", "id": "p3", "data": "p3"},
            ],
            "lastEventId": "p3",
            "retry": 3000,
        })
    );
    // Nothing new: the poll waits for --poll-timeout, and the cursor stays.
    let (_, answer) = poll(&server, None, Some("p3")).await;
    assert_eq!(answer["events"], json!([]));
    assert_eq!(answer["lastEventId"], "p3");
}

#[tokio::test]
async fn a_waiting_poll_answers_when_an_event_arrives() {
    // A timeout far beyond the test's: only the event can end this poll.
    let server = TestServer::with_args(&["--anonymous", "--poll-timeout", "30s"]).await;
    server.publish_id(T, "p3").await;
    let waiting = waiting_poll(&server, "p3").await;
    server.publish_id(T, "p4").await;
    let answer = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the event answers the poll")
        .unwrap();
    assert_eq!(ids(&answer), ["p4"]);
    assert_eq!(answer["lastEventId"], "p4");
    // The poll's stream slot is free again.
    server
        .wait_metric("herald_streams_open", Duration::from_secs(5), |open| {
            open == 0.0
        })
        .await;
}

#[tokio::test]
async fn a_first_poll_answers_at_once_with_the_log_head() {
    // A first poll (no id to resume from) does not wait for --poll-timeout.
    let server = TestServer::with_args(&["--anonymous", "--poll-timeout", "30s"]).await;
    server.publish_id(T, "h1").await;
    let (_, answer) = tokio::time::timeout(Duration::from_secs(30), poll(&server, None, None))
        .await
        .expect("a first poll answers at once");
    assert_eq!(answer["events"], json!([]));
    assert_eq!(answer["lastEventId"], "h1", "{answer}");
    // Published between two polls: the next one, resuming from the head, gets it.
    server.publish_id(T, "h2").await;
    let (_, answer) = poll(&server, None, answer["lastEventId"].as_str()).await;
    assert_eq!(ids(&answer), ["h2"]);
}

#[tokio::test]
async fn a_quiet_poll_moves_past_what_it_may_not_see() {
    let server = TestServer::with_args(&["--anonymous", "--poll-timeout", "1s"]).await;
    server.publish_id(T, "q1").await;
    // Others' updates: the poller may not see them, but its cursor passes them, so its
    // next poll does not read them again (nor, once they are pruned, get a reset).
    for id in ["other1", "other2"] {
        server
            .publish(&[
                ("topic", "https://example.com/other"),
                ("id", id),
                ("data", id),
            ])
            .await;
    }
    let (_, answer) = poll(&server, None, Some("q1")).await;
    assert_eq!(answer["events"], json!([]));
    assert_eq!(answer["lastEventId"], "other2", "{answer}");
    let (_, answer) = poll(&server, None, Some("other2")).await;
    assert_eq!(answer["lastEventId"], "other2", "{answer}");
    // Its own update still comes, once.
    server.publish_id(T, "q2").await;
    let (_, answer) = poll(&server, None, Some("other2")).await;
    assert_eq!(ids(&answer), ["q2"]);
}

#[tokio::test]
async fn a_poll_timeout_over_30_s_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = crate::support::run_herald(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--poll-timeout",
        "31s",
    ])
    .await;
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--poll-timeout"), "{stderr}");
}

#[tokio::test]
async fn an_unknown_id_gets_a_reset_to_the_head() {
    let server = TestServer::with_args(&["--anonymous", "--poll-timeout", "1s"]).await;
    server.publish_id(T, "k1").await;
    let (_, answer) = poll(&server, None, Some("no-such-id")).await;
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "reset", "{answer}");
    assert_eq!(events[0]["id"], "k1");
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["lastEventID"], "no-such-id");
    assert_eq!(answer["lastEventId"], "k1");
}

#[tokio::test]
async fn polls_are_authorized_like_streams() {
    let server = TestServer::with_args(&["--poll-timeout", "1s"]).await;
    server
        .publish(&[
            ("topic", T),
            ("id", "secret"),
            ("data", "s"),
            ("private", "on"),
        ])
        .await;
    // No token: the same 401 as the stream's.
    let stream_error = server.subscribe().topic(T).error().await;
    let (status, body) = poll(&server, None, Some("earliest")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], stream_error.code);
    // A token for the topic sees the private update.
    let (status, answer) = poll(&server, Some(&token(&[], &[T])), Some("earliest")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&answer), ["secret"]);
    // A token for another topic does not.
    let other = token(&[], &["https://example.com/other"]);
    let (_, answer) = poll(&server, Some(&other), Some("earliest")).await;
    assert_eq!(ids(&answer), Vec::<String>::new());
    // The reserved namespace is refused as for a stream.
    let response = server
        .subscribe()
        .topic("herald:anything")
        .bearer(&token(&[], &["*"]))
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_waiting_poll_holds_a_stream_slot() {
    let server = TestServer::with_args(&["--anonymous", "--max-connections", "1"]).await;
    server.publish_id(T, "w0").await;
    let waiting = waiting_poll(&server, "w0").await;
    let refused = server.subscribe().topic(T).error().await;
    assert_eq!(refused.status, 503, "{refused:?}");
    server.publish_id(T, "w1").await;
    assert_eq!(ids(&waiting.await.unwrap()), ["w1"]);
    server
        .wait_metric("herald_streams_open", Duration::from_secs(5), |open| {
            open == 0.0
        })
        .await;
    server.subscribe().topic(T).open().await;
}

#[tokio::test]
async fn a_large_backlog_comes_in_bounded_answers_without_gap_or_repeat() {
    let server = TestServer::with_args(&["--anonymous", "--poll-timeout", "1s"]).await;
    let data = "x".repeat(2_000);
    let published: Vec<String> = (0..400).map(|i| format!("b{i}")).collect();
    for id in &published {
        server
            .publish(&[("topic", T), ("id", id), ("data", &data)])
            .await;
    }
    let mut seen = Vec::new();
    let mut last = "earliest".to_owned();
    let mut answers = 0;
    while seen.last() != published.last() {
        let (status, answer) = poll(&server, None, Some(&last)).await;
        assert_eq!(status, 200);
        let got = ids(&answer);
        assert!(!got.is_empty(), "an answer after {last} brought nothing");
        // One answer carries at most about 256 KiB.
        assert!(got.len() <= 140, "{} events in one answer", got.len());
        last = answer["lastEventId"].as_str().unwrap().to_owned();
        assert_eq!(&last, got.last().unwrap());
        seen.extend(got);
        answers += 1;
        assert!(answers < 20, "too many answers");
    }
    assert_eq!(seen, published, "every event once, in order");
    assert!(answers >= 3, "{answers} answers");
}

/// `GET path` as a long-poll, by `client`.
async fn app_poll(client: &AppClient, path: &str) -> Value {
    client
        .raw(
            Method::GET,
            path,
            None,
            None,
            &[("accept", "application/json")],
        )
        .await
        .expect(200)
}

#[tokio::test]
async fn app_polls_carry_changes_and_end_when_access_does() {
    let world = AppWorld::start().await;
    // A first poll answers at once: `connected`, and where to resume.
    let first = app_poll(&world.bob, "/api/events").await;
    assert_eq!(first["events"][0]["type"], "connected", "{first}");
    assert_eq!(first["events"].as_array().unwrap().len(), 1, "{first}");
    let head = first["lastEventId"]
        .as_str()
        .expect("the log head")
        .to_owned();
    // Bob waits from there; Alice's change answers his poll.
    let bob = world.bob.clone();
    let path = format!("/api/events?lastEventId={head}");
    let waiting = tokio::spawn(async move { app_poll(&bob, &path).await });
    world
        .server
        .wait_metric("herald_streams_open", Duration::from_secs(5), |open| {
            open == 1.0
        })
        .await;
    let todo = world
        .alice
        .create(&world.ws, "todos", json!({"title": "polled"}))
        .await;
    let answer = waiting.await.unwrap();
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "connected", "{answer}");
    assert_eq!(events[1]["type"], "todos:created", "{answer}");
    let envelope: Value = serde_json::from_str(events[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(envelope["data"]["id"], id_of(&todo));
    assert_eq!(answer["lastEventId"], events[1]["id"]);

    // Resuming from there, Bob's next poll ends with his removal, and says why.
    let last = answer["lastEventId"].as_str().unwrap().to_owned();
    let bob = world.bob.clone();
    let path = format!("/api/events?lastEventId={last}");
    let waiting = tokio::spawn(async move { app_poll(&bob, &path).await });
    world
        .server
        .wait_metric("herald_streams_open", Duration::from_secs(5), |open| {
            open == 1.0
        })
        .await;
    let removed = world
        .alice
        .delete(&world.ws_path(&format!("members/{}", world.bob.id())))
        .await;
    assert_eq!(removed.status, 204);
    let answer = waiting.await.unwrap();
    let types: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["connected", "members:removed"], "{answer}");

    // Carol may not read the workspace: the same 404 as its stream.
    world
        .carol
        .raw(
            Method::GET,
            &world.ws_path("events"),
            None,
            None,
            &[("accept", "application/json")],
        )
        .await
        .expect_error(404, "not_found");
    // Without credentials: 401.
    AppClient::anonymous(&world.server)
        .raw(
            Method::GET,
            "/api/events",
            None,
            None,
            &[("accept", "application/json")],
        )
        .await
        .expect_error(401, "unauthorized");
}
