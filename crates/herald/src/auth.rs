//! Mercure authorization: finding the JWT in a request and verifying it.
//!
//! `credentials` finds the token (bearer header, cookie or query). Tokens are HS256 JWTs
//! whose `mercure` claim lists the selectors the bearer may publish to and the private
//! updates it may receive. A verified token becomes [`Grants`], what it allows, which the
//! publish and subscribe paths read through [`Tokens`]. Tokens never reach the log.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use herald_hub::{Matcher, selector::Selector};
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::Config, error::ApiError};

pub mod details;
mod keys;

pub use keys::VerifyingKey;

/// Longest token accepted, in bytes. Real tokens are a few hundred bytes; this bounds the
/// work an attacker can cause per request.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The `mercure` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MercureClaim {
    /// Topic selectors the bearer may publish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// Topic selectors of the private updates the bearer may receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
}

/// The claims Herald reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// Mercure's claim; a token without it grants nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mercure: Option<MercureClaim>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The subject: who the token stands for. Publishes are rate-limited per subject, or
    /// per token when it names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// What a verified token allows, whatever its dialect: the publish and subscribe paths
/// read only this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The subject (`sub`): who the token stands for.
    pub subject: Option<String>,
    /// Expiry (`exp`), seconds since the epoch.
    pub expires: Option<u64>,
    /// The topics the bearer may publish to; `None`: it may not publish at all.
    pub publish: Option<Vec<Matcher>>,
    /// The topics of the private updates the bearer may receive; `None`: none.
    pub subscribe: Option<Vec<Matcher>>,
    /// The payloads of the token's subscribe grants, in the token's order: the grant's
    /// matchers and its payload.
    pub payloads: Vec<(Vec<Matcher>, serde_json::Value)>,
}

impl Grants {
    /// What a 0.x token's claims allow: its `mercure` selectors, read as 0.x selectors.
    pub fn from_claims(claims: &Claims) -> Self {
        let matchers = |selectors: &Option<Vec<String>>| {
            selectors
                .as_ref()
                .map(|s| s.iter().map(Matcher::template).collect())
        };
        let mercure = claims.mercure.as_ref();
        Self {
            subject: claims.sub.clone(),
            expires: claims.exp,
            publish: mercure.and_then(|m| matchers(&m.publish)),
            subscribe: mercure.and_then(|m| matchers(&m.subscribe)),
            payloads: Vec::new(),
        }
    }
}

/// How far in the future a token's `nbf` may be and the token still be accepted, in
/// seconds: the clock of whoever minted it may run a little ahead of ours, and a token is
/// often used the second it is minted. `exp` has no such leeway: a token is refused from the
/// second it expires, never later.
pub const NBF_LEEWAY_SECS: u64 = 5;

/// The time claims of a token: what is checked again each time a remembered token is used.
#[derive(Debug, Clone, Copy, Default)]
struct Times {
    exp: Option<u64>,
    nbf: Option<u64>,
}

impl Times {
    /// Whether a token with these claims may be used at `now` (Unix seconds).
    fn check(self, now: u64) -> Result<(), ApiError> {
        if self.exp.is_some_and(|exp| exp < now) {
            return Err(ApiError::invalid_token("the JWT has expired"));
        }
        if self
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(NBF_LEEWAY_SECS))
        {
            return Err(ApiError::invalid_token("the JWT is not valid yet"));
        }
        Ok(())
    }
}

/// The claims Herald reads, of either dialect, decoded in one pass once the signature
/// checked out.
#[derive(Deserialize)]
struct Decoded {
    #[serde(default)]
    mercure: Option<MercureClaim>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    authorization_details: Option<serde_json::Value>,
}

/// What is read of a token before its signature is checked, to choose the key: nothing
/// else of it is trusted until then.
#[derive(Deserialize)]
struct Unverified {
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    authorization_details: Option<serde::de::IgnoredAny>,
}

/// The `typ` of an RFC 9068 access token, as its header says it (case-insensitively,
/// with or without the `application/` prefix).
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        let typ = typ
            .get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .map_or(typ, |_| &typ[12..]);
        typ.eq_ignore_ascii_case("at+jwt")
    })
}

/// Verified tokens remembered at most, per role. Only tokens whose signature checked out
/// are kept, so the cache cannot be filled with garbage; when full it starts over.
const VERIFIED_CACHE: usize = 4_096;

/// Audiences a 1.0 token may name at most.
const MAX_AUDIENCES: usize = 16;

/// What a 1.0 token must name in `aud`: the configured resource, else the hub URL the
/// request reached.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// `--resource`, or no request to go by: only this (or nothing, when `None`).
    Resource(Option<&'a str>),
    /// The request's `Host`: `http://` or `https://` it, then `/.well-known/mercure`.
    Host(&'a str),
}

impl Audience<'_> {
    fn accepts(self, aud: &str) -> bool {
        match self {
            Audience::Resource(resource) => resource == Some(aud),
            Audience::Host(host) => aud
                .strip_prefix("https://")
                .or_else(|| aud.strip_prefix("http://"))
                .and_then(|rest| rest.strip_suffix(crate::routes::mercure::PATH))
                .is_some_and(|named| named.eq_ignore_ascii_case(host)),
        }
    }
}

/// Verifies the tokens of one role (publishers or subscribers), of either dialect.
///
/// The key is chosen by the token's `iss` and the role, never by its header: an issuer
/// configured with its own key is verified with that key only; a token naming no issuer,
/// or an issuer configured without a key, with the role's key. With issuers configured, a
/// token naming another is refused.
///
/// A token is a 1.0 access token when its `typ` is `at+jwt` or it carries
/// `authorization_details`; it must then have that `typ`, an `iss` (one of the issuers,
/// when any is configured), an `aud` naming this hub's resource, an `exp`, and valid
/// details. Otherwise its `mercure` claim says what it allows.
///
/// A publisher or a fleet of browsers sends the same token over and over: what it allows
/// is kept after the first verification (keyed by the whole token, never by a part of it),
/// and only its time claims (`exp`, `nbf`) and audience are checked again, by the same
/// rule.
#[derive(Clone)]
pub struct Verifier {
    role_key: VerifyingKey,
    issuers: Arc<[(String, Option<VerifyingKey>)]>,
    verified: Arc<Mutex<HashMap<Box<str>, Remembered>>>,
}

