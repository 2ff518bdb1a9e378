//! Private updates: they reach exactly the subscribers whose `mercure.subscribe` claim
//! matches one of their topics, wherever the token travels (header, cookie, query), and
//! never anonymous subscribers. Public updates reach everyone who selected them.
//!
//! Each test ends with a public sentinel that every subscriber selects: what a subscriber
//! received before it is everything it will ever receive of the updates published earlier.

use herald::auth::Claims;

use crate::support::{KEY, TestServer, token, token_with};

const BOOK: &str = "https://example.com/books/1";
const BOOK2: &str = "https://example.com/books/2";
const BOOKS: &str = "https://example.com/books/{id}";

#[tokio::test]
async fn private_updates_follow_the_subscribe_claim() {
    let server = TestServer::start().await;
    let sub = |claim: &[&str]| token(&[], claim);
    let open = |req: crate::support::SubscribeReq| req.topic(BOOKS).open();

    let mut by_header = open(server.subscribe().bearer(&sub(&[BOOK]))).await;
    let mut other_book = open(server.subscribe().bearer(&sub(&[BOOK2]))).await;
    let mut by_template = open(server.subscribe().bearer(&sub(&[BOOKS]))).await;
    let mut by_cookie = open(server.subscribe().header(
        "cookie",
        &format!("theme=dark; mercureAuthorization={}", sub(&[BOOK])),
    ))
    .await;
    let mut by_query = open(server.subscribe().query("authorization", &sub(&[BOOK]))).await;
    let mut no_claim = open(server.subscribe().bearer(&token(&["*"], &[]))).await;
    let mut no_mercure = open(server.subscribe().bearer(&token_with(
        KEY,
        &Claims {
            mercure: None,
            exp: None,
            sub: None,
        },
    )))
    .await;
    let mut alt_claim = open(server.subscribe().bearer(&sub(&["urn:alt:{n}"]))).await;
    // The header wins over the cookie, and the cookie over the query parameter.
    let mut header_over_cookie = open(
        server
            .subscribe()
            .bearer(&sub(&[BOOK2]))
            .header("cookie", &format!("mercureAuthorization={}", sub(&[BOOK]))),
    )
    .await;
    let mut query_over_cookie = open(
        server
            .subscribe()
            .header("cookie", &format!("mercureAuthorization={}", sub(&[BOOK2])))
            .query("authorization", &sub(&[BOOK])),
    )
    .await;

    server
        .publish(&[("topic", BOOK), ("id", "p1"), ("private", "on")])
        .await;
    // Private, on two topics: the selector matches one, an alt claim the other.
    server
        .publish(&[
            ("topic", "https://example.com/books/3"),
            ("topic", "urn:alt:1"),
            ("id", "p2"),
            ("private", "on"),
        ])
        .await;
    server.publish_id(BOOK, "pub1").await;
    server.publish_id(BOOK, "end").await;

    assert_eq!(by_header.ids_until("end").await, ["p1", "pub1", "end"]);
    assert_eq!(other_book.ids_until("end").await, ["pub1", "end"]);
    assert_eq!(
        by_template.ids_until("end").await,
        ["p1", "p2", "pub1", "end"]
    );
    assert_eq!(by_cookie.ids_until("end").await, ["p1", "pub1", "end"]);
    assert_eq!(by_query.ids_until("end").await, ["p1", "pub1", "end"]);
    assert_eq!(no_claim.ids_until("end").await, ["pub1", "end"]);
    assert_eq!(no_mercure.ids_until("end").await, ["pub1", "end"]);
    assert_eq!(alt_claim.ids_until("end").await, ["p2", "pub1", "end"]);
    assert_eq!(header_over_cookie.ids_until("end").await, ["pub1", "end"]);
    assert_eq!(
        query_over_cookie.ids_until("end").await,
        ["p1", "pub1", "end"]
    );
}

#[tokio::test]
async fn anonymous_subscribers_get_public_updates_only() {
    let server = TestServer::with_args(&["--anonymous"]).await;
    let mut anonymous = server.subscribe().topic("*").open().await;
    let mut authorized = server
        .subscribe()
        .topic("*")
        .bearer(&token(&[], &["*"]))
        .open()
        .await;

    // Mercure: the field's presence makes an update private, unless it says off/false/0.
    let variants: &[(&str, Option<&str>)] = &[
        ("on", Some("on")),
        ("true", Some("true")),
        ("one", Some("1")),
        ("empty", Some("")),
        ("off", Some("off")),
        ("false", Some("false")),
        ("zero", Some("0")),
        ("absent", None),
    ];
    for (id, private) in variants {
        let mut form = vec![("topic", BOOK), ("id", *id), ("data", *id)];
        if let Some(value) = private {
            form.push(("private", value));
        }
        server.publish(&form).await;
    }
    server.publish_id(BOOK2, "end").await;

    assert_eq!(
        anonymous.ids_until("end").await,
        ["off", "false", "zero", "absent", "end"]
    );
    assert_eq!(
        authorized.ids_until("end").await,
        [
            "on", "true", "one", "empty", "off", "false", "zero", "absent", "end"
        ]
    );
}
