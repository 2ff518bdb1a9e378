//! Operations endpoints: `/healthz`, `/readyz`, and `/metrics` with values that follow
//! what happens.

use crate::support::{ITEM_TIMEOUT, TestServer, header, token};

const T: &str = "https://example.com/ops";

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = server
            .http
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            header(response.headers(), "link"),
            "</.well-known/mercure>; rel=\"mercure\""
        );
        assert_eq!(response.text().await.unwrap(), body, "{path}");
    }
}

#[tokio::test]
async fn metrics_follow_activity() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    for line in [
        "# TYPE herald_connections_open gauge",
        "# TYPE herald_streams_open gauge",
        "# TYPE herald_subscribers gauge",
        "# TYPE herald_updates_published counter",
        "# TYPE herald_deliveries counter",
        "# TYPE herald_replays counter",
        "# TYPE herald_replayed_updates counter",
        "# TYPE herald_resets counter",
        "# TYPE herald_slow_subscriber_disconnects counter",
        "# TYPE herald_publish_duration_seconds histogram",
        "# TYPE herald_log_commit_seconds histogram",
        "# TYPE herald_runtime_alive_tasks gauge",
        "herald_subscribers 0",
        "herald_streams_open 0",
        "herald_updates_published_total 0",
        "herald_deliveries_total 0",
        "herald_replays_total 0",
        "herald_slow_subscriber_disconnects_total 0",
        "herald_publish_duration_seconds_count 0",
        "herald_publish_duration_seconds_bucket{le=\"+Inf\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    // This scrape's own connection is open.
    assert!(server.metric("herald_connections_open").await >= 1.0);

    let t = token(&[], &[]);
    let mut a = server.subscribe().topic(T).bearer(&t).open().await;
    let mut b = server.subscribe().topic("*").bearer(&t).open().await;
    assert_eq!(server.metric("herald_subscribers").await, 2.0);
    assert_eq!(server.metric("herald_streams_open").await, 2.0);
    // Two streams plus the scrape.
    assert!(server.metric("herald_connections_open").await >= 3.0);

    for id in ["m1", "m2", "m3"] {
        server.publish_id(T, id).await;
    }
    server.publish_id("urn:elsewhere", "m4").await;
    assert_eq!(a.ids_until("m3").await, ["m1", "m2", "m3"]);
    assert_eq!(b.ids_until("m4").await, ["m1", "m2", "m3", "m4"]);
    assert_eq!(server.metric("herald_updates_published_total").await, 4.0);
    // 3 to each subscriber, plus m4 to the wildcard one.
    assert_eq!(server.metric("herald_deliveries_total").await, 7.0);
    assert_eq!(
        server.metric("herald_publish_duration_seconds_count").await,
        4.0
    );
    assert_eq!(
        server
            .metric("herald_publish_duration_seconds_bucket{le=\"+Inf\"}")
            .await,
        4.0
    );
    assert!(server.metric("herald_publish_duration_seconds_sum").await > 0.0);
    assert_eq!(server.metric("herald_log_commit_seconds_count").await, 4.0);

    // A resume counts as a replay, with the updates it replayed.
    let mut resumed = server
        .subscribe()
        .topic(T)
        .bearer(&t)
        .last_event_id("m1")
        .open()
        .await;
    assert_eq!(resumed.ids_until("m3").await, ["m2", "m3"]);
    assert_eq!(server.metric("herald_replays_total").await, 1.0);
    assert_eq!(server.metric("herald_replayed_updates_total").await, 2.0);
    assert_eq!(server.metric("herald_subscribers").await, 3.0);

    drop((a, b, resumed));
    server
        .wait_metric("herald_subscribers", ITEM_TIMEOUT, |v| v == 0.0)
        .await;
    server
        .wait_metric("herald_streams_open", ITEM_TIMEOUT, |v| v == 0.0)
        .await;
}