/// What a verified token allows, its times, and the audiences of a 1.0 token, checked
/// again at each use.
type Remembered = (Arc<Grants>, Times, Option<Arc<[String]>>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    /// A verifier of HS256 tokens signed with `secret`, trusting no named issuer.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_issuers(VerifyingKey::secret(secret), Arc::from([]))
    }

    /// A verifier whose tokens are signed with `role_key`, or name one of `issuers`.
    pub fn with_issuers(
        role_key: VerifyingKey,
        issuers: Arc<[(String, Option<VerifyingKey>)]>,
    ) -> Self {
        Self {
            role_key,
            issuers,
            verified: Arc::default(),
        }
    }

    /// Verifies `token` outside any request: a 1.0 token's audience must be the one given.
    ///
    /// # Errors
    ///
    /// As [`Verifier::verify_for`].
    pub fn verify(&self, token: &str) -> Result<Arc<Grants>, ApiError> {
        self.verify_for(token, Audience::Resource(None))
    }

    /// Verifies `token`'s signature, expiry and not-before time (with [`NBF_LEEWAY_SECS`]),
    /// and for a 1.0 token the rules above with `audience`, and returns what it allows.
    ///
    /// # Errors
    ///
    /// 401 `invalid_token` with the reason, never echoing the token.
    pub fn verify_for(&self, token: &str, audience: Audience) -> Result<Arc<Grants>, ApiError> {
        self.verify_at(token, audience, unix_now())
    }

    /// [`Verifier::verify_for`] with `now` (Unix seconds) as the time the token's `exp`
    /// and `nbf` are checked against.
    fn verify_at(
        &self,
        token: &str,
        audience: Audience,
        now: u64,
    ) -> Result<Arc<Grants>, ApiError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::invalid_token("the JWT is too long"));
        }
        let known = self
            .verified
            .lock()
            .expect("token cache poisoned")
            .get(token)
            .cloned();
        let (grants, times, audiences) = match known {
            Some(known) => known,
            None => {
                let remembered = self.decode(token)?;
                // Remembered even when not valid yet: its signature checked out, and its
                // times are checked on every use.
                let mut verified = self.verified.lock().expect("token cache poisoned");
                if verified.len() >= VERIFIED_CACHE {
                    verified.clear();
                }
                verified.insert(token.into(), remembered.clone());
                remembered
            }
        };
        times.check(now)?;
        if let Some(audiences) = audiences
            && !audiences.iter().any(|aud| audience.accepts(aud))
        {
            return Err(ApiError::invalid_token(
                "the access token is not meant for this hub (aud)",
            ));
        }
        Ok(grants)
    }

    /// The key that verifies a token naming `iss`.
    fn key_for(&self, iss: Option<&str>) -> Result<&VerifyingKey, ApiError> {
        let Some(iss) = iss else {
            return Ok(&self.role_key);
        };
        match self.issuers.iter().find(|(uri, _)| uri == iss) {
            Some((_, key)) => Ok(key.as_ref().unwrap_or(&self.role_key)),
            None if self.issuers.is_empty() => Ok(&self.role_key),
            None => Err(ApiError::invalid_token("the JWT's issuer is not trusted")),
        }
    }

    /// Checks a token never seen before and reads what it allows.
    fn decode(&self, token: &str) -> Result<Remembered, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        let malformed = || ApiError::invalid_token("the JWT is malformed");
        // An unknown `alg` (`none` among them) fails here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| malformed())?;
        let unverified: Unverified =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| malformed())?;
        let iss = match &unverified.iss {
            None => None,
            Some(serde_json::Value::String(iss)) => Some(iss.as_str()),
            Some(_) => return Err(malformed()),
        };
        let v1 = is_access_token_type(header.typ.as_deref())
            || unverified.authorization_details.is_some();
        if v1 && iss.is_none() {
            return Err(ApiError::invalid_token(
                "an access token must name its issuer (iss)",
            ));
        }
        let key = self.key_for(iss)?;
        // An issuer with a key of its own issues access tokens: a 0.x token under that key
        // would skip `aud` and the required `exp`, and be good on every hub that trusts it.
        if !v1 && !std::ptr::eq(key, &self.role_key) {
            return Err(ApiError::invalid_token(
                "this issuer's tokens must be access tokens (typ at+jwt)",
            ));
        }
        if !key.algorithms.contains(&header.alg) {
            return Err(key.wrong_algorithm());
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        // `exp` and `nbf` are enforced by `Times::check`, `aud` by `Audience`: one rule for
        // first and remembered verifications.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.validate_aud = false;
        let decoded = jsonwebtoken::decode::<Decoded>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => {
                    ApiError::invalid_token("the JWT signature is invalid")
                }
                ErrorKind::InvalidAlgorithm => key.wrong_algorithm(),
                _ => malformed(),
            })?;
        let times = Times {
            exp: decoded.exp,
            nbf: decoded.nbf,
        };
        if !v1 {
            let grants = Grants::from_claims(&Claims {
                mercure: decoded.mercure,
                exp: decoded.exp,
                sub: decoded.sub,
            });
            return Ok((Arc::new(grants), times, None));
        }
        if !is_access_token_type(header.typ.as_deref()) {
            return Err(ApiError::invalid_token(
                "a token with authorization_details must have typ at+jwt",
            ));
        }
        if decoded.exp.is_none() {
            return Err(ApiError::invalid_token(
                "an access token must have an expiry (exp)",
            ));
        }
        let audiences: Arc<[String]> = match decoded.aud {
            Some(serde_json::Value::String(aud)) => Arc::from([aud]),
            Some(serde_json::Value::Array(auds))
                if !auds.is_empty() && auds.len() <= MAX_AUDIENCES =>
            {
                auds.into_iter()
                    .map(|aud| match aud {
                        serde_json::Value::String(aud) => Ok(aud),
                        _ => Err(ApiError::invalid_token("the JWT's aud is not a string")),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(ApiError::invalid_token(
                    "an access token must name its audience (aud)",
                ));
            }
        };
        let mut grants = match &decoded.authorization_details {
            Some(details) => details::grants(details)?,
            None => Grants::from_claims(&Claims {
                mercure: decoded.mercure,
                ..Claims::default()
            }),
        };
        grants.subject = decoded.sub;
        grants.expires = decoded.exp;
        Ok((Arc::new(grants), times, Some(audiences)))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints an HS256 token with the given claims; for `herald token` and tests.
///
/// # Errors
///
/// Only if signing fails, which HS256 with a byte key does not.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

/// One Mercure grant of a 1.0 token: actions on topics, with an optional payload.
#[derive(Debug, Clone)]
pub struct Detail {
    /// `publish`, `subscribe` or both.
    pub actions: Vec<&'static str>,
    /// The matchers granted.
    pub topics: Vec<Matcher>,
    /// What the hub attaches to the bearer's subscriptions.
    pub payload: Option<serde_json::Value>,
}

/// Mints a 1.0 access token (`typ: at+jwt`) of `issuer` for `audience`, signed with the
/// HS256 `secret`; for `herald token --v1` and tests.
///
/// # Errors
///
/// Only if signing fails, which HS256 with a byte key does not.
pub fn mint_v1(
    secret: &[u8],
    issuer: &str,
    audience: &str,
    subject: Option<&str>,
    exp: u64,
    details: &[Detail],
) -> Result<String, jsonwebtoken::errors::Error> {
    let details: Vec<serde_json::Value> = details
        .iter()
        .map(|detail| {
            let topics: Vec<serde_json::Value> = detail
                .topics
                .iter()
                .map(|m| serde_json::json!({ "match": m.source, "match_type": m.kind.name() }))
                .collect();
            let mut value = serde_json::json!({
                "type": details::DETAIL_TYPES[0],
                "actions": detail.actions,
                "topics": topics,
            });
            if let Some(payload) = &detail.payload {
                value["payload"] = payload.clone();
            }
            value
        })
        .collect();
    let mut claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "exp": exp,
        "iat": unix_now(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "client_id": "herald-cli",
        "authorization_details": details,
    });
    if let Some(subject) = subject {
        claims["sub"] = subject.into();
    }
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
}

/// The Mercure side of authorization: the keys of publishers and subscribers, whether a
/// subscriber may go without a token, and the compiled matchers of tokens' grants. Cheap
/// to clone.
#[derive(Clone, Debug)]
pub struct Tokens {
    inner: Arc<TokensInner>,
}

#[derive(Debug)]
struct TokensInner {
    publisher: Verifier,
    subscriber: Verifier,
    anonymous: bool,
    matchers: SelectorCache,
    issuers: Vec<String>,
    resource: Option<String>,
    https: bool,
}

impl Tokens {
    /// The verifiers and rules of `config`.
    pub fn new(config: &Config) -> Self {
        let issuers: Arc<[(String, Option<VerifyingKey>)]> = config
            .issuers
            .iter()
            .map(|issuer| (issuer.uri.clone(), issuer.key.clone()))
            .collect();
        Self {
            inner: Arc::new(TokensInner {
                publisher: Verifier::with_issuers(
                    VerifyingKey::secret(&config.publisher_key),
                    issuers.clone(),
                ),
                subscriber: Verifier::with_issuers(
                    VerifyingKey::secret(&config.subscriber_key),
                    issuers,
                ),
                anonymous: config.anonymous,
                matchers: SelectorCache::new(config.hub.base_url.clone()),
                issuers: config.issuers.iter().map(|i| i.uri.clone()).collect(),
                resource: config.resource.clone(),
                https: config.tls.is_some(),
            }),
        }
    }

    /// Verifies a subscriber's `token` presented with a request (its headers and URI
    /// decide the audience a 1.0 token must name).
    ///
    /// # Errors
    ///
    /// As [`Verifier::verify_for`].
    pub fn subscriber_grants(
        &self,
        token: &str,
        headers: &axum::http::HeaderMap,
        uri: &axum::http::Uri,
    ) -> Result<Arc<Grants>, ApiError> {
        let audience = self.audience(request_host(headers, uri));
        self.inner.subscriber.verify_for(token, audience)
    }

    /// The issuers configured (`--issuer`), for the protected-resource metadata.
    pub fn issuers(&self) -> &[String] {
        &self.inner.issuers
    }

    /// What a 1.0 token presented with a request for `host` must name in `aud`.
    pub fn audience<'a>(&'a self, host: Option<&'a str>) -> Audience<'a> {
        match (&self.inner.resource, host) {
            (Some(resource), _) => Audience::Resource(Some(resource)),
            (None, Some(host)) => Audience::Host(host),
            (None, None) => Audience::Resource(None),
        }
    }

    /// This hub's resource identifier, as a request for `host` sees it: `--resource`, else
    /// the hub URL on `host` (https when Herald serves TLS itself, else http).
    pub fn resource(&self, host: Option<&str>) -> Option<String> {
        if let Some(resource) = &self.inner.resource {
            return Some(resource.clone());
        }
        let scheme = if self.inner.https { "https" } else { "http" };
        host.map(|host| format!("{scheme}://{host}{}", crate::routes::mercure::PATH))
    }

    /// The URL of the protected-resource metadata of [`Tokens::resource`]: its well-known
    /// path goes between the resource's authority and its path.
    pub fn metadata_url(&self, host: Option<&str>) -> Option<String> {
        let resource = self.resource(host)?;
        let (scheme, rest) = resource.split_once("://")?;
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        Some(format!("{scheme}://{authority}{METADATA_PREFIX}{path}"))
    }

    /// Verifies publishers' tokens.
    pub fn publisher(&self) -> &Verifier {
        &self.inner.publisher
    }

    /// Verifies subscribers' tokens.
    pub fn subscriber(&self) -> &Verifier {
        &self.inner.subscriber
    }

    /// Whether subscribers may connect without a token.
    pub fn anonymous(&self) -> bool {
        self.inner.anonymous
    }

    /// Whether `grants` allow publishing to `topic`.
    pub fn may_publish(&self, grants: &Grants, topic: &str) -> bool {
        grants
            .publish
            .as_deref()
            .is_some_and(|allowed| self.inner.matchers.any_matches(allowed, topic))
    }

    /// Whether `grants` allow receiving the private updates of `topic` (and reading what
    /// the hub says about it).
    pub fn may_subscribe(&self, grants: &Grants, topic: &str) -> bool {
        grants
            .subscribe
            .as_deref()
            .is_some_and(|allowed| self.inner.matchers.any_matches(allowed, topic))
    }

    /// The payload `grants` attach to `subscription`: that of the first subscribe grant one
    /// of whose matchers matches the subscription's own text, read as a topic.
    pub fn payload_for(
        &self,
        grants: &Grants,
        subscription: &Matcher,
    ) -> Option<serde_json::Value> {
        grants
            .payloads
            .iter()
            .find(|(matchers, _)| {
                self.inner
                    .matchers
                    .any_matches(matchers, &subscription.source)
            })
            .map(|(_, payload)| payload.clone())
    }
}

/// The well-known prefix of protected-resource metadata.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The host a request was made to, when it is a plain `host[:port]`: the `Host` header,
/// else the URI's authority (HTTP/2).
pub fn request_host<'a>(
    headers: &'a axum::http::HeaderMap,
    uri: &'a axum::http::Uri,
) -> Option<&'a str> {
    host_of(headers.get(axum::http::header::HOST), uri)
}

