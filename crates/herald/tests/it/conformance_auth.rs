//! Conformance of Mercure authorization, in both dialects, against a real server: how
//! tokens are presented and verified (0.x `mercure` claims, 1.0 access tokens), the Bearer
//! challenges of refused requests, the protected-resource metadata, and CORS. Each test
//! states the rule it checks.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    ApiError, KEY, TestServer, access_token, admin_token, header, http_client, token,
};

const T: &str = "https://example.com/conformance/1";
const OTHER: &str = "https://example.com/conformance/2";
const ISSUER: &str = "https://issuer.example";
const METADATA: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The resource a request to `server` names without `--resource`.
fn resource(server: &TestServer) -> String {
    server.hub_url()
}

/// A 1.0 access token of [`ISSUER`] for `server`.
fn access(server: &TestServer, publish: &[&str], subscribe: &[&str]) -> String {
    access_token(ISSUER, &resource(server), publish, subscribe)
}

/// The challenge of a refused request to `server`, with `error` (none: bare).
fn challenge(server: &TestServer, error: Option<&str>) -> String {
    let metadata = format!("resource_metadata=\"{}{METADATA}\"", server.url());
    match error {
        Some(error) => format!("Bearer error=\"{error}\", {metadata}"),
        None => format!("Bearer {metadata}"),
    }
}

/// Publishes `form` with `token`; through the router when `via_router` (a request with an
/// `Origin` takes it), else on the direct HTTP/1 path. Returns status and challenge.
async fn publish(
    server: &TestServer,
    token: Option<&str>,
    form: &[(&str, &str)],
    via_router: bool,
) -> (StatusCode, String) {
    let mut request = server.http.post(server.hub_url()).form(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if via_router {
        request = request.header("origin", server.url());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = header(response.headers(), "www-authenticate");
    if status != StatusCode::OK {
        // Refusals keep their JSON bodies.
        let error = ApiError::read(response).await;
        assert_eq!(error.status, status.as_u16());
    }
    (status, challenge)
}

#[tokio::test]
async fn a_request_without_a_token_gets_a_bare_challenge_naming_the_metadata() {
    // Refused for want of a token: 401 with a Bearer challenge carrying no error code and
    // pointing at the protected-resource metadata, on every path.
    let server = TestServer::start().await;
    for via_router in [false, true] {
        let got = publish(&server, None, &[("topic", T)], via_router).await;
        assert_eq!(got, (StatusCode::UNAUTHORIZED, challenge(&server, None)));
    }
    let response = server.subscribe().topic(T).send().await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        challenge(&server, None)
    );
}

#[tokio::test]
async fn a_bad_token_gets_invalid_token_and_the_challenge_says_no_more() {
    // A presented token that fails verification: 401 `invalid_token`; the header never
    // says why, whatever the dialect or the reason.
    let server = TestServer::start().await;
    let other_hub = access_token(ISSUER, "https://elsewhere/.well-known/mercure", &[T], &[]);
    let expired = crate::support::token_with(
        KEY,
        &herald::auth::Claims {
            exp: Some(1),
            ..herald::auth::Claims::default()
        },
    );
    for bad in ["garbage", &expired, &other_hub] {
        for via_router in [false, true] {
            let got = publish(&server, Some(bad), &[("topic", T)], via_router).await;
            assert_eq!(
                got,
                (
                    StatusCode::UNAUTHORIZED,
                    challenge(&server, Some("invalid_token"))
                )
            );
        }
        let response = server.subscribe().topic(T).bearer(bad).send().await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(response.headers(), "www-authenticate"),
            challenge(&server, Some("invalid_token"))
        );
    }
}

