//! `GET /.well-known/oauth-protected-resource/.well-known/mercure`: the hub's RFC 9728
//! protected-resource metadata, which tells a client what token the hub wants and where
//! to get one. Public, cacheable and readable from any origin: it holds no secret.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, Uri, header},
    response::{IntoResponse, Response},
};

use crate::{auth, credentials::SECURE_MERCURE_COOKIE, state::ServerState};

/// Where the metadata of the hub at [`super::PATH`] is.
pub const PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// How long clients and caches may keep the document, in seconds.
const MAX_AGE: u32 = 3600;

/// The metadata document: the resource (as the request's host sees it without
/// `--resource`), the ways to present a token, the Mercure grant type, the trusted issuers
/// and the 1.0 cookie's name.
pub async fn metadata(State(state): State<ServerState>, headers: HeaderMap, uri: Uri) -> Response {
    let tokens = &state.tokens;
    let mut document = serde_json::json!({
        "resource": tokens.resource(auth::request_host(&headers, &uri)),
        "bearer_methods_supported": ["header", "query"],
        "authorization_details_types_supported": [auth::details::DETAIL_TYPES[0]],
        "mercure_cookie": SECURE_MERCURE_COOKIE,
    });
    if !tokens.issuers().is_empty() {
        document["authorization_servers"] = tokens.issuers().into();
    }
    let cache = format!("public, max-age={MAX_AGE}");
    (
        [
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&cache).expect("a header value"),
            ),
            // Derived from the Host when no resource is configured.
            (header::VARY, HeaderValue::from_static("host")),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
            (header::LINK, HeaderValue::from_static(super::LINK)),
        ],
        Json(document),
    )
        .into_response()
}
