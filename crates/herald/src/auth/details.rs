//! Mercure 1.0 `authorization_details` (RFC 9396 entries): what a 1.0 access token allows.
//!
//! Entries of type `https://mercure.rocks/authorization-detail` (or `mercure`) grant
//! `actions` (`publish`, `subscribe`) on `topics` (`{ "match", "match_type" }`, the type
//! `exact` by default or `urlpattern`), with an optional subscribe `payload`. Entries of
//! other types are another resource's business and are skipped. One malformed Mercure
//! entry refuses the whole token: a token that does not say clearly what it allows allows
//! nothing. Counts and lengths are bounded.

use herald_hub::{MatchKind, Matcher, selector::MAX_SELECTOR_LEN};
use serde_json::Value;

use super::Grants;
use crate::error::ApiError;

/// The detail type of Mercure grants, and the shorter name earlier drafts gave it.
pub const DETAIL_TYPES: [&str; 2] = ["https://mercure.rocks/authorization-detail", "mercure"];

/// Entries a token may carry at most, of any type.
pub const MAX_DETAILS: usize = 32;

/// Topics one Mercure entry may name at most.
pub const MAX_DETAIL_TOPICS: usize = 64;

/// Matchers a token may grant at most, over all its entries.
pub const MAX_GRANTED: usize = 256;

fn bad(why: &str) -> ApiError {
    ApiError::invalid_token(format!("the access token's authorization_details {why}"))
}

/// What `details` (the claim's value) allow.
///
/// # Errors
///
/// 401 `invalid_token` for any malformed Mercure entry, or too many of anything.
pub fn grants(details: &Value) -> Result<Grants, ApiError> {
    let entries = details.as_array().ok_or_else(|| bad("are not an array"))?;
    if entries.len() > MAX_DETAILS {
        return Err(bad("have too many entries"));
    }
    let mut grants = Grants::default();
    let mut granted = 0;
    for entry in entries {
        let entry = entry
            .as_object()
            .ok_or_else(|| bad("hold an entry that is not an object"))?;
        let kind = entry
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("hold an entry without a type"))?;
        if !DETAIL_TYPES.contains(&kind) {
            continue;
        }
        let (mut publish, mut subscribe) = (false, false);
        let actions = entry
            .get("actions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty() && a.len() <= 2)
            .ok_or_else(|| bad("hold an entry without actions"))?;
        for action in actions {
            match action.as_str() {
                Some("publish") => publish = true,
                Some("subscribe") => subscribe = true,
                _ => return Err(bad("hold an action other than publish and subscribe")),
            }
        }
        let topics = entry
            .get("topics")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("hold an entry without topics"))?;
        if topics.len() > MAX_DETAIL_TOPICS {
            return Err(bad("hold an entry with too many topics"));
        }
        granted += topics.len();
        if granted > MAX_GRANTED {
            return Err(bad("grant too many topics"));
        }
        let matchers = topics.iter().map(matcher).collect::<Result<Vec<_>, _>>()?;
        if publish {
            grants
                .publish
                .get_or_insert_with(Vec::new)
                .extend(matchers.iter().cloned());
        }
        if subscribe {
            grants
                .subscribe
                .get_or_insert_with(Vec::new)
                .extend(matchers.iter().cloned());
            if let Some(payload) = entry.get("payload") {
                grants.payloads.push((matchers, payload.clone()));
            }
        }
    }
    Ok(grants)
}

/// One `{ "match", "match_type" }` object, compiled once to know it is valid.
fn matcher(topic: &Value) -> Result<Matcher, ApiError> {
    let topic = topic
        .as_object()
        .ok_or_else(|| bad("hold a topic that is not an object"))?;
    let source = topic
        .get("match")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && m.len() <= MAX_SELECTOR_LEN)
        .ok_or_else(|| bad("hold a topic without a valid match"))?;
    let kind = match topic.get("match_type") {
        None => MatchKind::Exact,
        Some(Value::String(name)) => match name.as_str() {
            "exact" => MatchKind::Exact,
            "urlpattern" => MatchKind::UrlPattern,
            _ => return Err(bad("hold an unknown match_type")),
        },
        Some(_) => return Err(bad("hold a match_type that is not a string")),
    };
    if source.chars().any(char::is_control) {
        return Err(bad("hold a match with control characters"));
    }
    let matcher = Matcher {
        kind,
        source: source.to_owned(),
    };
    matcher
        .compile()
        .map_err(|_| bad("hold a match that does not compile"))?;
    Ok(matcher)
}
