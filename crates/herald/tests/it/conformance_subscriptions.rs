//! Mercure's subscription events and subscriptions API, against a real server started with
//! `--subscription-events`: the exact topic, event type and JSON-LD of each announcement,
//! who may receive them, the API's three shapes and refusals, and its cursor.

use herald_sse::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Sse, TestServer, header, token};

const EVENTS: &str = "--subscription-events";

/// The template of every subscription event's topic.
const WATCH: &str = "/.well-known/mercure/subscriptions/{type}/{match}/{subscriber}";

const BOOKS: &str = "https://example.com/books/{id}";
const PLAIN: &str = "https://example.com/a b";

/// A stream of every subscription event, with a token that may receive them.
async fn watcher(server: &TestServer) -> Sse {
    server
        .subscribe()
        .topic(WATCH)
        .bearer(&token(&[], &[WATCH]))
        .open()
        .await
}

/// The next subscription event that is not about a watcher's own subscription.
async fn next_event(sse: &mut Sse) -> (Message, Value) {
    loop {
        let message = sse.next_message().await;
        let data: Value = serde_json::from_str(&message.data).expect("JSON data");
        if data["match"] != WATCH {
            return (message, data);
        }
    }
}

/// `text` percent-encoded as one path segment (all but `A-Z a-z 0-9 - . _ ~`).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn document(match_type: &str, matcher: &str, subscriber: &str, active: bool) -> Value {
    json!({
        "@context": "https://mercure.rocks/",
        "id": format!(
            "/.well-known/mercure/subscriptions/{match_type}/{}/{}",
            segment(matcher),
            segment(subscriber)
        ),
        "type": "Subscription",
        "match_type": match_type,
        "match": matcher,
        "subscriber": subscriber,
        "active": active,
    })
}

async fn get(server: &TestServer, path: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut request = crate::support::http_client().get(format!("{}{path}", server.url()));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.expect("GET the subscriptions API")
}

/// The body of `response`, as JSON.
pub(crate) async fn json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("read the body");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

// Rule: a new subscription is announced once per matcher, as a private `event: mercure`
// update on its own topic with its JSON-LD document; its end is announced the same way with
// `active: false`; all of a connection's matchers share one hub-made `urn:uuid` subscriber.
#[tokio::test]
async fn subscriptions_are_announced_when_they_start_and_end() {
    let server = TestServer::with_args(&[EVENTS]).await;
    let mut watch = watcher(&server).await;
    let subscriber = server
        .subscribe()
        .topic(BOOKS)
        .topic(PLAIN)
        .bearer(&token(&[], &[]))
        .open()
        .await;

    let (first, books) = next_event(&mut watch).await;
    let (second, plain) = next_event(&mut watch).await;
    let id = books["subscriber"]
        .as_str()
        .expect("a subscriber")
        .to_owned();
    assert!(
        id.starts_with("urn:uuid:") && uuid::Uuid::parse_str(&id[9..]).is_ok(),
        "{id}"
    );
    assert_eq!(
        (first.event.as_str(), second.event.as_str()),
        ("mercure", "mercure")
    );
    assert_eq!(books, document("template", BOOKS, &id, true));
    // A 0.x selector without `{` is listed as an exact match.
    assert_eq!(plain, document("exact", PLAIN, &id, true));

    drop(subscriber);
    let (ended, books_end) = next_event(&mut watch).await;
    let (_, plain_end) = next_event(&mut watch).await;
    assert_eq!(ended.event, "mercure");
    assert_eq!(books_end, document("template", BOOKS, &id, false));
    assert_eq!(plain_end, document("exact", PLAIN, &id, false));
}

// Rule: subscription events are private: a subscriber whose token does not match their
// topic never receives them, even when it selects that topic.
#[tokio::test]
async fn subscription_events_reach_only_subscribers_allowed_to_see_them() {
    let server = TestServer::with_args(&[EVENTS]).await;
    let sentinel = "https://example.com/sentinel";
    let mut allowed = watcher(&server).await;
    let mut refused = server
        .subscribe()
        .topic(WATCH)
        .topic(sentinel)
        .bearer(&token(&[], &[sentinel]))
        .open()
        .await;
    let subscriber = server
        .subscribe()
        .topic(BOOKS)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    // The refused subscriber's own subscriptions are announced too; skip to the books one.
    let books_event = async |sse: &mut Sse| loop {
        let (_, event) = next_event(sse).await;
        if event["match"] == BOOKS {
            return event;
        }
    };
    assert_eq!(books_event(&mut allowed).await["active"], true);
    drop(subscriber);
    assert_eq!(books_event(&mut allowed).await["active"], false);

    server.publish_id(sentinel, "end").await;
    assert_eq!(refused.ids_until("end").await, ["end"]);
}

