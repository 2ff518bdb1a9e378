//! The Mercure endpoint, `/.well-known/mercure`: `POST` publishes an update (`publish`),
//! `GET` subscribes to topic selectors and streams `text/event-stream` (`subscribe`);
//! `GET /.well-known/mercure/subscriptions…` lists the active subscriptions
//! (`subscriptions`).

use axum::body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{
    error::{ApiError, ErrorCode},
    state::ServerState,
};

pub mod metadata;
mod publish;
mod subscribe;
mod subscriptions;

pub use publish::{PUBLISHED_CONTENT_TYPE, Publisher, authorize_publish, publish, publish_form};
pub use subscribe::{OpenStream, open_stream, open_stream_with, subscribe, subscribe_query};
pub use subscriptions::subscriptions;

/// The path of the hub.
pub const PATH: &str = "/.well-known/mercure";

/// Mercure's discovery header, on every response.
pub const LINK: &str = "</.well-known/mercure>; rel=\"mercure\"";

/// `error` as the Mercure endpoints answer it: with the Bearer challenge of a request made
/// to `host` (see [`ApiError::bearer_challenge`]), pointing at the hub's protected-resource
/// metadata.
pub fn challenge(state: &ServerState, host: Option<&str>, error: ApiError) -> ApiError {
    let metadata = state.tokens.metadata_url(host);
    error.bearer_challenge(metadata.as_deref())
}

/// The refusal of a reserved topic or selector in a Mercure request.
fn reserved(topic: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{topic:?} is reserved: topics beginning with {:?} belong to Herald's app and are not \
         reachable through the Mercure API",
        herald_hub::RESERVED_PREFIX
    ))
}

/// Reads at most `limit` bytes of body.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )),
        Err(error) => Err(ApiError::bad_request(format!(
            "the body could not be read: {error}"
        ))),
    }
}

fn query_pairs(query: Option<&str>) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
}
