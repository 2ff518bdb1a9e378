//! JWT authorization: every way a token can be missing, malformed, forged, expired or
//! insufficient gets the right status and a message that names the problem, and a refused
//! publish stores nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use herald::auth::{Claims, MercureClaim};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::support::{ApiError, KEY, TestServer, token, token_with};

const BOOK: &str = "https://example.com/books/1";
const USER: &str = "https://example.com/users/1";

fn publish_claims(exp: Option<u64>) -> Claims {
    Claims {
        mercure: Some(MercureClaim {
            publish: Some(vec!["*".into()]),
            subscribe: Some(vec!["*".into()]),
        }),
        exp,
        sub: None,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(401, "unauthorized", message)
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(403, "forbidden", message)
}

#[tokio::test]
async fn publish_rejections_store_nothing() {
    let server = TestServer::start().await;
    let form = [("topic", BOOK), ("data", "x"), ("id", "rejected")];
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &publish_claims(None),
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>, ApiError)> = vec![
        (
            "no token",
            None,
            unauthorized("publishing requires a JWT with a mercure.publish claim"),
        ),
        (
            "malformed",
            Some("not-a-jwt".into()),
            unauthorized("the JWT is malformed"),
        ),
        (
            "wrong key",
            Some(token_with(
                "another-key-that-is-32-bytes-long!!",
                &publish_claims(None),
            )),
            unauthorized("the JWT signature is invalid"),
        ),
        (
            "expired",
            Some(token_with(KEY, &publish_claims(Some(now() - 60)))),
            unauthorized("the JWT has expired"),
        ),
        (
            "HS512",
            Some(hs512),
            unauthorized("the JWT must be signed with HS256"),
        ),
        (
            "no publish claim",
            Some(token(&[], &["*"])),
            forbidden("the JWT has no mercure.publish claim"),
        ),
        (
            "no mercure claim",
            Some(token_with(
                KEY,
                &Claims {
                    mercure: None,
                    exp: Some(now() + 600),
                    sub: None,
                },
            )),
            forbidden("the JWT has no mercure.publish claim"),
        ),
        (
            "topic not allowed",
            Some(token(&[USER], &[])),
            forbidden("the JWT does not allow publishing to topic \"https://example.com/books/1\""),
        ),
    ];
    for (what, bearer, want) in cases {
        let response = server.publish_with(bearer.as_deref(), &form).await;
        assert_eq!(ApiError::read(response).await, want, "{what}");
    }

    // Not a bearer token.
    let response = server
        .http
        .post(server.hub_url())
        .header("authorization", "Basic x")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ApiError::read(response).await,
        unauthorized("the Authorization header must be \"Bearer <JWT>\"")
    );

    // Several topics, one of them not allowed: refused as a whole.
    let response = server
        .publish_with(
            Some(&token(&["https://example.com/books/{id}"], &[])),
            &[("topic", BOOK), ("topic", USER), ("id", "half")],
        )
        .await;
    assert_eq!(
        ApiError::read(response).await,
        forbidden("the JWT does not allow publishing to topic \"https://example.com/users/1\"")
    );

    // A cookie-authenticated publish from a foreign origin is refused (CSRF).
    let response = server
        .http
        .post(server.hub_url())
        .header(
            "cookie",
            format!("mercureAuthorization={}", token(&["*"], &[])),
        )
        .header("origin", "https://evil.example")
        .form(&[("topic", BOOK), ("id", "csrf")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        ApiError::read(response).await,
        forbidden(
            "cookie-authenticated requests that change something are not allowed from origin \"https://evil.example\""
        )
    );

    // What is allowed works, with the token in each place.
    let response = server
        .publish_with(
            Some(&token(&["https://example.com/books/{id}"], &[])),
            &[("topic", BOOK), ("id", "by-template")],
        )
        .await;
    assert_eq!(response.text().await.unwrap(), "by-template");
    let response = server
        .http
        .post(server.hub_url())
        .header(
            "cookie",
            format!("mercureAuthorization={}", token(&[BOOK], &[])),
        )
        .form(&[("topic", BOOK), ("id", "by-cookie")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "by-cookie");
    let response = server
        .http
        .post(server.hub_url())
        .query(&[("authorization", token(&[BOOK], &[]))])
        .form(&[("topic", BOOK), ("id", "by-query")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "by-query");

    // Everything retained, oldest first: only the accepted publishes, then the sentinel.
    assert_eq!(
        server.stored_ids_then(BOOK, "end").await,
        ["by-template", "by-cookie", "by-query", "end"]
    );
    assert_eq!(server.metric("herald_updates_published_total").await, 4.0);
}

#[tokio::test]
async fn subscriber_needs_a_token_without_anonymous() {
    let server = TestServer::start().await;
    assert_eq!(
        server.subscribe().topic(BOOK).error().await,
        unauthorized("subscribing requires a JWT (this hub does not allow anonymous subscribers)")
    );
    // A valid token with no claims at all is enough for public updates.
    let mut sse = server
        .subscribe()
        .topic(BOOK)
        .bearer(&token(&[], &[]))
        .open()
        .await;
    server.publish_id(BOOK, "public").await;
    assert_eq!(sse.next_message().await.last_event_id, "public");
}

#[tokio::test]
async fn bad_subscriber_tokens_are_refused_even_with_anonymous() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let forged = token_with("another-key-that-is-32-bytes-long!!", &publish_claims(None));
    let expired = token_with(KEY, &publish_claims(Some(now() - 1)));
    let cases = [
        (
            server.subscribe().bearer(&forged),
            "the JWT signature is invalid",
        ),
        (server.subscribe().bearer(&expired), "the JWT has expired"),
        (
            server
                .subscribe()
                .header("cookie", "mercureAuthorization=garbage"),
            "the JWT is malformed",
        ),
        (
            server.subscribe().query("authorization", &forged),
            "the JWT signature is invalid",
        ),
        (
            server.subscribe().header("authorization", "Basic x"),
            "the Authorization header must be \"Bearer <JWT>\"",
        ),
    ];
    for (request, message) in cases {
        assert_eq!(
            request.topic(BOOK).error().await,
            unauthorized(message),
            "{message}"
        );
    }
    // Refused before a stream was admitted.
    assert_eq!(server.metric("herald_streams_open").await, 0.0);
    assert_eq!(server.metric("herald_subscribers").await, 0.0);
    // Without any token, an anonymous subscriber is welcome.
    let sse = server.subscribe().topic(BOOK).open().await;
    assert_eq!(sse.status, 200);
}

/// Losing access (a token that expired) stops delivery on streams already open.
/// A stream opened with a token that then expires must not receive private updates
/// published after the expiry (ending the stream is fine too).
#[tokio::test]
async fn private_delivery_stops_when_the_token_expires() {
    let server = TestServer::start().await;
    let exp = now() + 2;
    let short_lived = token_with(
        KEY,
        &Claims {
            mercure: Some(MercureClaim {
                publish: None,
                subscribe: Some(vec![BOOK.into()]),
            }),
            exp: Some(exp),
            sub: None,
        },
    );
    let mut sse = server
        .subscribe()
        .topic(BOOK)
        .bearer(&short_lived)
        .open()
        .await;
    server
        .publish(&[("topic", BOOK), ("id", "before-expiry"), ("private", "on")])
        .await;
    assert_eq!(sse.next_message().await.last_event_id, "before-expiry");

    // Wall-clock expiry: nothing to observe but the clock (`exp` has 1 s resolution).
    while now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server
        .publish(&[("topic", BOOK), ("id", "after-expiry"), ("private", "on")])
        .await;
    server.publish_id(BOOK, "public-end").await;
    loop {
        match sse.next_item().await {
            None => break,
            Some(herald_sse::Item::Message(message)) => {
                assert_ne!(
                    message.last_event_id, "after-expiry",
                    "a private update reached a stream whose token expired at {exp}"
                );
                if message.last_event_id == "public-end" {
                    break;
                }
            }
            Some(_) => {}
        }
    }
}