/// [`request_host`] of a request's `Host` header and URI.
pub fn host_of<'a>(
    host: Option<&'a axum::http::HeaderValue>,
    uri: &'a axum::http::Uri,
) -> Option<&'a str> {
    let host = host
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    plain.then_some(host)
}

/// Compiled matchers, cached: a client sends the same token with every request.
#[derive(Debug, Default)]
pub struct SelectorCache {
    compiled: std::sync::Mutex<std::collections::HashMap<Matcher, Option<Arc<Selector>>>>,
    /// The hub's URL, which relative URL Patterns and topics resolve against; the default
    /// hub URL when `None`.
    hub_url: Option<url::Url>,
}

/// Entries kept before the cache is cleared; bounds memory under hostile claims.
const SELECTOR_CACHE_MAX: usize = 4096;

impl SelectorCache {
    /// A cache whose URL Patterns resolve against `hub_url`.
    pub fn new(hub_url: url::Url) -> Self {
        Self {
            compiled: std::sync::Mutex::default(),
            hub_url: Some(hub_url),
        }
    }

    /// Whether any of `matchers` matches `topic`. Matchers that do not compile match
    /// nothing.
    pub fn any_matches(&self, matchers: &[Matcher], topic: &str) -> bool {
        matchers.iter().any(|matcher| {
            if matcher.is_any() {
                return true;
            }
            // An exact matcher, or a 0.x selector equal to the topic: no compiling.
            match matcher.kind {
                herald_hub::MatchKind::Exact => return matcher.source == topic,
                herald_hub::MatchKind::Template if matcher.source == topic => return true,
                _ => {}
            }
            let known = self
                .compiled
                .lock()
                .expect("selector cache poisoned")
                .get(matcher)
                .cloned();
            // Compiled outside the lock: a costly pattern delays only the request that
            // brought it.
            let compiled = known.unwrap_or_else(|| {
                let compiled = match &self.hub_url {
                    Some(hub_url) => matcher.compile_in(hub_url),
                    None => matcher.compile(),
                }
                .ok()
                .map(Arc::new);
                let mut cache = self.compiled.lock().expect("selector cache poisoned");
                if cache.len() >= SELECTOR_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(matcher.clone(), compiled.clone());
                compiled
            });
            compiled.is_some_and(|s| s.matches(topic))
        })
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    impl Verifier {
        /// A 0.x token verified at `now`.
        fn verify_at_now(&self, token: &str, now: u64) -> Result<Arc<Grants>, ApiError> {
            self.verify_at(token, Audience::Resource(None), now)
        }
    }

    pub(super) fn test_tokens() -> Tokens {
        Tokens {
            inner: Arc::new(TokensInner {
                publisher: Verifier::new(KEY),
                subscriber: Verifier::new(KEY),
                anonymous: false,
                matchers: SelectorCache::default(),
                issuers: Vec::new(),
                resource: None,
                https: false,
            }),
        }
    }

    fn claims(exp: Option<u64>) -> Claims {
        Claims {
            mercure: Some(MercureClaim {
                publish: Some(vec!["*".into()]),
                subscribe: None,
            }),
            exp,
            sub: None,
        }
    }

    #[test]
    fn verifies_and_rejects() {
        let verifier = Verifier::new(KEY);
        let good = mint(KEY, &claims(None)).unwrap();
        assert_eq!(
            verifier.verify(&good).unwrap().publish,
            Some(vec![Matcher::template("*")])
        );
        let cases = [
            (
                mint(b"another key, also 32 bytes long!", &claims(None)).unwrap(),
                "the JWT signature is invalid",
            ),
            (mint(KEY, &claims(Some(1))).unwrap(), "the JWT has expired"),
            ("not.a.jwt".to_owned(), "the JWT is malformed"),
            ("x".repeat(MAX_TOKEN_LEN + 1), "the JWT is too long"),
        ];
        for (token, why) in cases {
            assert_eq!(verifier.verify(&token).unwrap_err().message, why);
        }
    }

    #[test]
    fn remembered_tokens_still_expire_and_match_whole() {
        let verifier = Verifier::new(KEY);
        let now = unix_now();
        let token = mint(KEY, &claims(Some(now + 60))).unwrap();
        let first = verifier.verify(&token).unwrap();
        // The second answer comes from the cache: the same claims, not a new decode.
        assert!(Arc::ptr_eq(&first, &verifier.verify(&token).unwrap()));
        assert_eq!(
            verifier
                .verify_at_now(&token, now + 61)
                .unwrap_err()
                .message,
            "the JWT has expired"
        );
        // Another payload under the remembered signature is not the remembered token.
        let (_, signature) = token.rsplit_once('.').unwrap();
        let other = mint(KEY, &claims(None)).unwrap();
        let (unsigned, _) = other.rsplit_once('.').unwrap();
        assert_eq!(
            verifier
                .verify(&format!("{unsigned}.{signature}"))
                .unwrap_err()
                .message,
            "the JWT signature is invalid"
        );
    }

    /// A token with `claims(exp)` and a `nbf`.
    fn not_before(nbf: u64, exp: Option<u64>) -> String {
        let mut value = serde_json::to_value(claims(exp)).unwrap();
        value["nbf"] = nbf.into();
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &value,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap()
    }

    #[test]
    fn not_before_is_enforced_with_a_small_leeway() {
        let verifier = Verifier::new(KEY);
        let now = unix_now();
        let cases = [
            (now.saturating_sub(60), Ok(())),
            (now, Ok(())),
            // The minting clock may be a little ahead.
            (now + NBF_LEEWAY_SECS, Ok(())),
            (now + NBF_LEEWAY_SECS + 1, Err("the JWT is not valid yet")),
            (now + 3600, Err("the JWT is not valid yet")),
        ];
        for (nbf, want) in cases {
            let got = verifier
                .verify_at_now(&not_before(nbf, None), now)
                .map(|_| ())
                .map_err(|e| e.message);
            assert_eq!(
                got,
                want.map_err(str::to_owned),
                "nbf = now + {}",
                nbf as i64 - now as i64
            );
        }
        // `exp` stays strict, and is checked first.
        assert_eq!(
            verifier
                .verify_at_now(&not_before(now, Some(now - 1)), now)
                .unwrap_err()
                .message,
            "the JWT has expired"
        );
    }

    #[test]
    fn remembered_tokens_are_checked_against_nbf_too() {
        let verifier = Verifier::new(KEY);
        let now = unix_now();
        let token = not_before(now + 60, Some(now + 120));
        // Too early, twice: the second answer comes from the cache, by the same rule.
        for _ in 0..2 {
            assert_eq!(
                verifier.verify_at_now(&token, now).unwrap_err().message,
                "the JWT is not valid yet"
            );
        }
        let first = verifier.verify_at_now(&token, now + 60).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &verifier.verify_at_now(&token, now + 61).unwrap()
        ));
        assert_eq!(
            verifier
                .verify_at_now(&token, now + 55 - NBF_LEEWAY_SECS)
                .unwrap_err()
                .message,
            "the JWT is not valid yet"
        );
        assert_eq!(
            verifier
                .verify_at_now(&token, now + 121)
                .unwrap_err()
                .message,
            "the JWT has expired"
        );
    }

    #[test]
    fn publish_selectors() {
        let cache = SelectorCache::default();
        let claim = |s: &[&str]| s.iter().map(|s| Matcher::template(*s)).collect::<Vec<_>>();
        assert!(cache.any_matches(&claim(&["*"]), "anything"));
        assert!(cache.any_matches(
            &claim(&["https://e.com/books/{id}"]),
            "https://e.com/books/1"
        ));
        assert!(!cache.any_matches(
            &claim(&["https://e.com/books/{id}"]),
            "https://e.com/users/1"
        ));
        assert!(!cache.any_matches(&claim(&[]), "a"));
        assert!(!cache.any_matches(&claim(&["{"]), "a"));
        // An exact matcher is its text, braces and all.
        let exact = [Matcher::exact("https://e.com/books/{id}")];
        assert!(!cache.any_matches(&exact, "https://e.com/books/1"));
        assert!(cache.any_matches(&exact, "https://e.com/books/{id}"));
        assert!(cache.any_matches(&[Matcher::exact("*")], "anything"));
    }

    #[test]
    fn grants_of_0x_claims_and_their_questions() {
        let tokens = test_tokens();
        let grants = Grants::from_claims(&Claims {
            mercure: Some(MercureClaim {
                publish: Some(vec!["https://e.com/books/{id}".into()]),
                subscribe: Some(vec!["https://e.com/users/1".into()]),
            }),
            exp: Some(7),
            sub: Some("alice".into()),
        });
        assert_eq!(grants.subject.as_deref(), Some("alice"));
        assert_eq!(grants.expires, Some(7));
        assert!(tokens.may_publish(&grants, "https://e.com/books/2"));
        assert!(!tokens.may_publish(&grants, "https://e.com/users/1"));
        assert!(tokens.may_subscribe(&grants, "https://e.com/users/1"));
        assert!(!tokens.may_subscribe(&grants, "https://e.com/books/2"));
        assert_eq!(
            tokens.payload_for(&grants, &Matcher::exact("https://e.com/users/1")),
            None
        );
        let none = Grants::from_claims(&Claims::default());
        assert_eq!((none.publish.clone(), none.subscribe.clone()), (None, None));
        assert!(!tokens.may_publish(&none, "a"));
        assert!(!tokens.may_subscribe(&none, "a"));
        // An empty claim is a claim: it names no topic, but is not absent.
        let empty = Grants::from_claims(&Claims {
            mercure: Some(MercureClaim {
                publish: Some(vec![]),
                subscribe: None,
            }),
            ..Claims::default()
        });
        assert_eq!(empty.publish, Some(vec![]));
        assert!(!tokens.may_publish(&empty, "a"));
    }

    #[test]
    fn payloads_go_to_the_first_grant_that_covers_the_subscription() {
        let tokens = test_tokens();
        let grants = Grants {
            payloads: vec![
                (
                    vec![Matcher::exact("https://e.com/a")],
                    serde_json::json!(1),
                ),
                (
                    vec![Matcher::template("https://e.com/{x}")],
                    serde_json::json!(2),
                ),
                (vec![Matcher::exact("*")], serde_json::json!(3)),
            ],
            ..Grants::default()
        };
        let payload = |m: Matcher| tokens.payload_for(&grants, &m);
        assert_eq!(payload(Matcher::exact("https://e.com/a")), Some(1.into()));
        assert_eq!(payload(Matcher::exact("https://e.com/b")), Some(2.into()));
        // The subscription's text is read as a topic, whatever its own kind: a template's
        // braces are not a value `{x}` expands to.
        assert_eq!(
            payload(Matcher::template("https://e.com/c")),
            Some(2.into())
        );
        assert_eq!(
            payload(Matcher::template("https://e.com/{y}")),
            Some(3.into())
        );
        assert_eq!(payload(Matcher::exact("urn:other")), Some(3.into()));
    }
}

