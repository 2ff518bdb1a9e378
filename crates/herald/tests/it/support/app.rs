//! The app (docs/app-api.md): [`AppClient`], a user with a session speaking JSON;
//! [`Reply`], a whole answer; [`AppStream`], one of the app's event streams; [`AppWorld`],
//! the users and workspaces most app tests start from.

use std::time::Duration;

use herald_sse::Item;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{ApiError, ITEM_TIMEOUT, Sse, TestServer, header};

/// The admin an app server creates on its first start (`HERALD_ADMIN_EMAIL`).
pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";

/// That admin's password (`HERALD_ADMIN_PASSWORD`).
pub(crate) const ADMIN_PASSWORD: &str = "admin-password-0123";

/// The password of every user the app tests create.
pub(crate) const PASSWORD: &str = "user-password-0123";

/// The name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "herald_session";

impl TestServer {
    /// A server whose first start creates the admin [`ADMIN_EMAIL`] with
    /// [`ADMIN_PASSWORD`].
    pub(crate) async fn app() -> Self {
        Self::app_with(&[]).await
    }

    /// [`TestServer::app`] with more arguments.
    pub(crate) async fn app_with(args: &[&str]) -> Self {
        Self::with_env(
            &[
                ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
                ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ],
            args,
        )
        .await
    }
}

/// The string `value[key]`.
///
/// # Panics
///
/// When it is absent or not a string.
pub(crate) fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} is not a string in {value}"))
        .to_owned()
}

/// The `id` of a resource.
pub(crate) fn id_of(value: &Value) -> String {
    text(value, "id")
}

/// The sorted keys of a JSON object, for exact shape checks.
pub(crate) fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Asserts that `value` is an RFC 3339 timestamp in UTC.
pub(crate) fn assert_utc_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp is a string: {value}"));
    let bytes = text.as_bytes();
    let shaped = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|range| bytes[range].iter().all(u8::is_ascii_digit));
    let utc = text.ends_with('Z') || text.ends_with("+00:00");
    assert!(shaped && utc, "not an RFC 3339 timestamp in UTC: {text:?}");
}

/// How an [`AppClient`] authenticates.
#[derive(Clone, Debug)]
enum Auth {
    None,
    /// `Cookie: herald_session=…`.
    Cookie(String),
    /// `Authorization: Bearer hrld_…`.
    Bearer(String),
}

/// A user of the app: an HTTP client that sends one user's session cookie (or API token)
/// with every request, and speaks JSON.
#[derive(Clone)]
pub(crate) struct AppClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// The `User` this client acts as; `null` when anonymous.
    pub(crate) user: Value,
}

impl AppClient {
    /// A client that sends no credentials.
    pub(crate) fn anonymous(server: &TestServer) -> Self {
        Self {
            http: server.http.clone(),
            base: server.url(),
            auth: Auth::None,
            user: Value::Null,
        }
    }

    /// A client that sends `cookie` (`herald_session=…`) as its `Cookie` header.
    pub(crate) fn with_cookie(server: &TestServer, cookie: &str) -> Self {
        Self {
            auth: Auth::Cookie(cookie.to_owned()),
            ..Self::anonymous(server)
        }
    }

    /// A client that sends `Authorization: Bearer <token>`.
    pub(crate) fn with_bearer(server: &TestServer, token: &str) -> Self {
        Self {
            auth: Auth::Bearer(token.to_owned()),
            ..Self::anonymous(server)
        }
    }

    /// Logs in (a new session each time).
    ///
    /// # Panics
    ///
    /// Unless the login answers 200 and sets the session cookie.
    pub(crate) async fn login(server: &TestServer, email: &str, password: &str) -> Self {
        let reply = Self::anonymous(server)
            .post("/api/login", &json!({"email": email, "password": password}))
            .await;
        let cookie = reply.session_cookie();
        let user = reply.expect(200);
        Self {
            auth: Auth::Cookie(cookie),
            user,
            ..Self::anonymous(server)
        }
    }

    /// The user's id.
    pub(crate) fn id(&self) -> String {
        id_of(&self.user)
    }

    /// The `{id, name}` by which events name this user.
    pub(crate) fn event_user(&self) -> Value {
        json!({"id": self.user["id"], "name": self.user["name"]})
    }

