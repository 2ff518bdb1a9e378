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
    let hub_url = &state.hub.config().base_url;
    for topic in &update.topics {
        if herald_hub::is_reserved(topic) {
            return Err(reserved(topic));
        }
        if in_hub_namespace(hub_url, topic) {
            return Err(ApiError::forbidden(format!(
                "{topic:?} is the hub's own: no update may be published under {}",
                super::PATH
            )));
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
            PublishError::Invalid(invalid) if invalid.is_over_limit() => {
                ApiError::new(ErrorCode::PayloadTooLarge, invalid.to_string())
            }
            PublishError::Invalid(invalid) => ApiError::bad_request(invalid.to_string()),
            PublishError::Unavailable(why) => ApiError::unavailable(why),
        })?;
    state
        .metrics
        .publish_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(published.id.to_string())
}

/// Whether `topic`, resolved against the hub's URL, has the hub's path
/// (`/.well-known/mercure`) or a path under it. A topic that is not a URI reference has no
/// path, so it is not in the namespace; nor is an empty topic, which the hub refuses as
/// such.
fn in_hub_namespace(hub_url: &url::Url, topic: &str) -> bool {
    !topic.is_empty()
        && hub_url.join(topic).is_ok_and(|url| {
            url.path()
                .strip_prefix(super::PATH)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Parses Mercure's publish form: `topic` (repeated), `data`, `private`, `id`, `type`,
/// `retry`; other fields are ignored. A single-valued field given twice is an error, and
/// so is what an event cannot carry: a topic with a control character or equal to `*`, an
/// id beginning with `#`, the event type `mercure`, which the hub keeps for its own events.
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
            _ => {} // Fields of later versions, or of no version: not ours to refuse.
        }
    }
    for topic in &update.topics {
        if topic.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "the topic {topic:?} holds a control character"
            )));
        }
        if topic == "*" {
            return Err(ApiError::bad_request(
                "\"*\" is the wildcard of selectors, not a topic",
            ));
        }
        if has_dot_segment(topic) {
            return Err(ApiError::bad_request(format!(
                "the topic {topic:?} has a \".\" or \"..\" path segment: publish its \
                 normalized form"
            )));
        }
    }
    if update.id.as_deref().is_some_and(|id| id.starts_with('#')) {
        return Err(ApiError::bad_request("an id must not begin with \"#\""));
    }
    if update.event_type.as_deref() == Some("mercure") {
        return Err(ApiError::bad_request(
            "the event type \"mercure\" is the hub's own",
        ));
    }
    update.data = data.unwrap_or_default();
    // Mercure: the field's presence makes the update private, whatever its value.
    update.private = private.is_some();
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

/// Whether `topic`'s path (before any `?` or `#`) has a `.` or `..` segment, percent-encoded
/// or not, with `/` or `\` as separators. URL Patterns match a topic as a URL, which drops
/// such segments, while exact matchers and templates see its text: one topic would read as
/// two, and a grant on one would publish to the other.
fn has_dot_segment(topic: &str) -> bool {
    let path = topic.split(['?', '#']).next().unwrap_or_default();
    path.split(['/', '\\']).any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    })
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
        assert!(ok("topic=a&private=false").private);
        assert!(ok("topic=a&private=off").private);
        assert_eq!(ok("topic=a&colour=red").topics, ["a"]);

        assert_eq!(
            err("topic=a&data=1&data=2"),
            "the field \"data\" is given more than once"
        );
        assert_eq!(
            err("topic=a&retry=soon"),
            "retry must be a number of milliseconds, not \"soon\""
        );
        assert_eq!(
            err("topic=a&retry=-1"),
            "retry must be a number of milliseconds, not \"-1\""
        );
        for bad in [
            "topic=a%00",
            "topic=a%0Ab",
            "topic=a%C2%85",
            "topic=*",
            "topic=a&id=%23x",
            "topic=a&type=mercure",
            "topic=a&retry=1.5",
        ] {
            assert!(parse_update(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_segments() {
        for topic in [
            ".",
            "..",
            "https://e.com/users/42/../../public/x",
            "/.well-known/mercure/subscriptions/x/../../../../y",
            "https://e.com/a/%2E%2e/b",
            "https://e.com/a/.%2E",
            "https://e.com/a\\..\\b",
            "a/./b?x",
        ] {
            assert!(has_dot_segment(topic), "{topic}");
            assert!(parse_update(format!("topic={}", urlencode(topic)).as_bytes()).is_err());
        }
        for topic in [
            "https://e.com/a/.../b",
            "https://e.com/a/.b/c",
            "https://e.com/a?x=/../",
            "https://e.com/a#/../",
            "urn:x:..",
            "book.1",
        ] {
            assert!(!has_dot_segment(topic), "{topic}");
        }
    }

    fn urlencode(text: &str) -> String {
        form_urlencoded::byte_serialize(text.as_bytes()).collect()
    }

    #[test]
    fn the_hub_namespace() {
        let hub = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/exact/a/b",
            "https://hub.example/.well-known/mercure/x",
            "/a/../.well-known/mercure",
        ] {
            assert!(in_hub_namespace(&hub, topic), "{topic}");
        }
        for topic in [
            "/.well-known/mercurex",
            "/.well-known/",
            "/books/1",
            "urn:x:.well-known/mercure",
            "https://[bad",
            "",
        ] {
            assert!(!in_hub_namespace(&hub, topic), "{topic}");
        }
    }
}
