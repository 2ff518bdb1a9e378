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

use super::{read_body, reserved};
use crate::{
    auth, credentials,
    error::{ApiError, ErrorCode},
    limits::ClientAddr,
    state::ServerState,
};

/// `GET /.well-known/mercure?topic=…` (or `match=…`): a stream of the updates matching the
/// selectors.
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
    respond(&state, &headers, stream).await
}

/// `QUERY /.well-known/mercure`: a subscription whose parameters may also come in an
/// `application/x-www-form-urlencoded` body, bounded and read within the time limits of
/// a publish's body; the parameters are those of the query string and the body together.
/// Any other method the route does not know gets 405.
///
/// # Errors
///
/// 405 for a method other than `QUERY`, 415 for a body that is not a form, 413 for one
/// over `--max-body`; then as [`open_stream`].
pub async fn subscribe_query(
    State(state): State<ServerState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    method: axum::http::Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
) -> Result<Response, ApiError> {
    if method.as_str() != "QUERY" {
        return Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this route does not accept that method",
        ));
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(FORM));
    if !is_form {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "the body of a QUERY subscription must be application/x-www-form-urlencoded",
        ));
    }
    let form = state
        .bodies
        .read_within(read_body(body, state.bodies.max_body))
        .await??;
    let stream = open_stream_with(&state, peer.ip(), &headers, &uri, Some(&form))
        .await
        .map_err(|error| super::challenge(&state, auth::request_host(&headers, &uri), error))?;
    respond(&state, &headers, stream).await
}

/// Answers an admitted subscription: a long-poll when the client asked for one, else the
/// event stream.
async fn respond(
    state: &ServerState,
    headers: &HeaderMap,
    stream: OpenStream,
) -> Result<Response, ApiError> {
    if crate::routes::poll::wants_poll(headers) {
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
/// 400 for bad selectors or ids (and, with subscription events on, for a matcher too long
/// for its event's topic), 401 for missing or bad tokens, 429/503 for limits (429 also when
/// the client's address announced too many subscriptions lately), 503 when history cannot
/// be read.
pub async fn open_stream(
    state: &ServerState,
    peer: IpAddr,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Result<OpenStream, ApiError> {
    open_stream_with(state, peer, headers, uri, None).await
}

/// [`open_stream`] with the parameters of the query string and, for a `QUERY` request, of
/// its form body: the union of both.
///
/// # Errors
///
/// As [`open_stream`].
pub async fn open_stream_with(
    state: &ServerState,
    peer: IpAddr,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    form: Option<&[u8]>,
) -> Result<OpenStream, ApiError> {
    let SubscribeParams {
        topics,
        last_event_id: query_last_id,
        token: query_token,
        matched,
    } = SubscribeParams::parse(uri.query(), form)?;
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
    let requested_id = last_event_id.clone();
    let resume_from = last_event_id.clone();
    let resumed = resume_from.is_some();

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
    if let Some((_, entries)) = &announced {
        check_event_topics(state, entries)?;
    }

    let permit = state.streams.admit(peer)?;

    // A token's authority ends at its expiry, on open streams too: the stream closes then,
    // and the client must come back with a fresh token.
    let expires_in = grants
        .as_ref()
        .and_then(|g| g.expires)
        .map(|exp| Duration::from_secs(exp.saturating_sub(auth::unix_now())));
    // Announcing costs the log one event per matcher at the start and one at the end: the
    // client's address pays for them, so a reconnection loop cannot flush the log.
    if let Some((_, entries)) = &announced {
        let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        state
            .rates
            .announcements
            .take_n(&crate::ratelimit::client_key(peer), count)
            .map_err(|limited| {
                state.metrics.rate_limited("subscription_events");
                ApiError::rate_limited(
                    "too many subscriptions announced from this address lately",
                    limited,
                )
            })?;
    }
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
        // The same parameters may come in a `QUERY` request's form body.
        (
            HeaderName::from_static("accept-query"),
            HeaderValue::from_static(FORM),
        ),
    ];
    // A 1.0 client learns whether its last event id was found: the id when it was, else
    // `earliest`. A 0.x client (only `topic=`) learns the log's head, as it always did.
    if let Some(requested) = &requested_id {
        let answer = if subscription.is_reset() {
            "earliest"
        } else {
            requested
        };
        if let Ok(value) = HeaderValue::from_str(answer) {
            response_headers.push((HeaderName::from_static("mercure-last-event-id"), value));
        }
    }
    if !matched
        && let Some(id) = subscription
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

/// Refuses a subscription whose events could not be published: the topic of a matcher's
/// event (the matcher percent-encoded, up to three times its length) must fit the hub's
/// topic limit.
///
/// # Errors
///
/// 400, naming the matcher and the limit.
fn check_event_topics(state: &ServerState, entries: &[presence::Entry]) -> Result<(), ApiError> {
    let limit = state.hub.config().limits.max_topic_len;
    match entries.iter().find(|entry| entry.topic.len() > limit) {
        Some(entry) => Err(ApiError::bad_request(format!(
            "the matcher {:?} is too long for its subscription events: their topic would be \
             {} bytes, over the limit of {limit} bytes",
            entry.matcher,
            entry.topic.len()
        ))),
        None => Ok(()),
    }
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

/// The content type of a `QUERY` subscription's body, and of `Accept-Query`.
const FORM: &str = "application/x-www-form-urlencoded";

/// What a subscribe request asks for, from its query string and form body together.
#[derive(Debug, Default)]
struct SubscribeParams {
    /// `topic=` (0.x selectors), `match=` and `match_exact=` (exact), `match_urlpattern=`.
    topics: Vec<Matcher>,
    /// `last_event_id=`, else the 0.x `lastEventID=`.
    last_event_id: Option<String>,
    /// The 0.x `authorization=` token.
    token: Option<String>,
    /// Whether any `match*` parameter was given: a 1.0 client.
    matched: bool,
}

impl SubscribeParams {
    /// Reads the parameters of `query` then of `form`.
    ///
    /// # Errors
    ///
    /// 400 for a parameter whose name begins with `match` (in any case) but is none of the
    /// three, and for a selector or last event id that is not UTF-8 or holds a control
    /// character.
    fn parse(query: Option<&str>, form: Option<&[u8]>) -> Result<Self, ApiError> {
        let mut params = Self::default();
        let (mut last_event_id, mut last_event_id_0x) = (None, None);
        for source in [query.map(str::as_bytes), form].into_iter().flatten() {
            for (raw_key, raw_value) in form_pairs(source) {
                let key = decode(raw_key).unwrap_or_default();
                let kind = match &*key {
                    "topic" => Some(MatchKind::Template),
                    "match" | "match_exact" => Some(MatchKind::Exact),
                    "match_urlpattern" => Some(MatchKind::UrlPattern),
                    _ => None,
                };
                let wanted = kind.is_some() || key == "last_event_id" || key == "lastEventID";
                if !wanted {
                    if raw_key.len() >= 5 && raw_key[..5].eq_ignore_ascii_case(b"match") {
                        return Err(ApiError::bad_request(format!(
                            "unknown parameter {key:?}; expected match, match_exact or \
                             match_urlpattern"
                        )));
                    }
                    if key == "authorization" {
                        params.token = Some(decode(raw_value).unwrap_or_default());
                    }
                    continue; // Cache busters and the like.
                }
                let value = decode(raw_value)
                    .filter(|value| !value.chars().any(char::is_control))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "the value of {key:?} is not UTF-8 or holds a control character"
                        ))
                    })?;
                match kind {
                    Some(kind) => {
                        params.matched |= kind != MatchKind::Template;
                        params.topics.push(Matcher {
                            kind,
                            source: value,
                        });
                    }
                    None if key == "last_event_id" => last_event_id = Some(value),
                    None => last_event_id_0x = Some(value),
                }
            }
        }
        params.last_event_id = last_event_id.or(last_event_id_0x);
        Ok(params)
    }
}

