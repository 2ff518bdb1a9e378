//! `GET /.well-known/mercure`: authorize a subscriber, admit it, and stream its updates.

use std::{convert::Infallible, net::IpAddr, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream::BoxStream};
use herald_hub::{MatchKind, Matcher, SubscribeError, SubscribeRequest, presence};

use super::{query_pairs, reserved};
use crate::{
    auth, credentials,
    error::{ApiError, ErrorCode},
    limits::ClientAddr,
    state::ServerState,
};

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
    let stream = open_stream(&state, peer.ip(), &headers, &uri)
        .await
        .map_err(|error| super::challenge(&state, auth::request_host(&headers, &uri), error))?;
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
            "topic" => topics.push(Matcher::template(value)),
            "lastEventID" => query_last_id = Some(value.into_owned()),
            "authorization" => query_token = Some(value.into_owned()),
            _ => {} // Cache busters and the like.
        }
    }
    let grants = match credentials::mercure_token(headers, query_token.as_deref())? {
        Some((token, _)) => Some(state.tokens.subscriber_grants(token, headers, uri)?),
        None if state.tokens.anonymous() => None,
        None => {
            return Err(ApiError::unauthorized(
                "subscribing requires a JWT (this hub does not allow anonymous subscribers)",
            ));
        }
    };
    if let Some(topic) = topics.iter().find(|t| herald_hub::is_reserved(&t.source)) {
        return Err(reserved(&topic.source));
    }
    let last_event_id = state.streams.last_event_id(headers, query_last_id)?;
    let resume_from = last_event_id.clone();
    let resumed = resume_from.is_some();

    let permit = state.streams.admit(peer)?;

    // A token's authority ends at its expiry, on open streams too: the stream closes then,
    // and the client must come back with a fresh token.
    let expires_in = grants
        .as_ref()
        .and_then(|g| g.expires)
        .map(|exp| Duration::from_secs(exp.saturating_sub(auth::unix_now())));
    let announced = state
        .subscriptions
        .as_ref()
        .filter(|_| !crate::routes::poll::wants_poll(headers))
        .map(|registry| {
            let payloads: Vec<_> = topics
                .iter()
                .map(|topic| {
                    grants
                        .as_ref()
                        .and_then(|g| state.tokens.payload_for(g, topic))
                })
                .collect();
            (registry.clone(), entries(&topics, payloads))
        });
    let request = SubscribeRequest {
        topics,
        claims: grants.as_ref().and_then(|g| g.subscribe.clone()),
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
    // Registered once the hub has admitted the subscription, and announced from there;
    // the guard lives as long as the stream, like the permit.
    let presence = match announced {
        Some((registry, entries)) => Some(registry.join(entries).await),
        None => None,
    };
    let frames = subscription
        .take_until(expiry)
        .map(move |frames| {
            // The permit lives as long as the stream: dropping it frees the slot.
            let _ = (&permit, &presence);
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

/// The registry entries of one connection's matchers, each with its payload, under one new
/// subscriber id. A 0.x selector is listed as `exact` when it has no `{`, else as
/// `template`.
fn entries(matchers: &[Matcher], payloads: Vec<Option<serde_json::Value>>) -> Vec<presence::Entry> {
    let subscriber = presence::subscriber_id();
    matchers
        .iter()
        .zip(payloads)
        .map(|(matcher, payload)| {
            let kind = match matcher.kind {
                MatchKind::Template if !matcher.source.contains('{') => MatchKind::Exact,
                kind => kind,
            };
            presence::Entry::mercure(&subscriber, kind.name(), &matcher.source, payload)
        })
        .collect()
}