    /// The `Cookie` header this client sends.
    ///
    /// # Panics
    ///
    /// When it does not authenticate by cookie.
    pub(crate) fn cookie(&self) -> String {
        match &self.auth {
            Auth::Cookie(cookie) => cookie.clone(),
            other => panic!("not a cookie client: {other:?}"),
        }
    }

    /// A request to `path` (which starts with `/`) with this client's credentials.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Auth::None => request,
            Auth::Cookie(cookie) => request.header("cookie", cookie),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Sends `body` as it is, with `content_type` (if any) and extra `headers`.
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let what = format!("{method} {path}");
        let mut request = self.request(method, path);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Reply::read(what, response).await
    }

    /// Sends `body` (if any) as JSON.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|body| serde_json::to_vec(body).expect("serialize the body"));
        let content_type = body.as_ref().map(|_| "application/json");
        self.raw(method, path, content_type, body, &[]).await
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`.
    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// The `items` of a `GET path` that answers 200.
    pub(crate) async fn items(&self, path: &str) -> Vec<Value> {
        let page = self.get(path).await.expect(200);
        page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no items array in {page}"))
            .clone()
    }

    /// Creates a user (as an admin); returns the `User`.
    pub(crate) async fn create_user(&self, email: &str, name: &str, role: &str) -> Value {
        let body = json!({"email": email, "name": name, "password": PASSWORD, "role": role});
        self.post("/api/users", &body).await.expect(201)
    }

    /// Creates a `member` user (as an admin) and signs it in.
    pub(crate) async fn new_member(&self, server: &TestServer, email: &str, name: &str) -> Self {
        self.create_user(email, name, "member").await;
        Self::login(server, email, PASSWORD).await
    }

    /// Creates a workspace; returns the `Workspace`.
    pub(crate) async fn create_workspace(&self, name: &str) -> Value {
        self.post("/api/workspaces", &json!({"name": name}))
            .await
            .expect(201)
    }

    /// Adds `user` to `ws` with `role`; returns the `Member`.
    pub(crate) async fn add_member(&self, ws: &str, user: &str, role: &str) -> Value {
        let body = json!({"userId": user, "role": role});
        self.post(&format!("/api/workspaces/{ws}/members"), &body)
            .await
            .expect(201)
    }

    /// Creates a resource in `collection` of `ws`; returns it.
    pub(crate) async fn create(&self, ws: &str, collection: &str, body: Value) -> Value {
        self.post(&format!("/api/workspaces/{ws}/{collection}"), &body)
            .await
            .expect(201)
    }

    /// A request for the event stream at `path` (with its query, if any).
    pub(crate) fn events(&self, path: &str) -> AppStreamReq {
        AppStreamReq {
            client: self.clone(),
            path: path.to_owned(),
            headers: Vec::new(),
        }
    }
}

/// A whole answer of the app.
pub(crate) struct Reply {
    /// The request, for messages: `POST /api/login`.
    pub(crate) what: String,
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body.
    pub(crate) body: String,
}

impl Reply {
    async fn read(what: String, response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: read the body: {e}"));
        Self {
            what,
            status,
            headers,
            body,
        }
    }

    /// Asserts the status; returns the JSON body (`null` for a 204, whose body must be
    /// empty).
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{} answered {}: {}",
            self.what,
            self.status,
            self.body
        );
        if status == 204 {
            assert_eq!(self.body, "", "{}: a 204 has no body", self.what);
            return Value::Null;
        }
        let content_type = header(&self.headers, "content-type");
        assert!(
            content_type.starts_with("application/json"),
            "{} answered content-type {content_type:?}: {}",
            self.what,
            self.body
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: the body is not JSON ({e}): {}", self.what, self.body))
    }

    /// Asserts an error answer with `status` and `code`, whose body is exactly the JSON
    /// object `{error, message}` with a message.
    #[track_caller]
    pub(crate) fn expect_error(self, status: u16, code: &str) -> ApiError {
        let what = &self.what;
        let body = &self.body;
        assert_eq!(
            self.status.as_u16(),
            status,
            "{what} answered {}: {body}",
            self.status
        );
        let content_type = header(&self.headers, "content-type");
        assert!(
            content_type.starts_with("application/json"),
            "{what} answered {status} with content-type {content_type:?}: {body}"
        );
        let json: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {body}"));
        assert_eq!(
            keys(&json),
            ["error", "message"],
            "{what}: an error is exactly {{error, message}}: {body}"
        );
        let error = ApiError {
            status: self.status.as_u16(),
            code: text(&json, "error"),
            message: text(&json, "message"),
        };
        assert_eq!(error.code, code, "{what} answered {status}: {body}");
        assert!(!error.message.is_empty(), "{what}: an empty message");
        error
    }

    /// The `Set-Cookie` header that sets the session cookie.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub(crate) fn set_session_cookie(&self) -> String {
        let prefix = format!("{SESSION_COOKIE}=");
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().expect("a text Set-Cookie").to_owned())
            .find(|value| value.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{}: no Set-Cookie {prefix}…", self.what))
    }

    /// `herald_session=<value>`, as a `Cookie` header sends it back.
    pub(crate) fn session_cookie(&self) -> String {
        let set_cookie = self.set_session_cookie();
        set_cookie
            .split(';')
            .next()
            .expect("a cookie pair")
            .trim()
            .to_owned()
    }
}

/// A request for one of the app's event streams, being built.
pub(crate) struct AppStreamReq {
    client: AppClient,
    path: String,
    headers: Vec<(String, String)>,
}

impl AppStreamReq {
    /// Sends the `Last-Event-ID` header.
    pub(crate) fn last_event_id(mut self, id: &str) -> Self {
        self.headers
            .push(("last-event-id".to_owned(), id.to_owned()));
        self
    }

    /// Sends the request, for a test that expects it refused.
    pub(crate) async fn send(&self) -> reqwest::Response {
        let mut request = self
            .client
            .request(Method::GET, &self.path)
            .header("accept", "text/event-stream");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.path))
    }

    /// Opens the stream and reads up to its `connected` event, asserting 200, the SSE
    /// headers, `connected` first and a `retry:` hint.
    pub(crate) async fn open(self) -> AppStream {
        let what = format!("GET {}", self.path);
        let response = self.send().await;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("{what} answered {status}: {body}");
        }
        let content_type = header(response.headers(), "content-type");
        assert!(
            content_type.starts_with("text/event-stream"),
            "{what}: content-type {content_type:?}"
        );
        for (name, value) in [
            ("cache-control", "no-cache, no-transform"),
            ("x-accel-buffering", "no"),
        ] {
            assert_eq!(header(response.headers(), name), value, "{what}: {name}");
        }
        let mut sse = Sse::new(response);
        // The opening: `connected` first of the events, with a `retry:` hint before or right
        // after it.
        let mut retry = false;
        let connected = loop {
            match sse.next_item().await {
                Some(Item::Retry(_)) => retry = true,
                Some(Item::Comment(_)) => {}
                Some(Item::Message(message)) => break message,
                None => panic!("{what}: the stream ended before `connected`"),
            }
        };
        assert_eq!(
            connected.event, "connected",
            "{what}: the first event: {connected:?}"
        );
        while !retry {
            match sse.next_item().await {
                Some(Item::Retry(_)) => retry = true,
                Some(Item::Comment(_)) => {}
                other => {
                    panic!("{what}: no retry: hint at the opening; after `connected`: {other:?}")
                }
            }
        }
        let connected = serde_json::from_str(&connected.data).unwrap_or_else(|e| {
            panic!("{what}: `connected` data is not JSON ({e}): {connected:?}")
        });
        AppStream {
            sse,
            connected,
            what,
        }
    }

    /// Sends the request, expecting an error answer with `status` and `code`.
    pub(crate) async fn error(self, status: u16, code: &str) -> ApiError {
        let what = format!("GET {}", self.path);
        let response = self.send().await;
        assert_ne!(
            response.status(),
            StatusCode::OK,
            "{what}: expected {status}, the stream opened"
        );
        Reply::read(what, response).await.expect_error(status, code)
    }
}

/// One event of an app stream.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AppEvent {
    /// The `event:` field.
    pub(crate) event: String,
    /// The `id:` field (the last event id at dispatch).
    pub(crate) id: String,
    /// The `data:`, parsed as JSON (a JSON string when it is not JSON).
    pub(crate) data: Value,
}

/// An open app stream, past its `connected` event.
pub(crate) struct AppStream {
    sse: Sse,
    /// The data of the `connected` event.
    pub(crate) connected: Value,
    what: String,
}

impl AppStream {
    /// The workspaces of the `connected` event, sorted.
    pub(crate) fn connected_workspaces(&self) -> Vec<String> {
        let mut list: Vec<String> = self.connected["workspaces"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: connected without workspaces", self.what))
            .iter()
            .map(|ws| ws.as_str().expect("a workspace id").to_owned())
            .collect();
        list.sort_unstable();
        list
    }

    /// The next event, `Ok(None)` at the end of the stream, `Err(())` when none came
    /// `within`. Skips `retry:` hints and comments.
    pub(crate) async fn next_event_within(
        &mut self,
        within: Duration,
    ) -> Result<Option<AppEvent>, ()> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sse.next_item_within(left).await? {
                Some(Item::Message(message)) => {
                    let data = serde_json::from_str(&message.data)
                        .unwrap_or_else(|_| Value::String(message.data.clone()));
                    return Ok(Some(AppEvent {
                        event: message.event,
                        id: message.last_event_id,
                        data,
                    }));
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next event.
    ///
    /// # Panics
    ///
    /// At the end of the stream, or after [`ITEM_TIMEOUT`] without one.
    pub(crate) async fn next_event(&mut self) -> AppEvent {
        match self.next_event_within(ITEM_TIMEOUT).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("{}: the stream ended while waiting for an event", self.what),
            Err(()) => panic!("{}: no event within {ITEM_TIMEOUT:?}", self.what),
        }
    }

    /// The events up to and including the one with id `last`.
    ///
    /// # Panics
    ///
    /// When the stream ends or stalls first; the message lists what came.
    pub(crate) async fn events_until(&mut self, last: &str) -> Vec<AppEvent> {
        let mut events = Vec::new();
        loop {
            match self.next_event_within(ITEM_TIMEOUT).await {
                Ok(Some(event)) => {
                    let done = event.id == last;
                    events.push(event);
                    if done {
                        return events;
                    }
                }
                Ok(None) => panic!(
                    "{}: the stream ended before {last:?}; received {events:#?}",
                    self.what
                ),
                Err(()) => panic!(
                    "{}: no event within {ITEM_TIMEOUT:?} while waiting for {last:?}; received {events:#?}",
                    self.what
                ),
            }
        }
    }

    /// Asserts that the stream ends within `within`, with no other event first.
    pub(crate) async fn expect_end(&mut self, within: Duration) {
        match self.next_event_within(within).await {
            Ok(None) => {}
            Ok(Some(event)) => panic!("{}: expected the end, got {event:?}", self.what),
            Err(()) => panic!("{}: the stream did not end within {within:?}", self.what),
        }
    }
}

/// The users and workspaces most app tests start from, on a fresh server: the admin; Alice,
/// who owns `ws`; Bob, a member of `ws`; Carol, who is not, and owns `carol_ws`. All
/// three are `member` users, signed in with a session cookie.
pub(crate) struct AppWorld {
    /// The server.
    pub(crate) server: TestServer,
    /// The admin.
    pub(crate) admin: AppClient,
    /// The owner of `ws`.
    pub(crate) alice: AppClient,
    /// A member of `ws`.
    pub(crate) bob: AppClient,
    /// Not a member of `ws`.
    pub(crate) carol: AppClient,
    /// The workspace "Team".
    pub(crate) ws: String,
    /// Carol's own workspace.
    pub(crate) carol_ws: String,
}

impl AppWorld {
    /// Starts a server and creates the users and workspaces.
    pub(crate) async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`AppWorld::start`], the server started with more arguments.
    pub(crate) async fn start_with(args: &[&str]) -> Self {
        let server = TestServer::app_with(args).await;
        let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let alice = admin
            .new_member(&server, "alice@example.com", "Alice")
            .await;
        let bob = admin.new_member(&server, "bob@example.com", "Bob").await;
        let carol = admin
            .new_member(&server, "carol@example.com", "Carol")
            .await;
        let ws = id_of(&alice.create_workspace("Team").await);
        alice.add_member(&ws, &bob.id(), "member").await;
        let carol_ws = id_of(&carol.create_workspace("Carol's").await);
        Self {
            server,
            admin,
            alice,
            bob,
            carol,
            ws,
            carol_ws,
        }
    }

    /// `/api/workspaces/{ws}/{rest}` (`rest` without a leading slash; empty for the
    /// workspace itself).
    pub(crate) fn ws_path(&self, rest: &str) -> String {
        if rest.is_empty() {
            format!("/api/workspaces/{}", self.ws)
        } else {
            format!("/api/workspaces/{}/{rest}", self.ws)
        }
    }
}
