//! `GET /.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]]`: the active
//! subscriptions of the deployment, as JSON-LD, with the cursor to follow them from.
//!
//! The answer holds the id of the hub's newest event (`last_event_id`, also in the `Link`
//! header), taken before the registry is read: a client that subscribes to the subscription
//! events with it as `Last-Event-ID` misses no start or end (it may see some twice).
//! A list holds at most [`MAX_LISTED`](herald_hub::presence::MAX_LISTED) subscriptions;
//! a list cut there says `"truncated": true`.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use herald_hub::presence::{
    Entry, Listing, SUBSCRIPTIONS_PATH, encode_segment, subscription_topic,
};
use serde_json::{Value, json};

use super::query_pairs;
use crate::{credentials, error::ApiError, state::ServerState};

/// The JSON-LD media type of the answers.
const LD_JSON: &str = "application/ld+json";

/// Answers the three shapes of the subscriptions API; 404 when subscriptions are not
/// announced (`--subscription-events` off), for paths of any other shape, and for a
/// subscription that is not active.
///
/// # Errors
///
/// 401 without a valid token, 403 when the token does not grant `subscribe` on the
/// request's path (both with their RFC 6750 challenge), 503 when the registry cannot be
/// read.
pub async fn subscriptions(
    State(state): State<ServerState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let Some(registry) = &state.subscriptions else {
        return Err(not_found());
    };
    let path = uri.path();
    let wanted = Wanted::parse(path).ok_or_else(not_found)?;
    authorize(&state, &headers, &uri).map_err(|error| {
        super::challenge(&state, crate::auth::request_host(&headers, &uri), error)
    })?;

    // The cursor first, then the registry: see the module's documentation.
    let last_event_id = state
        .hub
        .head_id()
        .await
        .map_err(|error| ApiError::unavailable(error.to_string()))?;
    let listing = registry
        .list(&wanted.prefix())
        .await
        .map_err(|error| ApiError::unavailable(error.to_string()))?;

    let body = match &wanted {
        Wanted::One { topic, subscriber } => {
            let Some(entry) = find(&listing, topic, subscriber) else {
                return Err(not_found());
            };
            let mut document = entry.document(true);
            document["last_event_id"] = Value::String(last_event_id.clone());
            document
        }
        Wanted::All | Wanted::Matcher { .. } => collection(path, &last_event_id, &listing),
    };
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(LD_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(link) = HeaderValue::from_str(&link(&last_event_id)) {
        headers.insert(header::LINK, link);
    }
    Ok(response)
}

/// A list's document: at most [`MAX_LISTED`](herald_hub::presence::MAX_LISTED)
/// subscriptions, with `"truncated": true` when more were active.
fn collection(path: &str, last_event_id: &str, listing: &Listing) -> Value {
    let mut document = json!({
        "@context": herald_hub::presence::CONTEXT,
        "id": path,
        "type": "Subscriptions",
        "last_event_id": last_event_id,
        "subscriptions": listing
            .entries
            .iter()
            .map(|entry| entry.document(true))
            .collect::<Vec<_>>(),
    });
    if listing.truncated {
        document["truncated"] = Value::Bool(true);
    }
    document
}

/// The `Link` header to the hub, with the cursor as an RFC 8288 quoted-string: `"` and `\`
/// escaped with a backslash, nothing dropped. An id the header cannot carry (not visible
/// ASCII) is left out: the body still has it.
fn link(last_event_id: &str) -> String {
    let hub = format!("<{}>; rel=\"mercure\"", super::PATH);
    if !last_event_id
        .bytes()
        .all(|b| b == b' ' || b.is_ascii_graphic())
    {
        return hub;
    }
    let mut quoted = String::with_capacity(last_event_id.len() + 2);
    for c in last_event_id.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("{hub}; last-event-id=\"{quoted}\"")
}

/// What a request asks for, from its path.
#[derive(Debug)]
enum Wanted {
    All,
    Matcher { match_type: String, matcher: String },
    One { topic: String, subscriber: String },
}

impl Wanted {
    /// The shape of `path`, its segments percent-decoded exactly once; `None` for any other
    /// path.
    fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix(SUBSCRIPTIONS_PATH)?;
        if rest.is_empty() {
            return Some(Self::All);
        }
        let segments: Vec<String> = rest
            .strip_prefix('/')?
            .split('/')
            .map(decode_segment)
            .collect::<Option<_>>()?;
        match <[String; 3]>::try_from(segments) {
            Ok([match_type, matcher, subscriber]) => Some(Self::One {
                topic: subscription_topic(&match_type, &matcher, &subscriber),
                subscriber,
            }),
            Err(segments) => {
                let [match_type, matcher] = <[String; 2]>::try_from(segments).ok()?;
                Some(Self::Matcher {
                    match_type,
                    matcher,
                })
            }
        }
    }

    /// The topic prefix of the entries it lists.
    fn prefix(&self) -> String {
        match self {
            Self::All => format!("{SUBSCRIPTIONS_PATH}/"),
            Self::Matcher {
                match_type,
                matcher,
            } => format!(
                "{SUBSCRIPTIONS_PATH}/{}/{}/",
                encode_segment(match_type),
                encode_segment(matcher)
            ),
            Self::One { topic, .. } => topic.clone(),
        }
    }
}

