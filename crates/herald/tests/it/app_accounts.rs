//! The account lifecycle (`docs/app-api.md`, "Accounts"): API tokens listed, made with a
//! lifetime and revoked; passwords changed; users deactivated and reactivated. Each ends
//! the streams it makes wrong at once, and the old credentials get a 401 from then on.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::{Instant, timeout};

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, AppStream, AppWorld, ITEM_TIMEOUT, PASSWORD,
    TestServer, id_of, keys, run_herald, text,
};

/// How soon a stream ends once its credentials stop working: generous for a local server
/// on a busy machine, far below any heartbeat or timeout that could end it otherwise.
const REVOCATION_WITHIN: Duration = Duration::from_secs(2);

/// The keys of a token in `GET /api/tokens`: never the secret, nor its hash.
const TOKEN_KEYS: [&str; 6] = [
    "createdAt",
    "expiresAt",
    "id",
    "lastUsedAt",
    "name",
    "notify",
];

/// Makes an API token through `by`'s session; returns the answer (with `token`).
async fn make_token(by: &AppClient, body: Value) -> Value {
    by.post("/api/tokens", &body).await.expect(201)
}

/// Asserts that `stream` ends within `within` of `since`, with no event first.
async fn ends(stream: &mut AppStream, since: Instant, within: Duration) {
    stream
        .expect_end((since + within).saturating_duration_since(Instant::now()))
        .await;
}

/// Asserts that `stream` stays open: a todo `by` makes in `ws` is its next event.
async fn still_open(stream: &mut AppStream, by: &AppClient, ws: &str) {
    let todo = by.create(ws, "todos", json!({"title": "still here"})).await;
    let event = stream.next_event().await;
    assert_eq!(event.event, "todos:created", "{event:#?}");
    assert_eq!(event.data["data"], todo, "{event:#?}");
}

