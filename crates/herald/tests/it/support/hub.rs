//! Speaking Mercure to a test server: tokens signed with [`KEY`], the API's error answers,
//! publishing, and building subscription requests ([`SubscribeReq`]).

use herald::auth::{Claims, MercureClaim, mint};
use reqwest::{StatusCode, header::HeaderMap};

use super::{KEY, Sse, TestServer};

/// A token for `claims`, signed with `key`.
pub(crate) fn token_with(key: &str, claims: &Claims) -> String {
    mint(key.as_bytes(), claims).expect("sign a token")
}

/// A token signed with [`KEY`] that may publish to `publish` and receive the private
/// updates matching `subscribe`; an empty list leaves that claim out.
pub(crate) fn token(publish: &[&str], subscribe: &[&str]) -> String {
    let list = |selectors: &[&str]| {
        (!selectors.is_empty()).then(|| selectors.iter().map(|s| (*s).to_owned()).collect())
    };
    token_with(
        KEY,
        &Claims {
            mercure: Some(MercureClaim {
                publish: list(publish),
                subscribe: list(subscribe),
            }),
            exp: None,
            sub: None,
        },
    )
}

/// A Mercure 1.0 access token of `issuer` for the resource `audience`, signed with [`KEY`],
/// valid for ten minutes: it may publish to the exact topics `publish` and receive the
/// private updates of the exact topics `subscribe` (`*` is every topic).
pub(crate) fn access_token(
    issuer: &str,
    audience: &str,
    publish: &[&str],
    subscribe: &[&str],
) -> String {
    let detail = |action, topics: &[&str]| herald::auth::Detail {
        actions: vec![action],
        topics: topics
            .iter()
            .map(|t| herald_hub::Matcher::exact(*t))
            .collect(),
        payload: None,
    };
    let mut details = Vec::new();
    if !publish.is_empty() {
        details.push(detail("publish", publish));
    }
    if !subscribe.is_empty() {
        details.push(detail("subscribe", subscribe));
    }
    herald::auth::mint_v1(
        KEY.as_bytes(),
        issuer,
        audience,
        None,
        herald::auth::unix_now() + 600,
        &details,
    )
    .expect("sign a token")
}

/// A token that may publish anywhere and receive every private update.
pub(crate) fn admin_token() -> String {
    token(&["*"], &["*"])
}

/// A header's value as text ("" when absent).
pub(crate) fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().expect("a text header").to_owned())
        .unwrap_or_default()
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The `error` field.
    pub(crate) code: String,
    /// The `message` field.
    pub(crate) message: String,
}

impl ApiError {
    /// Reads an error response, asserting that it is JSON of the documented shape.
    pub(crate) async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let content_type = header(response.headers(), "content-type");
        let body = response.text().await.expect("read the error body");
        assert_eq!(
            content_type, "application/json",
            "status {status}, body {body}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
        let object = json.as_object().expect("the body is an object");
        assert_eq!(object.len(), 2, "exactly error and message: {body}");
        Self {
            status,
            code: json["error"]
                .as_str()
                .expect("error is a string")
                .to_owned(),
            message: json["message"]
                .as_str()
                .expect("message is a string")
                .to_owned(),
        }
    }

    /// Shorthand for comparisons.
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl TestServer {
    /// A subscription request to this server's hub.
    pub(crate) fn subscribe(&self) -> SubscribeReq {
        SubscribeReq {
            http: self.http.clone(),
            url: self.hub_url(),
            query: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Publishes `form` with `token` (or none); returns the raw response.
    pub(crate) async fn publish_with(
        &self,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.http.post(self.hub_url()).form(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("POST the hub")
    }

    /// Publishes `form` with a token that may publish anywhere; asserts 200 and returns
    /// the id the hub answered.
    pub(crate) async fn publish(&self, form: &[(&str, &str)]) -> String {
        let response = self.publish_with(Some(&admin_token()), form).await;
        let status = response.status();
        let content_type = header(response.headers(), "content-type");
        let body = response.text().await.expect("read the publish answer");
        assert_eq!(status, StatusCode::OK, "publish {form:?} answered {body}");
        assert_eq!(content_type, "text/plain; charset=utf-8");
        body
    }

    /// The ids of every retained update, oldest first, then `sentinel`, which this
    /// publishes to `topic` after the reader is open: proof of what a publish stored.
    pub(crate) async fn stored_ids_then(&self, topic: &str, sentinel: &str) -> Vec<String> {
        let mut all = self
            .subscribe()
            .topic("*")
            .bearer(&token(&[], &["*"]))
            .query("lastEventID", "earliest")
            .open()
            .await;
        self.publish_id(topic, sentinel).await;
        all.ids_until(sentinel).await
    }

    /// Publishes a public update with id `id` on `topic`; asserts the hub kept that id.
    pub(crate) async fn publish_id(&self, topic: &str, id: &str) -> String {
        let got = self
            .publish(&[("topic", topic), ("id", id), ("data", id)])
            .await;
        assert_eq!(got, id);
        got
    }
}

/// A subscription request being built.
#[derive(Clone)]
pub(crate) struct SubscribeReq {
    http: reqwest::Client,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl SubscribeReq {
    /// Adds a `topic` selector.
    pub(crate) fn topic(self, selector: &str) -> Self {
        self.query("topic", selector)
    }

    /// Adds a query parameter.
    pub(crate) fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub(crate) fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends the `Last-Event-ID` header.
    pub(crate) fn last_event_id(self, id: &str) -> Self {
        self.header("last-event-id", id)
    }

    /// Uses another HTTP client (e.g. one bound to another source address).
    pub(crate) fn client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Sends the request; resolves once the response headers arrived.
    pub(crate) async fn send(self) -> reqwest::Response {
        let mut request = self.http.get(&self.url).query(&self.query);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.send().await.expect("GET the hub")
    }

    /// Opens the stream, asserting 200. Once this returns, the hub has registered the
    /// subscriber: publishing now is safe.
    pub(crate) async fn open(self) -> Sse {
        let response = self.send().await;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("subscribe answered {status}: {body}");
        }
        Sse::new(response)
    }

    /// Opens the stream; on any answer but 200, returns its status and body instead.
    pub(crate) async fn try_open(self) -> Result<Sse, (StatusCode, String)> {
        let response = self.send().await;
        let status = response.status();
        if status != StatusCode::OK {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        Ok(Sse::new(response))
    }

    /// Sends the request, expecting an error answer.
    pub(crate) async fn error(self) -> ApiError {
        let response = self.send().await;
        assert_ne!(response.status(), StatusCode::OK, "expected an error");
        ApiError::read(response).await
    }
}
