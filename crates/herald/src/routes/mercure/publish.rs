//! `POST /.well-known/mercure`: authorize a publisher, parse its form, publish the update.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use herald_hub::{PublishError, Update};
use tokio::time::Instant;

use super::{query_pairs, read_body, reserved};
use crate::{
    auth,
    credentials::{self, TokenSource},
    error::{ApiError, ErrorCode},
    state::ServerState,
};

/// `POST /.well-known/mercure`: store an update, then fan it out. Answers its id.
///
/// Plain HTTP/1 publishes usually take the lighter path in `connection`, which runs the same
/// [`authorize_publish`] and [`publish_form`].
pub async fn publish(
    State(state): State<ServerState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let published = async {
        let publisher = authorize_publish(&state, &headers, &uri)?;
        let body = state
            .bodies
            .read_within(read_body(body, state.bodies.max_body))
            .await??;
        publish_form(&state, &publisher, &body, started).await
    };
    let id = published
        .await
        .map_err(|error| super::challenge(&state, auth::request_host(&headers, &uri), error))?;
    Ok(([(header::CONTENT_TYPE, PUBLISHED_CONTENT_TYPE)], id).into_response())
}

/// The content type of a publish's answer, the update's id.
pub const PUBLISHED_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What a publisher may do, checked before its body is read.
pub struct Publisher {
    grants: Arc<auth::Grants>,
}

/// Checks a publish request's token and content type, before its body is read.
///
/// # Errors
///
/// 401 without a valid token, 403 without a `mercure.publish` claim (or a cookie token
/// from a foreign origin), 415 for a body that is not a form, 429 when the publisher (the
/// token's subject, else the token) published more than `--publish-rate` allows.
pub fn authorize_publish(
    state: &ServerState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<Publisher, ApiError> {
    let query_token = query_pairs(uri.query())
        .find(|(key, _)| key == "authorization")
        .map(|(_, value)| value.into_owned());
    let (token, source) =
        credentials::mercure_token(headers, query_token.as_deref())?.ok_or_else(|| {
            ApiError::unauthorized("publishing requires a JWT with a mercure.publish claim")
        })?;
    let audience = state.tokens.audience(auth::request_host(headers, uri));
    let grants = state.tokens.publisher().verify_for(token, audience)?;
    if source == TokenSource::Cookie {
        state.origins.check_cookie_origin(headers)?;
    }
    if grants.publish.is_none() {
        return Err(ApiError::forbidden("the JWT has no mercure.publish claim"));
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    // `--publish-rate`, per subject (or per token without one): one hash lookup, and nothing
    // at all when it is off. The two kinds of key are told apart, so a token cannot pass for
    // a subject.
    let key = match &grants.subject {
        Some(sub) => (true, sub.as_str()),
        None => (false, token),
    };
    state.rates.publishes.take(&key).map_err(|limited| {
        state.metrics.rate_limited("publish");
        ApiError::rate_limited("too many publishes by this publisher", limited)
    })?;
    Ok(Publisher { grants })
}

/// Parses a publish form, checks its topics against the publisher's claim, and publishes
/// it. Answers the update's id once it is stored. `started` is when the request arrived.
///
/// # Errors
///
/// 400 for a malformed form or update, 403 for a topic the token may not publish to, 503
/// when the log cannot store it (nothing was published).
pub async fn publish_form(
    state: &ServerState,
    publisher: &Publisher,
    body: &[u8],
    started: Instant,
) -> Result<String, ApiError> {
    let update = parse_update(body)?;
    for topic in &update.topics {
        if herald_hub::is_reserved(topic) {
            return Err(reserved(topic));
        }
        if !state.tokens.may_publish(&publisher.grants, topic) {
            return Err(ApiError::forbidden(format!(
                "the JWT does not allow publishing to topic {topic:?}"
            )));
        }
    }

    let published = state
        .hub
        .publish(update)
        .await
        .map_err(|error| match error {
            PublishError::Invalid(invalid) => ApiError::bad_request(invalid.to_string()),
            PublishError::Unavailable(why) => ApiError::unavailable(why),
        })?;
    state
        .metrics
        .publish_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(published.id.to_string())
}

/// Parses Mercure's publish form: `topic` (repeated), `data`, `private`, `id`, `type`,
/// `retry`. Anything else, or a single-valued field given twice, is an error.
fn parse_update(body: &[u8]) -> Result<Update, ApiError> {
    fn once(slot: &mut Option<String>, key: &str, value: String) -> Result<(), ApiError> {
        if slot.replace(value).is_some() {
            return Err(ApiError::bad_request(format!(
                "the field {key:?} is given more than once"
            )));
        }
        Ok(())
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::bad_request("the body is not valid UTF-8"));
    }
    let mut update = Update::default();
    let (mut data, mut private, mut retry) = (None, None, None);
    for (key, value) in form_urlencoded::parse(body) {
        let value = value.into_owned();
        match &*key {
            "topic" => update.topics.push(value),
            "data" => once(&mut data, "data", value)?,
            "private" => once(&mut private, "private", value)?,
            "id" => once(&mut update.id, "id", value)?,
            "type" => once(&mut update.event_type, "type", value)?,
            "retry" => once(&mut retry, "retry", value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?}; expected topic, data, private, id, type or retry"
                )));
            }
        }
    }
    update.data = data.unwrap_or_default();
    update.private = match private.as_deref() {
        None => false,
        // Mercure: the field's presence makes the update private.
        Some("" | "on" | "true" | "1") => true,
        Some("off" | "false" | "0") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "private must be on/true/1 or off/false/0, not {other:?}"
            )));
        }
    };
    update.retry = match retry {
        None => None,
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Some(
            text.parse()
                .map_err(|_| ApiError::bad_request("retry is too large"))?,
        ),
        Some(text) => {
            return Err(ApiError::bad_request(format!(
                "retry must be a number of milliseconds, not {text:?}"
            )));
        }
    };
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_form_table() {
        let ok = |body: &str| parse_update(body.as_bytes()).unwrap();
        let err = |body: &str| parse_update(body.as_bytes()).unwrap_err().message;

        let u = ok("topic=a&topic=b&data=x%0Ay&id=1&type=t&retry=10&private=on");
        assert_eq!(u.topics, vec!["a", "b"]);
        assert_eq!(u.data, "x\ny");
        assert_eq!(
            (u.id.as_deref(), u.event_type.as_deref(), u.retry, u.private),
            (Some("1"), Some("t"), Some(10), true)
        );
        assert!(!ok("topic=a").private);
        assert!(ok("topic=a&private=").private);
        assert!(!ok("topic=a&private=false").private);

        assert_eq!(
            err("topic=a&data=1&data=2"),
            "the field \"data\" is given more than once"
        );
        assert_eq!(
            err("topic=a&colour=red"),
            "unknown field \"colour\"; expected topic, data, private, id, type or retry"
        );
        assert_eq!(
            err("topic=a&retry=soon"),
            "retry must be a number of milliseconds, not \"soon\""
        );
        assert_eq!(
            err("topic=a&retry=-1"),
            "retry must be a number of milliseconds, not \"-1\""
        );
        assert_eq!(
            err("topic=a&private=maybe"),
            "private must be on/true/1 or off/false/0, not \"maybe\""
        );
    }
}