#[tokio::test]
async fn a_token_without_the_right_gets_insufficient_scope() {
    // A valid token that does not allow the request: 403 `insufficient_scope`, in both
    // dialects.
    let server = TestServer::start().await;
    let zero_x = token(&[OTHER], &[]);
    let one = access(&server, &[OTHER], &[T]);
    let subscriber_only = access(&server, &[], &[T]);
    for token in [&zero_x, &one, &subscriber_only] {
        for via_router in [false, true] {
            let got = publish(&server, Some(token), &[("topic", T)], via_router).await;
            assert_eq!(
                got,
                (
                    StatusCode::FORBIDDEN,
                    challenge(&server, Some("insufficient_scope"))
                )
            );
        }
    }
}

#[tokio::test]
async fn a_malformed_request_gets_invalid_request() {
    // A malformed request from an authorized client: 400 `invalid_request`.
    let server = TestServer::start().await;
    for token in [admin_token(), access(&server, &["*"], &[])] {
        for via_router in [false, true] {
            let form = [("topic", T), ("retry", "soon")];
            let got = publish(&server, Some(&token), &form, via_router).await;
            assert_eq!(
                got,
                (
                    StatusCode::BAD_REQUEST,
                    challenge(&server, Some("invalid_request"))
                )
            );
        }
    }
}