// Rule: the API lists active subscriptions in three shapes (all, one matcher, one
// subscription) as JSON-LD with the hub's cursor in the body and the `Link` header.
#[tokio::test]
async fn the_api_lists_all_by_matcher_and_one() {
    let server = TestServer::with_args(&[EVENTS]).await;
    let mut watch = watcher(&server).await;
    let _subscriber = server
        .subscribe()
        .topic(BOOKS)
        .topic(PLAIN)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    let (_, books) = next_event(&mut watch).await;
    let id = books["subscriber"]
        .as_str()
        .expect("a subscriber")
        .to_owned();
    let all_token = token(&[], &["*"]);

    let response = get(
        &server,
        "/.well-known/mercure/subscriptions",
        Some(&all_token),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/ld+json"
    );
    let link = header(response.headers(), "link");
    let body = json(response).await;
    let cursor = body["last_event_id"].as_str().expect("a cursor").to_owned();
    assert_eq!(
        link,
        format!("</.well-known/mercure>; rel=\"mercure\"; last-event-id=\"{cursor}\"")
    );
    assert_eq!(body["@context"], "https://mercure.rocks/");
    assert_eq!(body["id"], "/.well-known/mercure/subscriptions");
    assert_eq!(body["type"], "Subscriptions");
    let listed = body["subscriptions"].as_array().expect("a list");
    assert!(
        listed.contains(&document("template", BOOKS, &id, true)),
        "{body}"
    );
    assert!(
        listed.contains(&document("exact", PLAIN, &id, true)),
        "{body}"
    );
    // The watcher's own subscription is listed too.
    assert_eq!(listed.len(), 3, "{body}");

    let by_matcher = format!(
        "/.well-known/mercure/subscriptions/exact/{}",
        segment(PLAIN)
    );
    let body = json(get(&server, &by_matcher, Some(&all_token)).await).await;
    assert_eq!(body["id"], by_matcher);
    assert_eq!(
        body["subscriptions"],
        json!([document("exact", PLAIN, &id, true)])
    );

    let one = format!("{by_matcher}/{}", segment(&id));
    // A token granting exactly this path is enough.
    let response = get(&server, &one, Some(&token(&[], &[&one]))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut expected = document("exact", PLAIN, &id, true);
    let body = json(response).await;
    expected["last_event_id"] = body["last_event_id"].clone();
    assert!(body["last_event_id"].is_string());
    assert_eq!(body, expected);
}

// Rule: an unknown subscription is 404, a request without a token 401, a token without
// `subscribe` on the request's path 403, each refusal of a token with its RFC 6750
// challenge; with subscription events off the API is 404.
#[tokio::test]
async fn the_api_refuses_unknown_unauthenticated_and_unauthorized_requests() {
    let server = TestServer::with_args(&[EVENTS]).await;
    let all = "/.well-known/mercure/subscriptions";
    let unknown = format!(
        "{all}/exact/{}/{}",
        segment(PLAIN),
        segment("urn:uuid:nobody")
    );
    let status = |response: reqwest::Response| response.status();
    assert_eq!(
        status(get(&server, &unknown, Some(&token(&[], &["*"]))).await),
        404
    );
    let challenge = |response: &reqwest::Response| header(response.headers(), "www-authenticate");
    let anonymous = get(&server, all, None).await;
    assert_eq!(anonymous.status(), 401);
    assert!(
        challenge(&anonymous).starts_with("Bearer"),
        "{}",
        challenge(&anonymous)
    );
    assert!(!challenge(&anonymous).contains("error="));
    let bad = get(&server, all, Some("not-a-jwt")).await;
    assert_eq!(bad.status(), 401);
    assert!(
        challenge(&bad).contains("error=\"invalid_token\""),
        "{}",
        challenge(&bad)
    );
    let elsewhere = token(&["*"], &["https://example.com/{x}"]);
    let forbidden = get(&server, all, Some(&elsewhere)).await;
    assert_eq!(forbidden.status(), 403);
    assert!(
        challenge(&forbidden).contains("error=\"insufficient_scope\""),
        "{}",
        challenge(&forbidden)
    );
    let one_matcher = token(&[], &[&format!("{all}/exact/{}", segment(PLAIN))]);
    assert_eq!(status(get(&server, all, Some(&one_matcher)).await), 403);

    let off = TestServer::start().await;
    assert_eq!(status(get(&off, all, Some(&token(&[], &["*"]))).await), 404);
}

// Rule: the API's `last_event_id` is a cursor: subscribing to the events from it misses no
// subscription that started after the list was read.
#[tokio::test]
async fn the_cursor_resumes_the_events_without_loss() {
    let server = TestServer::with_args(&[EVENTS]).await;
    let _early = server
        .subscribe()
        .topic(PLAIN)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    let all = "/.well-known/mercure/subscriptions";
    let body = json(get(&server, all, Some(&token(&[], &["*"]))).await).await;
    let listed = body["subscriptions"].as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{body}");
    let cursor = body["last_event_id"].as_str().expect("a cursor");

    let _late = server
        .subscribe()
        .topic(BOOKS)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    let mut watch = server
        .subscribe()
        .topic(WATCH)
        .bearer(&token(&[], &[WATCH]))
        .last_event_id(cursor)
        .open()
        .await;
    // The early subscription's start may follow the cursor too: a repeat, never a gap.
    loop {
        let (_, event) = next_event(&mut watch).await;
        if event["match"] == BOOKS {
            assert_eq!(event["active"], true);
            break;
        }
        assert_eq!(event["match"], PLAIN, "{event}");
    }
}

// Rule: a subscription whose token's subscribe grant carries a payload is announced, and
// listed, with that payload.
#[tokio::test]
async fn the_grant_payload_travels_with_the_subscription() {
    let server = TestServer::with_args(&[EVENTS]).await;
    let mut watch = watcher(&server).await;
    let payload = json!({"role": "reader", "n": 1});
    let grant = herald::auth::mint_v1(
        crate::support::KEY.as_bytes(),
        "https://issuer.example",
        &server.hub_url(),
        None,
        herald::auth::unix_now() + 600,
        &[herald::auth::Detail {
            actions: vec!["subscribe"],
            topics: vec![herald_hub::Matcher::exact(PLAIN)],
            payload: Some(payload.clone()),
        }],
    )
    .expect("sign a token");
    let _subscriber = server.subscribe().topic(PLAIN).bearer(&grant).open().await;
    let (_, started) = next_event(&mut watch).await;
    let mut expected = document(
        "exact",
        PLAIN,
        started["subscriber"].as_str().unwrap_or_default(),
        true,
    );
    expected["payload"] = payload;
    assert_eq!(started, expected);

    let all = "/.well-known/mercure/subscriptions";
    let body = json(get(&server, all, Some(&token(&[], &["*"]))).await).await;
    assert!(
        body["subscriptions"]
            .as_array()
            .is_some_and(|l| l.contains(&expected)),
        "{body}"
    );
}

// Rule: with subscription events on, a matcher whose event topic (the matcher
// percent-encoded) would exceed the hub's topic limit is refused before anything is
// registered; without them the same matcher is served.
#[tokio::test]
async fn a_matcher_too_long_for_its_event_topic_is_refused() {
    let server = TestServer::with_args(&[EVENTS]).await;
    // 700 bytes of matcher, over 2,100 once percent-encoded.
    let long = format!("https://example.com/{}", "/".repeat(680));
    let refused = server
        .subscribe()
        .topic(&long)
        .bearer(&token(&[], &[]))
        .error()
        .await;
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (400, "bad_request")
    );
    assert!(
        refused.message.contains("2048 bytes"),
        "{}",
        refused.message
    );
    let listed = json(
        get(
            &server,
            "/.well-known/mercure/subscriptions",
            Some(&token(&[], &["*"])),
        )
        .await,
    )
    .await;
    assert_eq!(listed["subscriptions"], json!([]));

    let off = TestServer::start().await;
    off.subscribe()
        .topic(&long)
        .bearer(&token(&[], &[]))
        .open()
        .await;
}