/// Mercure 1.0 access tokens: one table of what is accepted and refused, and why.
#[cfg(test)]
mod v1_tests {
    use serde_json::{Value, json};

    use super::{tests::test_tokens, *};

    const HUB_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ISSUER_SECRET: &[u8] = b"the issuer's own HS256 secret, 32+";
    const RESOURCE: &str = "https://hub.example/.well-known/mercure";
    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    const C: &str = "https://c.example";
    const D: &str = "https://d.example";
    const E: &str = "https://e.example";

    fn pem(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    /// Trusts A (the hub's key), B (its own secret), C (Ed25519), D (P-256), E (RSA).
    fn verifier() -> Verifier {
        let key = |name: &str| Some(VerifyingKey::from_file_bytes(&pem(name)).unwrap());
        Verifier::with_issuers(
            VerifyingKey::secret(HUB_KEY),
            Arc::from([
                (A.to_owned(), None),
                (B.to_owned(), Some(VerifyingKey::secret(ISSUER_SECRET))),
                (C.to_owned(), key("ed25519.pub.pem")),
                (D.to_owned(), key("p256.pub.pem")),
                (E.to_owned(), key("rsa.pub.pem")),
            ]),
        )
    }

    fn detail(actions: &[&str], topics: Value) -> Value {
        json!({ "type": details::DETAIL_TYPES[0], "actions": actions, "topics": topics })
    }

    /// Valid claims of issuer A: publish anything, subscribe to one exact topic.
    fn claims() -> Value {
        json!({
            "iss": A,
            "aud": RESOURCE,
            "exp": unix_now() + 600,
            "sub": "alice",
            "authorization_details": [
                detail(&["publish"], json!([{ "match": "*" }])),
                detail(&["subscribe"], json!([{ "match": "https://e.com/1", "match_type": "exact" }])),
            ],
        })
    }

    fn sign(alg: Algorithm, typ: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            Some("at+jwt"),
            claims,
            &EncodingKey::from_secret(HUB_KEY),
        )
    }