/// The raw `name=value` pairs of a form, undecoded.
fn form_pairs(form: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    form.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        })
}

/// A form name or value decoded (`+` is a space, `%XX` a byte), or `None` when the bytes
/// are not UTF-8. Unlike `form_urlencoded`, never replaces bad bytes.
fn decode(raw: &[u8]) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut bytes = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        match raw[at] {
            b'+' => bytes.push(b' '),
            b'%' if at + 2 < raw.len() => match (hex(raw[at + 1]), hex(raw[at + 2])) {
                (Some(high), Some(low)) => {
                    bytes.push((high * 16 + low) as u8);
                    at += 2;
                }
                _ => bytes.push(b'%'),
            },
            other => bytes.push(other),
        }
        at += 1;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_parameters() {
        let parse = |q: &str| SubscribeParams::parse(Some(q), None);
        let p = parse("topic=a&match=b&match_exact=c&match_urlpattern=%2Fd%2F*&x=1").unwrap();
        let kinds: Vec<_> = p
            .topics
            .iter()
            .map(|m| (m.kind, m.source.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (MatchKind::Template, "a"),
                (MatchKind::Exact, "b"),
                (MatchKind::Exact, "c"),
                (MatchKind::UrlPattern, "/d/*")
            ]
        );
        assert!(p.matched);
        assert!(!parse("topic=a").unwrap().matched);
        for bad in [
            "matchx=a",
            "MATCH=a",
            "Match_Exact=a",
            "match_regex=a",
            "topic=a%00",
            "match=a%0Ab",
            "match=%C2%85",
            "match=%7F",
            "match=%FF",
            "lastEventID=%1B",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("lastEventID=a&last_event_id=b")
                .unwrap()
                .last_event_id
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            parse("lastEventID=a").unwrap().last_event_id.as_deref(),
            Some("a")
        );
        let both = SubscribeParams::parse(Some("match=a"), Some(b"match=b&topic=c+d%25")).unwrap();
        let sources: Vec<_> = both.topics.iter().map(|m| m.source.as_str()).collect();
        assert_eq!(sources, ["a", "b", "c d%"]);
        assert_eq!(decode(b"%4").as_deref(), Some("%4"));
        assert_eq!(decode(b"a%41").as_deref(), Some("aA"));
    }
}
