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
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{config::Config, error::ApiError};

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
#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct Times {
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

impl Times {
    /// Whether a token with these claims may be used at `now` (Unix seconds).
    fn check(self, now: u64) -> Result<(), ApiError> {
        if self.exp.is_some_and(|exp| exp < now) {
            return Err(ApiError::unauthorized("the JWT has expired"));
        }
        if self
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(NBF_LEEWAY_SECS))
        {
            return Err(ApiError::unauthorized("the JWT is not valid yet"));
        }
        Ok(())
    }
}

/// A token's claims and its time claims, decoded in one pass.
#[derive(Deserialize)]
struct Decoded {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Verified tokens remembered at most, per key. Only tokens whose signature checked out are
/// kept, so the cache cannot be filled with garbage; when full it starts over.
const VERIFIED_CACHE: usize = 4_096;

/// A key that verifies HS256 tokens.
///
/// A publisher or a fleet of browsers sends the same token over and over: its claims are
/// kept after the first verification (keyed by the whole token, never by a part of it), and
/// only its time claims (`exp`, `nbf`) are checked again, by the same rule.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    verified: Arc<Mutex<HashMap<Box<str>, Remembered>>>,
}

/// What a verified token allows, and its times, checked again at each use.
type Remembered = (Arc<Grants>, Times);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    /// A verifier for `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Mercure tokens often carry no `exp`; when one is present it is enforced, as is
        // `nbf`, by `Times::check`: one rule for first and remembered verifications.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.validate_aud = false;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        }
    }

    /// Verifies `token`'s signature, expiry and not-before time (with [`NBF_LEEWAY_SECS`])
    /// and returns what it allows.
    ///
    /// # Errors
    ///
    /// 401 with the reason (expired, bad signature, malformed), never echoing the token.
    pub fn verify(&self, token: &str) -> Result<Arc<Grants>, ApiError> {
        self.verify_at(token, unix_now())
    }

    /// [`Verifier::verify`] with `now` (Unix seconds) as the time the token's `exp` and
    /// `nbf` are checked against.
    fn verify_at(&self, token: &str, now: u64) -> Result<Arc<Grants>, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized("the JWT is too long"));
        }
        let known = self
            .verified
            .lock()
            .expect("token cache poisoned")
            .get(token)
            .cloned();
        if let Some((grants, times)) = known {
            times.check(now)?;
            return Ok(grants);
        }
        let decoded = jsonwebtoken::decode::<Decoded>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| {
                let why = match error.kind() {
                    ErrorKind::InvalidSignature => "the JWT signature is invalid",
                    ErrorKind::InvalidAlgorithm => "the JWT must be signed with HS256",
                    _ => "the JWT is malformed",
                };
                ApiError::unauthorized(why)
            })?;
        let times = Times {
            exp: decoded.claims.exp,
            nbf: decoded.nbf,
        };
        let grants = Arc::new(Grants::from_claims(&decoded.claims));
        // Remembered even when not valid yet: its signature checked out, and its times are
        // checked on every use.
        let mut verified = self.verified.lock().expect("token cache poisoned");
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(token.into(), (grants.clone(), times));
        drop(verified);
        times.check(now)?;
        Ok(grants)
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
}

impl Tokens {
    /// The verifiers and rules of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(TokensInner {
                publisher: Verifier::new(&config.publisher_key),
                subscriber: Verifier::new(&config.subscriber_key),
                anonymous: config.anonymous,
                matchers: SelectorCache::default(),
            }),
        }
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

/// Compiled matchers, cached: a client sends the same token with every request.
#[derive(Debug, Default)]
pub struct SelectorCache {
    compiled: std::sync::Mutex<std::collections::HashMap<Matcher, Option<Arc<Selector>>>>,
}

/// Entries kept before the cache is cleared; bounds memory under hostile claims.
const SELECTOR_CACHE_MAX: usize = 4096;

impl SelectorCache {
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
            let compiled = {
                let mut cache = self.compiled.lock().expect("selector cache poisoned");
                if cache.len() >= SELECTOR_CACHE_MAX {
                    cache.clear();
                }
                cache
                    .entry(matcher.clone())
                    .or_insert_with(|| matcher.compile().ok().map(Arc::new))
                    .clone()
            };
            compiled.is_some_and(|s| s.matches(topic))
        })
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn test_tokens() -> Tokens {
        Tokens {
            inner: Arc::new(TokensInner {
                publisher: Verifier::new(KEY),
                subscriber: Verifier::new(KEY),
                anonymous: false,
                matchers: SelectorCache::default(),
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
            verifier.verify_at(&token, now + 61).unwrap_err().message,
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
                .verify_at(&not_before(nbf, None), now)
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
                .verify_at(&not_before(now, Some(now - 1)), now)
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
                verifier.verify_at(&token, now).unwrap_err().message,
                "the JWT is not valid yet"
            );
        }
        let first = verifier.verify_at(&token, now + 60).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &verifier.verify_at(&token, now + 61).unwrap()
        ));
        assert_eq!(
            verifier
                .verify_at(&token, now + 55 - NBF_LEEWAY_SECS)
                .unwrap_err()
                .message,
            "the JWT is not valid yet"
        );
        assert_eq!(
            verifier.verify_at(&token, now + 121).unwrap_err().message,
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
