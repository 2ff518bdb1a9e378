//! The web UI and the `herald.js` client, compiled into the binary so a copied binary
//! serves them from anywhere. Plain HTML, CSS and ES modules: nothing to build.

use axum::{
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, ErrorCode};

/// The page, its style and its script.
const INDEX: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
/// The client module any app may import, at a stable path.
const CLIENT_JS: &str = include_str!("../../assets/herald.js");

const JS: &str = "text/javascript; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; revalidate so an upgrade is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`.
pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /herald.js`.
pub(crate) async fn client() -> Response {
    asset(JS, CLIENT_JS)
}

/// `GET /assets/{file}`.
pub(crate) async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset(JS, APP_JS),
        "app.css" => asset("text/css; charset=utf-8", APP_CSS),
        "herald.js" => asset(JS, CLIENT_JS),
        _ => ApiError::new(ErrorCode::NotFound, "no such asset").into_response(),
    }
}
