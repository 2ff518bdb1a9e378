//! The Mercure endpoint, `/.well-known/mercure`: `POST` publishes an update, `GET`
//! subscribes to topic selectors and streams `text/event-stream`.

use std::{convert::Infallible, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream::BoxStream};
use herald_hub::{PublishError, SubscribeError, SubscribeRequest, Update};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;

use crate::{
    auth,
    credentials::{self, TokenSource},
    error::{ApiError, ErrorCode},
    limits::ClientAddr,
    state::ServerState,
};

/// The path of the hub.
pub const PATH: &str = "/.well-known/mercure";

/// Mercure's discovery header, on every response.
pub const LINK: &str = "</.well-known/mercure>; rel=\"mercure\"";

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
    let publisher = authorize_publish(&state, &headers, uri.query())?;
    let body = state
        .bodies
        .read_within(read_body(body, state.bodies.max_body))
        .await??;
    let id = publish_form(&state, &publisher, &body, started).await?;
    Ok(([(header::CONTENT_TYPE, PUBLISHED_CONTENT_TYPE)], id).into_response())
}

/// The content type of a publish's answer, the update's id.
pub const PUBLISHED_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What a publisher may do, checked before its body is read.
pub struct Publisher {
    claims: Arc<auth::Claims>,
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
    query: Option<&str>,
) -> Result<Publisher, ApiError> {
    let query_token = query_pairs(query)
        .find(|(key, _)| key == "authorization")
        .map(|(_, value)| value.into_owned());
    let (token, source) =
        credentials::mercure_token(headers, query_token.as_deref())?.ok_or_else(|| {
            ApiError::unauthorized("publishing requires a JWT with a mercure.publish claim")
        })?;
    let claims = state.tokens.publisher().verify(token)?;
    if source == TokenSource::Cookie {
        state.origins.check_cookie_origin(headers)?;
    }
    if claims
        .mercure
        .as_ref()
        .and_then(|m| m.publish.as_ref())
        .is_none()
    {
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
    let key = match &claims.sub {
        Some(sub) => (true, sub.as_str()),
        None => (false, token),
    };
    state.rates.publishes.take(&key).map_err(|limited| {
        state.metrics.rate_limited("publish");
        ApiError::rate_limited("too many publishes by this publisher", limited)
    })?;
    Ok(Publisher { claims })
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
    let allowed = publisher
        .claims
        .mercure
        .as_ref()
        .and_then(|m| m.publish.as_deref())
        .unwrap_or_default();
    for topic in &update.topics {
        if herald_hub::is_reserved(topic) {
            return Err(reserved(topic));
        }
        if !state.tokens.may_publish(allowed, topic) {
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

/// `GET /.well-known/mercure?topic=…`: a stream of the updates matching the selectors.
///
/// Plain HTTP/1 subscriptions usually take the lighter path in `connection`; this handler
/// serves the rest (HTTP/2, cross-origin requests that need CORS headers) with the same
/// [`open_stream`].
pub async fn subscribe(
    State(state): State<ServerState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let stream = open_stream(&state, peer.ip(), &headers, &uri).await?;
    if crate::routes::poll::wants_poll(&headers) {
        return Ok(crate::routes::poll::answer(
            stream.frames,
            crate::routes::poll::Cursor {
                resumed: stream.resumed,
                resume_id: stream.resume_id,
                passed: stream.passed,
            },
            state.streams.poll_timeout,
            state.bodies.max_body,
        )
        .await);
    }
    let mut response = Response::builder().status(StatusCode::OK);
    for (name, value) in stream.headers {
        response = response.header(name, value);
    }
    let body = stream.frames.map(Ok::<_, Infallible>);
    response
        .body(Body::from_stream(body))
        .map_err(|error| ApiError::new(ErrorCode::Internal, error.to_string()))
}

/// An admitted subscription, ready to be written to a client.
pub struct OpenStream {
    /// The response headers besides the discovery `Link` header.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The SSE bytes. Holds the stream's connection-limit permit, and ends when the hub
    /// ends the subscription or the subscriber's token expires.
    pub frames: BoxStream<'static, Bytes>,
    /// Where a client resumes if no event with an id reaches it: the id it resumed from,
    /// else the log's newest when it subscribed.
    pub resume_id: Option<String>,
    /// Whether the client resumed from an id (`Last-Event-ID` or the query).
    pub resumed: bool,
    /// For a long-poll: the newest record the replay passed.
    pub passed: Option<herald_hub::Passed>,
}

/// Authorizes a subscribe request, admits it against the stream limits and registers it
/// with the hub. Has no effect when it fails.
///
/// # Errors
///
/// 400 for bad selectors or ids, 401 for missing or bad tokens, 429/503 for limits, 503
/// when history cannot be read.
pub async fn open_stream(
    state: &ServerState,
    peer: IpAddr,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<OpenStream, ApiError> {
    let mut topics = Vec::new();
    let mut query_last_id = None;
    let mut query_token = None;
    for (key, value) in query_pairs(uri.query()) {
        match &*key {
            "topic" => topics.push(value.into_owned()),
            "lastEventID" => query_last_id = Some(value.into_owned()),
            "authorization" => query_token = Some(value.into_owned()),
            _ => {} // Cache busters and the like.
        }
    }
    let claims = match credentials::mercure_token(headers, query_token.as_deref())? {
        Some((token, _)) => Some(state.tokens.subscriber().verify(token)?),
        None if state.tokens.anonymous() => None,
        None => {
            return Err(ApiError::unauthorized(
                "subscribing requires a JWT (this hub does not allow anonymous subscribers)",
            ));
        }
    };
    if let Some(topic) = topics.iter().find(|t| herald_hub::is_reserved(t)) {
        return Err(reserved(topic));
    }
    let last_event_id = state.streams.last_event_id(headers, query_last_id)?;
    let resume_from = last_event_id.clone();
    let resumed = resume_from.is_some();

    let permit = state.streams.admit(peer)?;

    // A token's authority ends at its expiry, on open streams too: the stream closes then,
    // and the client must come back with a fresh token.
    let expires_in = claims
        .as_ref()
        .and_then(|c| c.exp)
        .map(|exp| Duration::from_secs(exp.saturating_sub(auth::unix_now())));
    let request = SubscribeRequest {
        topics,
        claims: claims
            .as_ref()
            .and_then(|c| c.mercure.as_ref())
            .and_then(|m| m.subscribe.clone()),
        last_event_id,
        after: None,
        max_selectors: None,
        replay_filter: None,
        // A client's selectors never reach the app's topics, whatever its claims.
        reserved: false,
    };
    let mut subscription = state
        .hub
        .subscribe(request)
        .await
        .map_err(|error| match error {
            SubscribeError::Unavailable(error) => ApiError::unavailable(error.to_string()),
            full @ SubscribeError::SelectorsFull => ApiError::unavailable(full.to_string()),
            invalid => ApiError::bad_request(invalid.to_string()),
        })?;

    let mut response_headers = vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-transform"),
        ),
        (
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ),
        // The same URL answers a long-poll to `Accept: application/json`.
        (header::VARY, HeaderValue::from_static("accept")),
    ];
    if let Some(id) = subscription
        .head_id()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        response_headers.push((HeaderName::from_static("last-event-id"), id));
    }
    let resume_id = resume_from.or_else(|| subscription.head_id().map(str::to_owned));
    let passed = crate::routes::poll::wants_poll(headers).then(|| subscription.passed());
    let expiry = match expires_in {
        Some(left) => tokio::time::sleep(left).boxed(),
        None => futures::future::pending().boxed(),
    };
    let frames = subscription
        .take_until(expiry)
        .map(move |frames| {
            // The permit lives as long as the stream: dropping it frees the slot.
            let _ = &permit;
            frames
        })
        .boxed();
    Ok(OpenStream {
        headers: response_headers,
        frames,
        resume_id,
        resumed,
        passed,
    })
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