    fn with(change: impl FnOnce(&mut Value)) -> String {
        let mut claims = claims();
        change(&mut claims);
        hs(&claims)
    }

    fn verify(token: &str) -> Result<Arc<Grants>, String> {
        verifier()
            .verify_for(token, Audience::Resource(Some(RESOURCE)))
            .map_err(|error| {
                assert!(error.invalid_token, "{}", error.message);
                error.message
            })
    }

    /// `alg: none`, unsigned.
    fn unsigned(claims: &Value) -> String {
        let b64 = |v: &Value| {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = v.to_string().into_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        };
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "at+jwt"})),
            b64(claims)
        )
    }

    #[test]
    fn the_rules_of_access_tokens() {
        let now = unix_now();
        let ok = |token: String| verify(&token).map(|_| ());
        let refused = |token: String| verify(&token).map(|_| ()).unwrap_err();
        ok(hs(&claims())).unwrap();
        // typ: at+jwt in any case, with or without `application/`; required with details.
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            ok(sign(
                Algorithm::HS256,
                Some(typ),
                &claims(),
                &EncodingKey::from_secret(HUB_KEY),
            ))
            .unwrap();
        }
        for typ in [Some("JWT"), None] {
            let token = sign(
                Algorithm::HS256,
                typ,
                &claims(),
                &EncodingKey::from_secret(HUB_KEY),
            );
            assert!(refused(token).contains("typ at+jwt"), "{typ:?}");
        }
        // iss: required, and one of the issuers.
        assert!(refused(with(|c| c["iss"] = Value::Null)).contains("issuer"));
        assert!(refused(with(|c| c["iss"] = 1.into())).contains("malformed"));
        assert!(
            refused(with(|c| {
                c.as_object_mut().unwrap().remove("iss");
            }))
            .contains("issuer")
        );
        assert!(refused(with(|c| c["iss"] = "https://x.example".into())).contains("not trusted"));
        // aud: a string or an array, naming the resource.
        ok(with(|c| c["aud"] = json!(["https://other", RESOURCE]))).unwrap();
        assert!(refused(with(|c| c["aud"] = "https://other".into())).contains("aud"));
        assert!(refused(with(|c| c["aud"] = json!(["https://other"]))).contains("aud"));
        assert!(refused(with(|c| c["aud"] = json!([]))).contains("aud"));
        assert!(refused(with(|c| c["aud"] = json!([1]))).contains("aud"));
        assert!(
            refused(with(|c| {
                c.as_object_mut().unwrap().remove("aud");
            }))
            .contains("aud")
        );
        // exp: required and enforced; nbf enforced.
        assert!(
            refused(with(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }))
            .contains("exp")
        );
        assert!(refused(with(|c| c["exp"] = (now - 1).into())).contains("expired"));
        assert!(refused(with(|c| c["nbf"] = (now + 600).into())).contains("not valid yet"));
        ok(with(|c| c["nbf"] = now.into())).unwrap();
        // Algorithms: never `none`; never one the key is not for.
        assert!(refused(unsigned(&claims())).contains("malformed"));
        let hs512 = sign(
            Algorithm::HS512,
            Some("at+jwt"),
            &claims(),
            &EncodingKey::from_secret(HUB_KEY),
        );
        assert!(refused(hs512).contains("must be signed with"));
        // Issuer B has its own key: the hub's key does not do for it, nor B's for A.
        let mut of_b = claims();
        of_b["iss"] = B.into();
        let b_key = EncodingKey::from_secret(ISSUER_SECRET);
        ok(sign(Algorithm::HS256, Some("at+jwt"), &of_b, &b_key)).unwrap();
        assert!(refused(hs(&of_b)).contains("signature"));
        assert!(
            refused(sign(Algorithm::HS256, Some("at+jwt"), &claims(), &b_key))
                .contains("signature")
        );
        // Public keys: each issuer's, with the algorithms of its type only.
        let private = |name: &str| pem(name);
        let cases = [
            (
                C,
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(&private("ed25519.pem")).unwrap(),
            ),
            (
                D,
                Algorithm::ES256,
                EncodingKey::from_ec_pem(&private("p256.pem")).unwrap(),
            ),
            (
                E,
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&private("rsa.pem")).unwrap(),
            ),
        ];
        for (issuer, alg, key) in &cases {
            let mut mine = claims();
            mine["iss"] = (*issuer).into();
            ok(sign(*alg, Some("at+jwt"), &mine, key)).unwrap();
            // Another issuer's key does not sign for this one.
            for (other, other_alg, other_key) in &cases {
                if other != issuer {
                    assert!(
                        !refused(sign(*other_alg, Some("at+jwt"), &mine, other_key)).is_empty()
                    );
                }
            }
            // An HMAC under the public key's bytes (the classic confusion) is refused.
            let confused = sign(
                Algorithm::HS256,
                Some("at+jwt"),
                &mine,
                &EncodingKey::from_secret(&pem("p256.pub.pem")),
            );
            assert!(refused(confused).contains("must be signed with"));
        }
    }

    #[test]
    fn bad_details_refuse_the_whole_token() {
        let cases: Vec<(&str, Value)> = vec![
            ("not an array", json!({})),
            ("entry not an object", json!(["x"])),
            ("entry without type", json!([{ "actions": ["publish"] }])),
            (
                "no actions",
                json!([{ "type": "mercure", "topics": [{ "match": "*" }] }]),
            ),
            (
                "empty actions",
                json!([detail(&[], json!([{ "match": "*" }]))]),
            ),
            (
                "unknown action",
                json!([detail(&["delete"], json!([{ "match": "*" }]))]),
            ),
            (
                "no topics",
                json!([{ "type": "mercure", "actions": ["publish"] }]),
            ),
            ("empty topics", json!([detail(&["publish"], json!([]))])),
            (
                "topic not an object",
                json!([detail(&["publish"], json!(["*"]))]),
            ),
            (
                "empty match",
                json!([detail(&["publish"], json!([{ "match": "" }]))]),
            ),
            (
                "match not a string",
                json!([detail(&["publish"], json!([{ "match": 1 }]))]),
            ),
            (
                "unknown match_type",
                json!([detail(
                    &["publish"],
                    json!([{ "match": "a", "match_type": "regex" }])
                )]),
            ),
            (
                "match_type not a string",
                json!([detail(
                    &["publish"],
                    json!([{ "match": "a", "match_type": 1 }])
                )]),
            ),
            (
                "control character",
                json!([detail(&["publish"], json!([{ "match": "a\u{1}" }]))]),
            ),
            (
                "too long",
                json!([detail(
                    &["publish"],
                    json!([{ "match": "a".repeat(herald_hub::selector::MAX_SELECTOR_LEN + 1) }])
                )]),
            ),
            (
                "too many topics",
                json!([detail(
                    &["publish"],
                    Value::Array(vec![
                        json!({ "match": "a" });
                        details::MAX_DETAIL_TOPICS + 1
                    ])
                )]),
            ),
            (
                "too many entries",
                Value::Array(vec![json!({ "type": "other" }); details::MAX_DETAILS + 1]),
            ),
        ];
        for (what, value) in cases {
            // A good entry beside the bad one does not save the token.
            let mut list = claims()["authorization_details"]
                .as_array()
                .unwrap()
                .clone();
            match value {
                Value::Array(entries) => list.extend(entries),
                other => {
                    let token = with(|c| c["authorization_details"] = other);
                    assert!(
                        verify(&token)
                            .unwrap_err()
                            .contains("authorization_details"),
                        "{what}"
                    );
                    continue;
                }
            }
            let token = with(|c| c["authorization_details"] = Value::Array(list));
            assert!(
                verify(&token)
                    .unwrap_err()
                    .contains("authorization_details"),
                "{what}"
            );
        }
    }

    #[test]
    fn grants_of_details() {
        let grants = verify(&with(|c| {
            c["authorization_details"] = json!([
                { "type": "https://other.example/grant", "anything": true },
                detail(&["subscribe", "publish"], json!([{ "match": "https://e.com/{x}" }])),
                { "type": "mercure", "actions": ["subscribe"], "topics": [{ "match": "*" }], "payload": { "n": 1 } },
                detail(&["subscribe"], json!([{ "match": "https://e.com/1" }])),
            ]);
            c["mercure"] = json!({ "publish": ["ignored"] });
        }))
        .unwrap();
        assert_eq!(grants.subject.as_deref(), Some("alice"));
        assert!(grants.expires.is_some());
        // Another type's entry is skipped; the `mercure` claim is ignored beside details.
        assert_eq!(
            grants.publish,
            Some(vec![Matcher::exact("https://e.com/{x}")])
        );
        assert_eq!(
            grants.subscribe,
            Some(vec![
                Matcher::exact("https://e.com/{x}"),
                Matcher::exact("*"),
                Matcher::exact("https://e.com/1"),
            ])
        );
        assert_eq!(
            grants.payloads,
            vec![(vec![Matcher::exact("*")], json!({ "n": 1 }))]
        );
        // No subscribe entry: no private updates; no publish entry: no publishing.
        let only = verify(&with(|c| {
            c["authorization_details"] = json!([detail(&["publish"], json!([{ "match": "a" }]))]);
        }))
        .unwrap();
        assert_eq!(only.subscribe, None);
        // An access token without details reads the `mercure` claim, after the 1.0 rules.
        let legacy = verify(&with(|c| {
            c.as_object_mut().unwrap().remove("authorization_details");
            c["mercure"] = json!({ "subscribe": ["https://e.com/{id}"] });
        }))
        .unwrap();
        assert_eq!(
            legacy.subscribe,
            Some(vec![Matcher::template("https://e.com/{id}")])
        );
        assert_eq!(legacy.publish, None);
    }

    #[test]
    fn the_audience_is_checked_at_every_use() {
        let verifier = verifier();
        let token = hs(&claims());
        let host = |h| verifier.verify_for(&token, Audience::Host(h)).map(|_| ());
        host("hub.example").unwrap();
        // The cached answer still checks the audience.
        assert!(host("evil.example").unwrap_err().invalid_token);
        host("HUB.example").unwrap();
        assert!(verifier.verify(&token).is_err());
        let http = with(|c| c["aud"] = "http://hub.example:8080/.well-known/mercure".into());
        verifier
            .verify_for(&http, Audience::Host("hub.example:8080"))
            .unwrap();
        assert!(
            verifier
                .verify_for(&http, Audience::Host("hub.example"))
                .is_err()
        );
    }

    #[test]
    fn zero_x_tokens_and_issuers() {
        let verifier = verifier();
        let zero = |claims: Value| {
            let token = sign(
                Algorithm::HS256,
                None,
                &claims,
                &EncodingKey::from_secret(HUB_KEY),
            );
            verifier.verify(&token).map(|g| g.publish.clone())
        };
        let mercure = json!({ "publish": ["*"] });
        // No iss, no aud, no exp: a 0.x token as before.
        assert_eq!(
            zero(json!({ "mercure": mercure })).unwrap(),
            Some(vec![Matcher::template("*")])
        );
        // A trusted issuer's 0.x token; an untrusted one's is refused once issuers are set.
        zero(json!({ "mercure": mercure, "iss": A })).unwrap();
        assert!(zero(json!({ "mercure": mercure, "iss": "https://x.example" })).is_err());
        // Issuer B's own key, not the hub's.
        assert!(zero(json!({ "mercure": mercure, "iss": B })).is_err());
        // Signed with B's own key, a 0.x token is still refused: an issuer with a key of its
        // own issues access tokens only, whose `aud` and `exp` are checked.
        let own = sign(
            Algorithm::HS256,
            None,
            &json!({ "mercure": mercure, "iss": B }),
            &EncodingKey::from_secret(ISSUER_SECRET),
        );
        assert_eq!(
            verifier.verify(&own).unwrap_err().message,
            "this issuer's tokens must be access tokens (typ at+jwt)"
        );
        // Without issuers configured, `iss` is not looked at.
        let open = Verifier::new(HUB_KEY);
        let token = sign(
            Algorithm::HS256,
            None,
            &json!({ "mercure": mercure, "iss": "x" }),
            &EncodingKey::from_secret(HUB_KEY),
        );
        open.verify(&token).unwrap();
    }

    /// URL Pattern grants compile with the URL Pattern engine of `herald_hub`; until it
    /// compiles them, a token granting one is refused whole, as any detail that does not
    /// compile.
    #[test]
    fn url_pattern_grants() {
        let tokens = test_tokens();
        let grants = verify(&with(|c| {
            c["authorization_details"] = json!([detail(
                &["publish", "subscribe"],
                json!([{ "match": "https://e.com/books/:id", "match_type": "urlpattern" }])
            )]);
        }))
        .unwrap();
        assert!(tokens.may_publish(&grants, "https://e.com/books/1"));
        assert!(!tokens.may_publish(&grants, "https://e.com/users/1"));
        assert!(tokens.may_subscribe(&grants, "https://e.com/books/2"));
        let bad = with(|c| {
            c["authorization_details"] = json!([detail(
                &["publish"],
                json!([{ "match": "(", "match_type": "urlpattern" }])
            )]);
        });
        assert!(verify(&bad).unwrap_err().contains("authorization_details"));
    }

    #[test]
    fn url_pattern_wildcards_and_relative_patterns() {
        // `*` is every topic in every kind.
        let any = verify(&with(|c| {
            c["authorization_details"] = json!([detail(
                &["publish"],
                json!([{ "match": "*", "match_type": "urlpattern" }])
            )]);
        }))
        .unwrap();
        assert!(test_tokens().may_publish(&any, "urn:x"));
        let pattern = with(|c| {
            c["authorization_details"] = json!([detail(
                &["publish"],
                json!([{ "match": "https://e.com/books/:id", "match_type": "urlpattern" }])
            )]);
        });
        assert!(verify(&pattern).is_ok());
        // A relative pattern resolves against the hub's URL, as the relative topics of the
        // hub's own events do.
        let relative = verify(&with(|c| {
            c["authorization_details"] = json!([detail(
                &["subscribe"],
                json!([{
                    "match": "/.well-known/mercure/subscriptions/:kind/:match/:subscriber",
                    "match_type": "urlpattern"
                }])
            )]);
        }))
        .unwrap();
        let tokens = test_tokens();
        assert!(tokens.may_subscribe(
            &relative,
            "/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1"
        ));
        assert!(!tokens.may_subscribe(&relative, "/.well-known/mercure/other"));
    }

    #[test]
    fn key_files() {
        assert_eq!(
            VerifyingKey::from_file_bytes(&pem("ed25519.pub.pem"))
                .unwrap()
                .algorithms,
            [Algorithm::EdDSA]
        );
        assert!(
            VerifyingKey::from_file_bytes(&pem("rsa.pub.pem"))
                .unwrap()
                .algorithms
                .contains(&Algorithm::RS256)
        );
        assert!(VerifyingKey::from_file_bytes(b"short").is_err());
        // Public keys in other formats are refused, not taken for a secret anyone can read.
        for public in [
            &br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtV","e":"AQAB"}"#[..],
            br#"[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]"#,
            b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host",
            b"\x30\x82\x01\x22\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00\x03\x82\x01\x0f\x00",
        ] {
            assert!(VerifyingKey::from_file_bytes(public).is_err(), "{public:?}");
        }
        assert!(
            VerifyingKey::from_file_bytes(
                b"-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n"
            )
            .is_err()
        );
        assert_eq!(
            VerifyingKey::from_file_bytes(b"  0123456789abcdef0123456789abcdef\n")
                .unwrap()
                .algorithms,
            [Algorithm::HS256]
        );
    }
}
