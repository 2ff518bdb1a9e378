//! What the app's handlers take from a request beside its caller: a JSON body, and the ids
//! of its path.

use axum::{
    extract::{FromRef, FromRequest, FromRequestParts, RawPathParams, Request},
    http::{header, request::Parts},
};
use herald_app::model;
use serde::de::DeserializeOwned;

use super::MAX_JSON_BODY;
use crate::{
    error::{ApiError, ErrorCode},
    state::Bodies,
};

/// A JSON body: `application/json`, at most [`MAX_JSON_BODY`] bytes, no unknown fields,
/// arriving within `--body-timeout` (408 otherwise).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    Bodies: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bodies::from_ref(state)
            .read_within(axum::body::to_bytes(request.into_body(), MAX_JSON_BODY))
            .await?
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body is larger than {MAX_JSON_BODY} bytes"),
                )
            })?;
        // serde would read a struct from a JSON array too; every body here is an object.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::bad_request("the JSON body must be an object"));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }
}

/// The path parameter `key`, which must be an id (a UUID): 400 otherwise, naming `what`.
pub(super) async fn path_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    key: &str,
    what: &str,
) -> Result<String, ApiError> {
    // Read in place: no map of the path's parameters is built for each request.
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let value = params
        .iter()
        .find_map(|(name, value)| (name == key).then_some(value))
        .unwrap_or("");
    Ok(model::id(what, value)?)
}

/// The `{ws}` of a workspace path.
pub(super) struct Ws(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Ws {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "ws", "workspace id").await.map(Self)
    }
}

/// The `{id}` of a resource path.
pub(super) struct ItemId(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for ItemId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "id", "id").await.map(Self)
    }
}