#[tokio::test]
async fn access_tokens_publish_and_receive_what_their_details_grant() {
    // A 1.0 token's authorization_details decide what it may publish and which private
    // updates it receives; a 0.x token's mercure claim does the same beside it.
    let server = TestServer::start().await;
    let publisher = access(&server, &[T, OTHER], &[]);
    let mut one = server
        .subscribe()
        .topic("*")
        .bearer(&access(&server, &[], &[T]))
        .open()
        .await;
    let mut zero_x = server
        .subscribe()
        .topic("*")
        .bearer(&token(&[], &[OTHER]))
        .open()
        .await;
    for (topic, id) in [(T, "private-t"), (OTHER, "private-other")] {
        let response = server
            .publish_with(
                Some(&publisher),
                &[("topic", topic), ("id", id), ("private", "on")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    server.publish_id(T, "end").await;
    assert_eq!(one.ids_until("end").await, ["private-t", "end"]);
    assert_eq!(zero_x.ids_until("end").await, ["private-other", "end"]);
}

/// Publishes to [`T`] with `token` on the direct path; the status.
async fn publish_status(server: &TestServer, token: &str) -> StatusCode {
    publish(server, Some(token), &[("topic", T)], false).await.0
}

#[tokio::test]
async fn access_tokens_must_be_typed_expiring_and_issued_for_this_hub() {
    // A token carrying authorization_details is an access token: it needs `typ: at+jwt`,
    // an issuer, an expiry and this hub in its audience, or it is refused.
    let server = TestServer::start().await;
    let good = access(&server, &[T], &[]);
    assert_eq!(publish_status(&server, &good).await, StatusCode::OK);
    let key = jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes());
    let claims: Value = serde_json::json!({
        "iss": ISSUER,
        "aud": resource(&server),
        "exp": herald::auth::unix_now() + 600,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["publish"],
            "topics": [{ "match": T }],
        }],
    });
    let sign = |typ: Option<&str>, change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    assert_eq!(
        publish_status(&server, &sign(Some("at+jwt"), &|_| {})).await,
        StatusCode::OK
    );
    // An audience array naming this hub among others.
    let aud_array = sign(Some("at+jwt"), &|c| {
        c["aud"] = serde_json::json!(["https://other", resource(&server)]);
    });
    assert_eq!(publish_status(&server, &aud_array).await, StatusCode::OK);
    let refused = [
        ("typ JWT", sign(Some("JWT"), &|_| {})),
        (
            "no exp",
            sign(Some("at+jwt"), &|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "no iss",
            sign(Some("at+jwt"), &|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        (
            "no aud",
            sign(Some("at+jwt"), &|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "nbf ahead",
            sign(Some("at+jwt"), &|c| {
                c["nbf"] = (herald::auth::unix_now() + 600).into();
            }),
        ),
        (
            "a bad detail",
            sign(Some("at+jwt"), &|c| {
                c["authorization_details"][0]["actions"] = serde_json::json!(["fly"]);
            }),
        ),
    ];
    for (what, token) in refused {
        assert_eq!(
            publish_status(&server, &token).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
}

#[tokio::test]
async fn issuers_are_trusted_only_as_configured_each_with_its_key() {
    // With --issuer set, a token naming another issuer is refused, and an issuer with its
    // own key is verified with that key only, whatever the token's header says.
    let dir = env!("CARGO_MANIFEST_DIR");
    let ed_issuer = "https://ed.example";
    let server = TestServer::with_args(&[
        "--issuer",
        ISSUER,
        "--issuer",
        &format!("{ed_issuer}={dir}/tests/keys/ed25519.pub.pem"),
    ])
    .await;
    assert_eq!(
        publish_status(&server, &access(&server, &[T], &[])).await,
        StatusCode::OK
    );
    let stranger = access_token("https://stranger.example", &resource(&server), &[T], &[]);
    assert_eq!(
        publish_status(&server, &stranger).await,
        StatusCode::UNAUTHORIZED
    );
    // The Ed25519 issuer's own token passes; one signed with the hub's key does not.
    let claims = serde_json::json!({
        "iss": ed_issuer,
        "aud": resource(&server),
        "exp": herald::auth::unix_now() + 600,
        "authorization_details": [{ "type": "mercure", "actions": ["publish"], "topics": [{ "match": "*" }] }],
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    let private = std::fs::read(format!("{dir}/tests/keys/ed25519.pem")).unwrap();
    let ed_key = jsonwebtoken::EncodingKey::from_ed_pem(&private).unwrap();
    let ed_token = jsonwebtoken::encode(&header, &claims, &ed_key).unwrap();
    assert_eq!(publish_status(&server, &ed_token).await, StatusCode::OK);
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    let forged = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        publish_status(&server, &forged).await,
        StatusCode::UNAUTHORIZED
    );
    // A 0.x token of the hub's key that names no issuer still works.
    assert_eq!(
        publish_status(&server, &token(&[T], &[])).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_configured_resource_is_the_only_audience() {
    // With --resource set, a 1.0 token must name exactly that resource in `aud`; the
    // request's own host no longer counts.
    let resource = "https://hub.example/.well-known/mercure";
    let server = TestServer::with_args(&["--resource", resource]).await;
    let named = access_token(ISSUER, resource, &[T], &[]);
    assert_eq!(publish_status(&server, &named).await, StatusCode::OK);
    let by_host = access(&server, &[T], &[]);
    assert_eq!(
        publish_status(&server, &by_host).await,
        StatusCode::UNAUTHORIZED
    );
    // The challenge points at the metadata of the configured resource.
    let (_, got) = publish(&server, None, &[("topic", T)], false).await;
    assert_eq!(
        got,
        "Bearer resource_metadata=\"https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure\""
    );
}

#[tokio::test]
async fn exactly_one_presented_token_is_used_in_precedence_order() {
    // Header, then the `authorization` query parameter, then the 1.0 cookie, then the 0.x
    // cookie: the first present is the only one read, a bad one is not saved by the next.
    let server = TestServer::start().await;
    let good = token(&[T], &[]);
    let send = |bearer: Option<&str>, query: Option<&str>, cookie: Option<String>| {
        let mut url = server.hub_url();
        if let Some(query) = query {
            url = format!("{url}?authorization={query}");
        }
        let mut request = server.http.post(url).form(&[("topic", T)]);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move { request.send().await.unwrap().status() }
    };
    let ok = StatusCode::OK;
    let bad = StatusCode::UNAUTHORIZED;
    assert_eq!(send(Some(&good), Some("garbage"), None).await, ok);
    assert_eq!(send(Some("garbage"), Some(&good), None).await, bad);
    let cookie = |name: &str, value: &str| Some(format!("{name}={value}"));
    assert_eq!(
        send(
            None,
            Some(&good),
            cookie("__Secure-mercure_access_token", "garbage")
        )
        .await,
        ok
    );
    assert_eq!(
        send(
            None,
            Some("garbage"),
            cookie("__Secure-mercure_access_token", &good)
        )
        .await,
        bad
    );
    let both = |secure: &str, old: &str| {
        Some(format!(
            "mercureAuthorization={old}; __Secure-mercure_access_token={secure}"
        ))
    };
    assert_eq!(send(None, None, both(&good, "garbage")).await, ok);
    assert_eq!(send(None, None, both("garbage", &good)).await, bad);
    assert_eq!(
        send(None, None, cookie("mercureAuthorization", &good)).await,
        ok
    );
}

#[tokio::test]
async fn cookie_tokens_of_the_1_0_cookie_still_need_the_same_origin_to_publish() {
    // A token from a cookie does not let another origin publish (the browser sends
    // cookies along on its own).
    let server = TestServer::start().await;
    let response = server
        .http
        .post(server.hub_url())
        .form(&[("topic", T)])
        .header(
            "cookie",
            format!("__Secure-mercure_access_token={}", token(&[T], &[])),
        )
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_protected_resource_metadata_describes_the_hub() {
    // The hub serves its protected-resource metadata: the resource, the ways to present a
    // token, the Mercure grant type and the trusted issuers; cacheable, readable from any
    // origin, with the hub's discovery link.
    let server = TestServer::with_args(&["--issuer", ISSUER]).await;
    let response = http_client()
        .get(format!("{}{METADATA}", server.url()))
        .header("origin", "https://any.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "access-control-allow-origin"), "*");
    assert!(header(&headers, "cache-control").contains("max-age="));
    assert_eq!(
        header(&headers, "link"),
        "</.well-known/mercure>; rel=\"mercure\""
    );
    let document: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        document,
        serde_json::json!({
            "resource": resource(&server),
            "bearer_methods_supported": ["header", "query"],
            "authorization_details_types_supported": ["https://mercure.rocks/authorization-detail"],
            "authorization_servers": [ISSUER],
            "mercure_cookie": "__Secure-mercure_access_token",
        })
    );
}

#[tokio::test]
async fn cors_exposes_mercure_headers_and_allows_query() {
    // Browsers on allowed origins may read the challenge, cursors and retry hints, and
    // may send QUERY requests.
    let origin = "https://app.example";
    let server = TestServer::with_args(&["--cors-origin", origin]).await;
    let response = server
        .http
        .post(server.hub_url())
        .header("origin", origin)
        .form(&[("topic", T)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let exposed = header(response.headers(), "access-control-expose-headers").to_lowercase();
    for name in [
        "link",
        "mercure-last-event-id",
        "last-event-id",
        "www-authenticate",
        "retry-after",
        "accept-query",
    ] {
        assert!(
            exposed.split(',').any(|n| n.trim() == name),
            "{name} in {exposed}"
        );
    }
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.hub_url())
        .header("origin", origin)
        .header("access-control-request-method", "QUERY")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(header(preflight.headers(), "access-control-allow-methods").contains("QUERY"));
}

#[tokio::test]
async fn herald_token_mints_access_tokens_the_hub_accepts() {
    // `herald token --v1` mints a 1.0 access token the hub accepts for what it names.
    let server = TestServer::start().await;
    let output = crate::support::run_herald(&[
        "token",
        "--jwt-key",
        KEY,
        "--v1",
        "--issuer",
        ISSUER,
        "--audience",
        &resource(&server),
        "--publish",
        T,
    ])
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted = String::from_utf8(output.stdout).unwrap();
    assert_eq!(publish_status(&server, minted.trim()).await, StatusCode::OK);
    let elsewhere = publish(&server, Some(minted.trim()), &[("topic", OTHER)], false).await;
    assert_eq!(elsewhere.0, StatusCode::FORBIDDEN);
}
