//! Matchers: a selector's text and how to read it.
//!
//! Mercure has two dialects of topic selection, and a hub serves both at once:
//!
//! - 0.x: `topic=<selector>` on the subscribe URL and `mercure.publish`/`mercure.subscribe`
//!   claims in tokens, where a selector is `*`, an exact topic or an RFC 6570 URI template,
//!   told apart by its text ([`MatchKind::Template`]).
//! - 1.0: `match=` / `match_exact=` ([`MatchKind::Exact`]) and `match_urlpattern=`
//!   ([`MatchKind::UrlPattern`]) on the subscribe URL, and `{ "match", "match_type" }`
//!   objects in a token's `authorization_details`. The kind is said, not guessed: an exact
//!   matcher is compared byte for byte even when it holds braces.
//!
//! In every kind, `*` alone matches every topic.

use std::fmt;

use url::Url;

use crate::selector::{MAX_SELECTOR_LEN, Selector, SelectorError};
use crate::urlpattern::{self, UrlPattern};

/// How a matcher's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchKind {
    /// A 0.x selector: `*`, else an exact topic when it has no `{`, else an RFC 6570
    /// template ([`Selector::parse`]).
    Template,
    /// `*`, else the exact topic, byte for byte.
    Exact,
    /// `*`, else a WHATWG URL Pattern, relative ones resolved against the hub's URL.
    UrlPattern,
}

impl MatchKind {
    /// The name Mercure 1.0 gives the kind in `match_type` and in the paths of the
    /// subscriptions API: `exact` or `urlpattern`. A 0.x selector has no 1.0 name; it is
    /// listed as `template`.
    pub fn name(self) -> &'static str {
        match self {
            MatchKind::Template => "template",
            MatchKind::Exact => "exact",
            MatchKind::UrlPattern => "urlpattern",
        }
    }
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A selector's text and its kind: what a subscriber asks for, or what a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Matcher {
    /// How [`Self::source`] is read.
    pub kind: MatchKind,
    /// The text, as the client sent it.
    pub source: String,
}

impl Matcher {
    /// A 0.x selector ([`MatchKind::Template`]).
    pub fn template(source: impl Into<String>) -> Self {
        Self {
            kind: MatchKind::Template,
            source: source.into(),
        }
    }

    /// An exact topic ([`MatchKind::Exact`]).
    pub fn exact(source: impl Into<String>) -> Self {
        Self {
            kind: MatchKind::Exact,
            source: source.into(),
        }
    }

    /// A URL Pattern ([`MatchKind::UrlPattern`]).
    pub fn url_pattern(source: impl Into<String>) -> Self {
        Self {
            kind: MatchKind::UrlPattern,
            source: source.into(),
        }
    }

    /// Whether this is the wildcard `*`, which matches every topic whatever its kind.
    pub fn is_any(&self) -> bool {
        self.source == "*"
    }

    /// Compiles the matcher, a relative URL Pattern resolved against
    /// [`urlpattern::DEFAULT_HUB_URL`].
    ///
    /// # Errors
    ///
    /// What [`Selector::parse`] refuses for a template; a text over
    /// [`crate::selector::MAX_SELECTOR_LEN`] for any kind; an invalid URL Pattern.
    pub fn compile(&self) -> Result<Selector, SelectorError> {
        self.compile_in(&urlpattern::default_hub_url())
    }

    /// Compiles the matcher for the hub at `hub_url`, which relative URL Patterns, and the
    /// relative topics they are matched with, resolve against.
    ///
    /// # Errors
    ///
    /// As [`Self::compile`].
    pub fn compile_in(&self, hub_url: &Url) -> Result<Selector, SelectorError> {
        parse_as(self.kind, &self.source, hub_url)
    }

    /// The cost [`Self::compile`] would give, found without compiling
    /// ([`Selector::cost_of`], [`urlpattern::cost_of`]).
    ///
    /// # Errors
    ///
    /// As [`Self::compile`], for what can be seen without compiling.
    pub fn cost(&self) -> Result<usize, SelectorError> {
        self.cost_in(&urlpattern::default_hub_url())
    }

    /// [`Self::cost`] for the hub at `hub_url` ([`Self::compile_in`]).
    ///
    /// # Errors
    ///
    /// As [`Self::cost`].
    pub fn cost_in(&self, hub_url: &Url) -> Result<usize, SelectorError> {
        cost_of_as(self.kind, &self.source, hub_url)
    }

    /// Whether compiling takes real work (a template or a URL Pattern), so it belongs on a
    /// blocking thread.
    pub fn needs_compiling(&self) -> bool {
        match self.kind {
            MatchKind::Template => self.source.contains('{'),
            MatchKind::Exact => false,
            MatchKind::UrlPattern => !self.is_any(),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind, self.source)
    }
}

/// Parses `s` as a matcher of `kind` ([`crate::Matcher`]): `*` is [`Selector::Any`]
/// whatever the kind; [`MatchKind::Template`] is [`Selector::parse`];
/// [`MatchKind::Exact`] is the exact text, braces and all; [`MatchKind::UrlPattern`] is a
/// [`UrlPattern`] resolved against `hub_url`.
///
/// # Errors
///
/// A text longer than [`crate::selector::MAX_SELECTOR_LEN`]; what [`Selector::parse`] refuses for a
/// template; an invalid URL Pattern.
pub(crate) fn parse_as(kind: MatchKind, s: &str, hub_url: &Url) -> Result<Selector, SelectorError> {
    if s == "*" {
        return Ok(Selector::Any);
    }
    match kind {
        MatchKind::Template => Selector::parse(s),
        MatchKind::Exact if s.len() > MAX_SELECTOR_LEN => Err(SelectorError::TooLong {
            len: s.len(),
            max: MAX_SELECTOR_LEN,
        }),
        MatchKind::Exact => Ok(Selector::Exact(s.into())),
        MatchKind::UrlPattern => UrlPattern::compile(s, hub_url).map(Selector::UrlPattern),
    }
}

/// [`Selector::cost_of`] for a matcher of `kind`.
///
/// # Errors
///
/// As [`parse_as`], for what can be seen without compiling.
pub(crate) fn cost_of_as(kind: MatchKind, s: &str, hub_url: &Url) -> Result<usize, SelectorError> {
    match kind {
        _ if s == "*" => Ok(0),
        MatchKind::Template => Selector::cost_of(s),
        MatchKind::Exact => parse_as(kind, s, hub_url).map(|selector| selector.cost()),
        MatchKind::UrlPattern => urlpattern::cost_of(s, hub_url),
    }
}

/// A bare string is a 0.x selector ([`MatchKind::Template`]), whose text says its kind.
impl From<&str> for Matcher {
    fn from(source: &str) -> Self {
        Matcher::template(source)
    }
}

/// A bare string is a 0.x selector ([`MatchKind::Template`]), whose text says its kind.
impl From<String> for Matcher {
    fn from(source: String) -> Self {
        Matcher::template(source)
    }
}
