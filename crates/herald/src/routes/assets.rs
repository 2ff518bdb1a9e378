//! The web UI and the `herald.js` client, compiled into the binary so a copied binary
//! serves them from anywhere. Plain HTML, CSS and ES modules: nothing to build.
//!
//! The whole `crates/herald/assets/` folder is embedded with `include_dir`, in debug and
//! release builds alike. A request names a file by its path in that folder; it is looked up
//! in the embedded map only, one exact segment at a time, so no request reaches the file
//! system, lists a folder or climbs out of it. The crate's build script makes Cargo rebuild it
//! whenever a file in the folder is changed, added or removed.

use axum::{
    Router,
    extract::{Path, rejection::PathRejection},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use include_dir::{Dir, DirEntry, File, include_dir};

use crate::error::{ApiError, ErrorCode};

/// The web UI: `index.html`, `app.css`, the `ui/` modules, and `herald.js`.
static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// The page served at `/`.
const INDEX: &str = "index.html";
/// The client module any app may import, at a stable path.
const CLIENT: &str = "herald.js";

/// Content types by file extension. A file with another extension is served as bytes.
const CONTENT_TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("ico", "image/x-icon"),
    ("woff2", "font/woff2"),
    ("txt", "text/plain; charset=utf-8"),
];

/// The asset routes, to merge into the app's router: `/`, `/herald.js`, `/assets/{path}`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/herald.js", get(client))
        .route("/assets/{*path}", get(file))
}

/// `GET /`.
async fn index() -> Response {
    serve(INDEX)
}

/// `GET /herald.js`.
async fn client() -> Response {
    serve(CLIENT)
}

/// `GET /assets/{path}`: a file of the folder, e.g. `app.css` or `ui/main.js`. A path that
/// does not decode to UTF-8 names no file: the same JSON 404.
async fn file(path: Result<Path<String>, PathRejection>) -> Response {
    match path {
        Ok(Path(path)) => serve(&path),
        Err(_) => not_found(),
    }
}

/// The response for the embedded file at `path`, or a JSON 404.
fn serve(path: &str) -> Response {
    match lookup(path) {
        Some(file) => respond(file),
        None => not_found(),
    }
}

fn not_found() -> Response {
    ApiError::new(ErrorCode::NotFound, "no such asset").into_response()
}

/// The embedded file at `path` (segments separated by `/`). Nothing else matches: no
/// folder, no empty, `.` or `..` segment, no backslash.
fn lookup(path: &str) -> Option<&'static File<'static>> {
    let mut dir = &ASSETS;
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\\') {
            return None;
        }
        // Compared as strings: `Path` equality would skip `.` and repeated separators.
        let entry = dir
            .entries()
            .iter()
            .find(|entry| entry.path().file_name().and_then(|n| n.to_str()) == Some(segment))?;
        match (entry, segments.peek()) {
            (DirEntry::File(file), None) => return Some(file),
            (DirEntry::Dir(next), Some(_)) => dir = next,
            _ => return None,
        }
    }
    None
}

fn content_type(file: &File<'_>) -> &'static str {
    let extension = file.path().extension().and_then(|e| e.to_str());
    CONTENT_TYPES
        .iter()
        .find(|(ext, _)| Some(*ext) == extension)
        .map_or("application/octet-stream", |&(_, content_type)| {
            content_type
        })
}

fn respond(file: &'static File<'static>) -> Response {
    let mut response = file.contents().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(file)),
    );
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

#[cfg(test)]
mod tests {
    use axum::{
        body::{Body, to_bytes},
        http::{Request, StatusCode},
    };
    use tower::ServiceExt as _;

    use super::*;

    /// Status, content type and body of `GET uri` through the asset routes.
    async fn get(uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let request = Request::get(uri).body(Body::empty()).expect("a request");
        let response = routes::<()>().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let body = to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, content_type, body.to_vec())
    }

    #[tokio::test]
    async fn serves_each_file_with_its_type_and_headers() {
        let cases = [
            ("/", "text/html; charset=utf-8", "index.html"),
            ("/herald.js", "text/javascript; charset=utf-8", "herald.js"),
            (
                "/assets/herald.js",
                "text/javascript; charset=utf-8",
                "herald.js",
            ),
            ("/assets/app.css", "text/css; charset=utf-8", "app.css"),
            (
                "/assets/ui/main.js",
                "text/javascript; charset=utf-8",
                "ui/main.js",
            ),
            (
                "/assets/ui/views/todos.js",
                "text/javascript; charset=utf-8",
                "ui/views/todos.js",
            ),
        ];
        for (uri, content_type, path) in cases {
            let request = Request::get(uri).body(Body::empty()).expect("a request");
            let response = routes::<()>().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{uri}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{uri}");
            let csp = headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ASCII");
            assert!(csp.contains("script-src 'self'"), "{uri}: {csp}");
            let body = to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("a body");
            let expected = ASSETS.get_file(path).expect("embedded").contents();
            assert_eq!(&body[..], expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn the_page_loads_the_entry_module_and_the_style() {
        let (_, _, page) = get("/").await;
        let page = String::from_utf8(page).expect("UTF-8");
        for src in ["/assets/ui/main.js", "/assets/app.css"] {
            assert!(page.contains(src), "index.html loads {src}");
            assert_eq!(get(src).await.0, StatusCode::OK, "{src}");
        }
    }

    #[tokio::test]
    async fn unknown_paths_folders_and_traversal_are_json_404s() {
        let uris = [
            "/assets/nope.js",
            "/assets/app.js",
            "/assets/ui",
            "/assets/ui/",
            "/assets/ui/views",
            "/assets/ui//main.js",
            "/assets/./app.css",
            "/assets/ui/./main.js",
            "/assets/ui/../app.css",
            "/assets/ui/%2e%2e/app.css",
            "/assets/%2e%2e/src/lib.rs",
            "/assets/..%2fCargo.toml",
            "/assets/..%5cCargo.toml",
            "/assets/ui%5cmain.js",
            "/assets/%2fetc%2fpasswd",
            "/assets/app.css/",
            "/assets/app.css%00",
            // Not UTF-8 once decoded: an overlong `..` and a lone byte.
            "/assets/%c0%ae%c0%ae/Cargo.toml",
            "/assets/%ff",
        ];
        for uri in uris {
            let (status, content_type, body) = get(uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(content_type.as_deref(), Some("application/json"), "{uri}");
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(json["error"], "not_found", "{uri}: {json}");
        }
    }

    #[test]
    fn lookup_matches_exact_segments_only() {
        assert!(lookup("ui/main.js").is_some());
        for path in [
            "",
            "/",
            "ui",
            "ui/",
            "/ui/main.js",
            "ui//main.js",
            "ui/./main.js",
        ] {
            assert!(lookup(path).is_none(), "{path:?}");
        }
    }
}
