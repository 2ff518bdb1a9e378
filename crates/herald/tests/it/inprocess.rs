//! The app's REST API called in-process: `server::router()` answered with
//! `tower::ServiceExt::oneshot` on a temporary SQLite data directory, for what a server
//! process adds nothing to — validation errors, 404s, policy refusals, the JSON error
//! bodies and the credentials a request carries.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use clap::Parser;
use herald::{config::ServeArgs, limits::ClientAddr, server, state::ServerState};
use herald_app::{App, Commits, NewUser, UserRole};
use herald_hub::{Durability, Hub, SqliteLog};
use serde_json::{Value, json};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt as _;

const PASSWORD: &str = "correct horse battery";

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    serve: ServeArgs,
}

/// The router on a fresh data directory, with its app and hub.
struct InProcess {
    router: axum::Router,
    app: App,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// An answer: status, `Set-Cookie`, and the body as JSON (`Null` when empty).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    set_cookie: Option<String>,
    body: Value,
}

impl InProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let flags = Flags::try_parse_from([
            "herald",
            "--data-dir",
            data_dir,
            "--jwt-key",
            "0123456789abcdef0123456789abcdef",
        ])
        .unwrap();
        let config = herald::config::Config::from_args(&flags.serve, None).unwrap();
        let log = SqliteLog::open(&dir.path().join(server::LOG_FILE), Durability::Normal)
            .await
            .unwrap();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let hub = Hub::start(
            config.hub.clone(),
            Arc::new(log),
            &tracker,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let pool = herald_app::open_db(None, dir.path()).await.unwrap();
        let app = App::start(
            pool,
            hub.clone(),
            Commits::WithLog,
            &tracker,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let state = ServerState::new(hub, app.clone(), &config, shutdown.clone());
        Self {
            router: server::router(state),
            app,
            shutdown,
            _dir: dir,
        }
    }

    /// A user with `role`, signed in through `POST /api/login`: their cookie.
    async fn user(&self, name: &str, role: UserRole) -> (String, String) {
        let user = self
            .app
            .accounts()
            .add_user(NewUser {
                email: format!("{name}@example.com"),
                name: name.to_owned(),
                password: PASSWORD.to_owned(),
                role,
            })
            .await
            .unwrap();
        let login = self
            .call(
                "POST",
                "/api/login",
                &[],
                Some(json!({"email": format!("{name}@example.com"), "password": PASSWORD})),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{login:?}");
        let cookie = login.set_cookie.expect("a session cookie");
        let pair = cookie.split(';').next().unwrap().to_owned();
        (user.id, pair)
    }

    /// Sends a request with `headers` and an optional JSON body, from a loopback client.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(ClientAddr(client())));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let set_cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            set_cookie,
            body,
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn client() -> SocketAddr {
    static CLIENT: OnceLock<SocketAddr> = OnceLock::new();
    *CLIENT.get_or_init(|| "127.0.0.1:40000".parse().unwrap())
}

/// Asserts an error answer: its status, and its JSON body exactly.
#[track_caller]
fn assert_error(answer: &Answer, status: StatusCode, code: &str, message: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"error": code, "message": message}),
        "{answer:?}"
    );
}

#[tokio::test]
async fn requests_without_credentials_are_refused() {
    let server = InProcess::start().await;
    let answer = server.call("GET", "/api/workspaces", &[], None).await;
    assert_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in first (POST /api/login), or send an API token",
    );
    let answer = server
        .call(
            "GET",
            "/api/workspaces",
            &[("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x")],
            None,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the bearer token is not a Herald API token (they start with hrld_)",
    );
    let answer = server
        .call("GET", "/api/me", &[("cookie", "herald_session=0000")], None)
        .await;
    assert_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the session or token is unknown or expired; sign in again",
    );
}