fn find<'a>(listing: &'a Listing, topic: &str, subscriber: &str) -> Option<&'a Entry> {
    listing
        .entries
        .iter()
        .find(|entry| entry.topic == topic && entry.subscriber == subscriber)
}

/// Percent-decodes one path segment; `None` when it is empty, has a bad escape (`%` and
/// anything but two hex digits) or is not UTF-8.
fn decode_segment(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return None;
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            // `from_str_radix` alone would take a sign (`%+1`).
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The token must grant `subscribe` on the request's path, in relative form.
fn authorize(state: &ServerState, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let query_token = query_pairs(uri.query())
        .find(|(key, _)| key == "authorization")
        .map(|(_, value)| value.into_owned());
    let Some((token, _)) = credentials::mercure_token(headers, query_token.as_deref())? else {
        return Err(ApiError::unauthorized(
            "listing subscriptions requires a JWT",
        ));
    };
    let grants = state.tokens.subscriber_grants(token, headers, uri)?;
    if state.tokens.may_subscribe(&grants, uri.path()) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the token does not grant subscribe on this path",
        ))
    }
}

fn not_found() -> ApiError {
    ApiError::new(crate::error::ErrorCode::NotFound, "no such subscription")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_decoded_exactly_once() {
        let Some(Wanted::Matcher {
            match_type,
            matcher,
        }) = Wanted::parse("/.well-known/mercure/subscriptions/exact/a%252Fb")
        else {
            panic!("not a matcher path");
        };
        assert_eq!((match_type.as_str(), matcher.as_str()), ("exact", "a%2Fb"));
        assert!(Wanted::parse("/.well-known/mercure/subscriptions/exact").is_none());
        assert!(Wanted::parse("/.well-known/mercure/subscriptions/a/b/c/d").is_none());
        assert!(Wanted::parse("/.well-known/mercure/subscriptions/a/%zz").is_none());
        assert!(Wanted::parse("/.well-known/mercure/subscriptionsX").is_none());
    }

    #[test]
    fn escapes_are_two_hex_digits_and_nothing_else() {
        assert_eq!(decode_segment("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode_segment("%e2%82%ac").as_deref(), Some("\u{20ac}"));
        for bad in ["%+1", "%-1", "%+F", "% 1", "%1", "%", "%zz", "%FF"] {
            assert_eq!(decode_segment(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_link_quotes_the_cursor_without_losing_characters() {
        assert_eq!(
            link("urn:uuid:1"),
            "</.well-known/mercure>; rel=\"mercure\"; last-event-id=\"urn:uuid:1\""
        );
        assert_eq!(
            link(r#"a"b\c"#),
            r#"</.well-known/mercure>; rel="mercure"; last-event-id="a\"b\\c""#
        );
        assert_eq!(link("caf\u{e9}"), "</.well-known/mercure>; rel=\"mercure\"");
    }

    #[test]
    fn a_cut_list_says_so() {
        let entry = Entry::mercure("urn:uuid:1", "exact", "/a", None);
        let mut listing = Listing {
            entries: vec![entry],
            truncated: false,
        };
        let whole = collection("/p", "1", &listing);
        assert_eq!(whole.get("truncated"), None);
        listing.truncated = true;
        let cut = collection("/p", "1", &listing);
        assert_eq!(cut["truncated"], Value::Bool(true));
        assert_eq!(cut["subscriptions"].as_array().map(Vec::len), Some(1));
    }
}