// Rule: announced subscriptions are charged to the client's address, one token per
// matcher; over the limit a subscription gets 429 with `Retry-After` and is neither
// registered nor announced.
#[tokio::test]
async fn announcements_over_the_rate_are_refused_and_leave_no_trace() {
    let server = TestServer::with_args(&[EVENTS, "--subscription-event-rate", "3/1h"]).await;
    let all = "/.well-known/mercure/subscriptions";
    let bearer = token(&[], &[]);
    let first = server
        .subscribe()
        .topic(BOOKS)
        .topic(PLAIN)
        .bearer(&bearer)
        .open()
        .await;
    // One token left; two matchers need two.
    let response = server
        .subscribe()
        .topic(BOOKS)
        .topic(PLAIN)
        .bearer(&bearer)
        .send()
        .await;
    assert_eq!(response.status(), 429);
    assert!(
        header(response.headers(), "retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s > 0)
    );
    let refused = crate::support::ApiError::read(response).await;
    assert_eq!(refused.code, "rate_limited");
    let counted = server
        .metric("herald_rate_limited_total{limit=\"subscription_events\"}")
        .await;
    assert_eq!(counted, 1.0);
    let listed = json(get(&server, all, Some(&token(&[], &["*"]))).await).await;
    assert_eq!(
        listed["subscriptions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    // The last token still buys one matcher.
    let _second = server.subscribe().topic(PLAIN).bearer(&bearer).open().await;
    drop(first);
}