#[tokio::test]
async fn a_session_cookie_may_be_quoted_and_sits_among_others() {
    let server = InProcess::start().await;
    let (id, cookie) = server.user("alice", UserRole::Member).await;
    let secret = cookie.strip_prefix("herald_session=").unwrap();
    for cookies in [
        cookie.clone(),
        format!("theme=dark; herald_session=\"{secret}\""),
        format!("a=b; {cookie}; c=d"),
    ] {
        let answer = server
            .call("GET", "/api/me", &[("cookie", &cookies)], None)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{cookies}: {answer:?}");
        assert_eq!(answer.body["id"], id.as_str());
    }
    // A basic-auth header in front of Herald does not hide the session cookie.
    let answer = server
        .call(
            "GET",
            "/api/me",
            &[("authorization", "Basic YTpi"), ("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn bodies_and_ids_are_validated() {
    let server = InProcess::start().await;
    let (_, cookie) = server.user("alice", UserRole::Member).await;
    let auth = [("cookie", cookie.as_str())];
    let answer = server
        .call("POST", "/api/workspaces", &auth, Some(json!({"name": " "})))
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "name must not be empty",
    );
    let answer = server
        .call("POST", "/api/workspaces", &auth, Some(json!(["name"])))
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "the JSON body must be an object",
    );
    let answer = server
        .call(
            "POST",
            "/api/workspaces",
            &[("cookie", cookie.as_str()), ("content-type", "text/plain")],
            None,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body must be JSON, sent with Content-Type: application/json",
    );
    let answer = server
        .call(
            "POST",
            "/api/workspaces",
            &auth,
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body: unknown field `colour`"),
        "{answer:?}"
    );
    let answer = server
        .call("GET", "/api/workspaces/not-an-id", &auth, None)
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "workspace id \"not-an-id\" is not a valid id (a UUID)",
    );
    let answer = server
        .call(
            "POST",
            "/api/tokens",
            &auth,
            Some(json!({"name": "ci", "ttl": "soon"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .starts_with("ttl \"soon\" is not a duration"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn what_does_not_exist_and_what_may_not_be_seen_are_one_404() {
    let server = InProcess::start().await;
    let (_, alice) = server.user("alice", UserRole::Member).await;
    let (_, bob) = server.user("bob", UserRole::Member).await;
    let created = server
        .call(
            "POST",
            "/api/workspaces",
            &[("cookie", alice.as_str())],
            Some(json!({"name": "Alice's"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let ws = created.body["id"].as_str().unwrap().to_owned();
    let missing = "0190a2b4-0000-7000-8000-000000000000";
    for target in [ws.as_str(), missing] {
        for path in ["", "/todos", "/members"] {
            let answer = server
                .call(
                    "GET",
                    &format!("/api/workspaces/{target}{path}"),
                    &[("cookie", bob.as_str())],
                    None,
                )
                .await;
            assert_error(
                &answer,
                StatusCode::NOT_FOUND,
                "not_found",
                "no such workspace",
            );
        }
    }
    let answer = server.call("GET", "/api/nothing-here", &[], None).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found", "no such route");
    let answer = server.call("PUT", "/api/workspaces", &[], None).await;
    assert_error(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    );
}

#[tokio::test]
async fn policy_refusals_are_403s_with_their_reason() {
    let server = InProcess::start().await;
    let (_, owner) = server.user("owner", UserRole::Member).await;
    let (member_id, member) = server.user("member", UserRole::Member).await;
    let (admin_id, _) = server.user("root", UserRole::Admin).await;
    let ws = server
        .call(
            "POST",
            "/api/workspaces",
            &[("cookie", owner.as_str())],
            Some(json!({"name": "Team"})),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = server
        .call(
            "POST",
            &format!("/api/workspaces/{ws}/members"),
            &[("cookie", owner.as_str())],
            Some(json!({"userId": member_id, "role": "member"})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");

    let as_member = [("cookie", member.as_str())];
    let answer = server
        .call(
            "PATCH",
            &format!("/api/workspaces/{ws}"),
            &as_member,
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "only the workspace's owners may rename it",
    );
    let answer = server
        .call(
            "POST",
            "/api/users",
            &as_member,
            Some(json!({"email": "x@example.com", "name": "X", "password": PASSWORD, "role": "member"})),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "only admins may create users",
    );
    let answer = server
        .call(
            "GET",
            &format!("/api/tokens?user={admin_id}"),
            &as_member,
            None,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "only admins may list others' tokens",
    );
    let answer = server
        .call(
            "POST",
            "/api/tokens",
            &as_member,
            Some(json!({"name": "ci", "notify": true})),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "only admins may make tokens that notify",
    );
    // A change authenticated by cookie from another site is refused before anything runs.
    let answer = server
        .call(
            "POST",
            &format!("/api/workspaces/{ws}/todos"),
            &[
                ("cookie", member.as_str()),
                ("origin", "https://evil.example"),
                ("host", "herald.example"),
            ],
            Some(json!({"title": "x"})),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "cookie-authenticated requests that change something are not allowed from origin \
         \"https://evil.example\"",
    );
    // The last owner stays.
    let answer = server
        .call(
            "DELETE",
            &format!("/api/workspaces/{ws}/members/{}", {
                let me = server
                    .call("GET", "/api/me", &[("cookie", owner.as_str())], None)
                    .await;
                me.body["id"].as_str().unwrap().to_owned()
            }),
            &[("cookie", owner.as_str())],
            None,
        )
        .await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "conflict",
        "the last owner cannot be removed; make another member owner first, or delete the \
         workspace",
    );
}

#[tokio::test]
async fn an_api_token_made_in_a_session_cannot_make_another() {
    let server = InProcess::start().await;
    let (_, cookie) = server.user("alice", UserRole::Member).await;
    let made = server
        .call(
            "POST",
            "/api/tokens",
            &[("cookie", cookie.as_str())],
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let token = made.body["token"].as_str().unwrap();
    let bearer = format!("Bearer {token}");
    let answer = server
        .call(
            "POST",
            "/api/tokens",
            &[("authorization", &bearer)],
            Some(json!({"name": "another"})),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::FORBIDDEN,
        "forbidden",
        "API tokens are made from a signed-in session, or with `herald user token`",
    );
    let listed = server
        .call("GET", "/api/tokens", &[("authorization", &bearer)], None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}