#[tokio::test]
async fn api_tokens_are_listed_made_with_a_lifetime_and_revoked() {
    let world = AppWorld::start().await;
    let AppWorld {
        server,
        admin,
        alice,
        bob,
        ws,
        ..
    } = &world;

    // Made through a session: the secret is shown once; lists never show it.
    let made = make_token(alice, json!({"name": "deploy script"})).await;
    let mut made_keys = TOKEN_KEYS.to_vec();
    made_keys.push("token");
    made_keys.sort_unstable();
    assert_eq!(keys(&made), made_keys, "{made}");
    let secret = text(&made, "token");
    assert!(secret.starts_with("hrld_"), "{made}");
    assert_eq!(made["name"], "deploy script");
    assert_eq!(made["notify"], false);
    assert_eq!(made["expiresAt"], Value::Null);
    assert_eq!(made["lastUsedAt"], Value::Null);
    let token_id = id_of(&made);
    let listed = alice.get("/api/tokens").await;
    assert!(!listed.body.contains(&secret[5..]), "{}", listed.body);
    let listed = listed.expect(200)["items"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(keys(&listed[0]), TOKEN_KEYS);
    assert_eq!(id_of(&listed[0]), token_id);
    assert!(bob.items("/api/tokens").await.is_empty(), "Bob has none");

    // The token acts as Alice; its use shows (to the minute) in the list.
    let as_token = AppClient::with_bearer(server, &secret);
    assert_eq!(as_token.get("/api/me").await.expect(200), alice.user);
    let deadline = Instant::now() + ITEM_TIMEOUT;
    while alice.items("/api/tokens").await[0]["lastUsedAt"].is_null() {
        assert!(Instant::now() < deadline, "lastUsedAt never set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A token cannot make tokens (it would outlive its own revocation); only admins make
    // tokens that notify; bad bodies are refused.
    as_token
        .post("/api/tokens", &json!({"name": "child"}))
        .await
        .expect_error(403, "forbidden");
    alice
        .post("/api/tokens", &json!({"name": "n", "notify": true}))
        .await
        .expect_error(403, "forbidden");
    for body in [
        json!({"name": ""}),
        json!({"name": "n".repeat(101)}),
        json!({"name": "n", "ttl": "soon"}),
        json!({"name": "n", "ttl": "0s"}),
        json!({"name": "n", "ttl": "100years"}),
        json!({"name": "n", "secret": "mine"}),
        json!({}),
    ] {
        alice
            .post("/api/tokens", &body)
            .await
            .expect_error(400, "bad_request");
    }
    let notifier = make_token(admin, json!({"name": "notifier", "notify": true})).await;
    assert_eq!(notifier["notify"], true);

    // Others' tokens: hidden from members (404, as if absent), listed and revoked by admins.
    bob.get(&format!("/api/tokens?user={}", alice.id()))
        .await
        .expect_error(403, "forbidden");
    bob.delete(&format!("/api/tokens/{token_id}"))
        .await
        .expect_error(404, "not_found");
    bob.delete("/api/tokens/not-an-id")
        .await
        .expect_error(400, "bad_request");
    let spare = make_token(alice, json!({"name": "spare"})).await;
    let of_alice = admin
        .items(&format!("/api/tokens?user={}", alice.id()))
        .await;
    assert_eq!(of_alice.len(), 2, "{of_alice:?}");
    admin
        .delete(&format!("/api/tokens/{}", id_of(&spare)))
        .await
        .expect(204);
    AppClient::with_bearer(server, &text(&spare, "token"))
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");

    // Revoking ends the streams opened with the token at once, and only those.
    let mut token_stream = as_token.events("/api/events").open().await;
    let mut session_stream = alice.events("/api/events").open().await;
    let revoked = Instant::now();
    alice
        .delete(&format!("/api/tokens/{token_id}"))
        .await
        .expect(204);
    ends(&mut token_stream, revoked, REVOCATION_WITHIN).await;
    as_token
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
    as_token
        .events("/api/events")
        .error(401, "unauthorized")
        .await;
    still_open(&mut session_stream, alice, ws).await;
    assert!(alice.items("/api/tokens").await.is_empty());
    alice
        .delete(&format!("/api/tokens/{token_id}"))
        .await
        .expect_error(404, "not_found");

    // A token made with a lifetime stops working when it ends, and so do its streams.
    let brief = make_token(alice, json!({"name": "brief", "ttl": "2s"})).await;
    let expires: Value = brief["expiresAt"].clone();
    assert!(expires.is_string(), "{brief}");
    let as_brief = AppClient::with_bearer(server, &text(&brief, "token"));
    let mut brief_stream = as_brief.events("/api/events").open().await;
    let opened = Instant::now();
    timeout(
        Duration::from_secs(6),
        brief_stream.expect_end(ITEM_TIMEOUT),
    )
    .await
    .expect("the stream of an expired token ends");
    assert!(
        opened.elapsed() >= Duration::from_millis(500),
        "the stream ended before the token expired"
    );
    as_brief
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
    as_brief
        .events("/api/events")
        .error(401, "unauthorized")
        .await;
    assert!(alice.items("/api/tokens").await.is_empty(), "expired");
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_their_streams() {
    let world = AppWorld::start().await;
    let AppWorld {
        server, alice, ws, ..
    } = &world;
    let elsewhere = AppClient::login(server, "alice@example.com", PASSWORD).await;
    let mut here_stream = alice.events("/api/events").open().await;
    let mut elsewhere_stream = elsewhere.events("/api/events").open().await;
    let token = make_token(alice, json!({"name": "kept"})).await;
    let as_token = AppClient::with_bearer(server, &text(&token, "token"));
    let new = "a-new-password-0123";

    // The current password is checked, the new one as a new user's.
    for (body, status, code) in [
        (
            json!({"current": "wrong-password", "new": new}),
            403,
            "forbidden",
        ),
        (
            json!({"current": PASSWORD, "new": "short"}),
            400,
            "bad_request",
        ),
        (
            json!({"current": PASSWORD, "new": "p".repeat(257)}),
            400,
            "bad_request",
        ),
        (json!({"current": PASSWORD}), 400, "bad_request"),
    ] {
        alice
            .post("/api/me/password", &body)
            .await
            .expect_error(status, code);
    }
    elsewhere.get("/api/me").await.expect(200);

    let changed = Instant::now();
    alice
        .post(
            "/api/me/password",
            &json!({"current": PASSWORD, "new": new}),
        )
        .await
        .expect(204);
    // The other session and its stream end; this session stays (its stream ends too and
    // reconnects under the same session).
    ends(&mut elsewhere_stream, changed, REVOCATION_WITHIN).await;
    ends(&mut here_stream, changed, REVOCATION_WITHIN).await;
    elsewhere
        .get("/api/me")
        .await
        .expect_error(401, "unauthorized");
    elsewhere
        .events("/api/events")
        .error(401, "unauthorized")
        .await;
    assert_eq!(alice.get("/api/me").await.expect(200), alice.user);
    let mut reopened = alice.events("/api/events").open().await;
    still_open(&mut reopened, alice, ws).await;
    // API tokens are not sessions: they stay.
    assert_eq!(as_token.get("/api/me").await.expect(200), alice.user);

    // Only the new password signs in.
    AppClient::anonymous(server)
        .post(
            "/api/login",
            &json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await
        .expect_error(401, "unauthorized");
    AppClient::login(server, "alice@example.com", new).await;
}

#[tokio::test]
async fn a_deactivated_user_is_locked_out_at_once() {
    let world = AppWorld::start().await;
    let AppWorld {
        server,
        admin,
        alice,
        bob,
        ws,
        ..
    } = &world;
    let token = make_token(bob, json!({"name": "bob's script"})).await;
    let bob_token = AppClient::with_bearer(server, &text(&token, "token"));
    let mut session_stream = bob.events("/api/events").open().await;
    let mut token_stream = bob_token.events("/api/events").open().await;
    let mut alice_stream = alice.events("/api/events").open().await;
    let deactivate = format!("/api/users/{}/deactivate", bob.id());

    // Admins only, never themselves, only users that exist.
    alice
        .post(&deactivate, &json!({}))
        .await
        .expect_error(403, "forbidden");
    admin
        .post(&format!("/api/users/{}/deactivate", admin.id()), &json!({}))
        .await
        .expect_error(409, "conflict");
    admin
        .post(
            &format!("/api/users/{}/deactivate", uuid::Uuid::new_v4()),
            &json!({}),
        )
        .await
        .expect_error(404, "not_found");
    admin
        .post("/api/users/nobody/deactivate", &json!({}))
        .await
        .expect_error(400, "bad_request");
    bob.get("/api/me").await.expect(200);

    let deactivated = Instant::now();
    let answer = admin.post(&deactivate, &json!({})).await.expect(200);
    let mut expected = bob.user.clone();
    expected["active"] = false.into();
    assert_eq!(answer, expected);
    ends(&mut session_stream, deactivated, REVOCATION_WITHIN).await;
    ends(&mut token_stream, deactivated, REVOCATION_WITHIN).await;
    for client in [bob, &bob_token] {
        client
            .get("/api/me")
            .await
            .expect_error(401, "unauthorized");
        client
            .events("/api/events")
            .error(401, "unauthorized")
            .await;
    }
    // A login fails exactly as with a wrong password: it does not tell.
    let anonymous = AppClient::anonymous(server);
    let bob_login = json!({"email": "bob@example.com", "password": PASSWORD});
    let refused = anonymous
        .post("/api/login", &bob_login)
        .await
        .expect_error(401, "unauthorized");
    let wrong = anonymous
        .post(
            "/api/login",
            &json!({"email": "alice@example.com", "password": "wrong-password"}),
        )
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(refused, wrong);
    let listed = alice.items("/api/users").await;
    let bob_listed = listed
        .iter()
        .find(|u| u["id"] == bob.id())
        .expect("Bob is listed");
    assert_eq!(bob_listed["active"], false, "{listed:?}");
    assert!(
        listed
            .iter()
            .filter(|u| u["id"] != bob.id())
            .all(|u| u["active"] == true),
        "{listed:?}"
    );
    // Others' streams go on.
    still_open(&mut alice_stream, alice, ws).await;

    // Reactivated: Bob signs in again (his old sessions are gone), and his token works.
    let activated = admin
        .post(&format!("/api/users/{}/activate", bob.id()), &json!({}))
        .await
        .expect(200);
    assert_eq!(activated["active"], true);
    bob.get("/api/me").await.expect_error(401, "unauthorized");
    anonymous.post("/api/login", &bob_login).await.expect(200);
    assert_eq!(bob_token.get("/api/me").await.expect(200), bob.user);
}

#[tokio::test]
async fn the_cli_makes_tokens_with_a_lifetime() {
    let server = TestServer::app().await;
    let dir = server.data_dir().to_str().expect("a UTF-8 path").to_owned();
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let output = run_herald(&[
        "user",
        "token",
        ADMIN_EMAIL,
        "--name",
        "nightly",
        "--ttl",
        "30d",
        "--data-dir",
        &dir,
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("hrld_"), "{token}");
    let as_token = AppClient::with_bearer(&server, &token);
    assert_eq!(as_token.get("/api/me").await.expect(200), admin.user);
    let listed = admin.items("/api/tokens").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "nightly");
    assert!(listed[0]["expiresAt"].is_string(), "{listed:?}");

    let bad = run_herald(&[
        "user",
        "token",
        ADMIN_EMAIL,
        "--ttl",
        "forever",
        "--data-dir",
        &dir,
    ])
    .await;
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
}

#[tokio::test]
async fn the_cli_deactivates_and_activates_users_while_the_server_runs() {
    let world = AppWorld::start().await;
    let AppWorld {
        server,
        alice,
        bob,
        ws,
        ..
    } = &world;
    let dir = server.data_dir().to_str().expect("a UTF-8 path").to_owned();
    let run = |verb: &'static str| {
        let dir = dir.clone();
        async move { run_herald(&["user", verb, "bob@example.com", "--data-dir", &dir]).await }
    };
    let mut bob_stream = bob.events("/api/events").open().await;
    let mut alice_stream = alice.events("/api/events").open().await;

    // The CLI's change reaches the server through the outbox relay (every second).
    let deactivated = Instant::now();
    let output = run("deactivate").await;
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(printed["active"], false, "{printed}");
    assert_eq!(printed["id"], bob.id());
    ends(&mut bob_stream, deactivated, Duration::from_secs(5)).await;
    bob.get("/api/me").await.expect_error(401, "unauthorized");
    still_open(&mut alice_stream, alice, ws).await;

    let output = run("activate").await;
    assert!(output.status.success(), "{output:?}");
    AppClient::login(server, "bob@example.com", PASSWORD).await;
    let unknown = run_herald(&[
        "user",
        "deactivate",
        "nobody@example.com",
        "--data-dir",
        &dir,
    ])
    .await;
    assert!(!unknown.status.success());
}
