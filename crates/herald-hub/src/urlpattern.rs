//! WHATWG URL Pattern matchers ([`crate::MatchKind::UrlPattern`]), in linear time.
//!
//! The `urlpattern` crate parses a pattern into one regular expression per URL component
//! (protocol, username, password, hostname, port, pathname, search, hash). Those regexes are
//! compiled here by the `regex` crate, whose matching time is linear in the topic's length
//! whatever the pattern, and whose compiled size is capped ([`REGEX_SIZE_LIMIT`]): a
//! hostile pattern is refused or matched in bounded time, never backtracked through.
//!
//! Patterns and topics may be relative: both are resolved against the hub's URL
//! ([`crate::HubConfig::base_url`]), so `/books/:id` matches the topic `/books/1` and the
//! topic `https://<hub host>/books/1`. A topic that is not a URL, even after resolution,
//! matches no URL Pattern. Host names compare case-insensitively (URL parsing lowercases
//! them), everything else case-sensitively: a pattern never ignores case.
//!
//! Matching answers what the `urlpattern` crate's `test` answers, more cheaply: fan-out
//! matches one topic against every pattern, so the topic is resolved and split into its
//! components once per thread; a pattern first compares the literal start of its path and
//! host, held inline, with the topic's, then checks its other components in place, skipping
//! the `*` ones, and a regex only answers whether it matches. The tests below compare the
//! two on many pairs.
//!
//! A pattern costs ([`crate::selector::Selector::cost`]) the total length of the regexes it
//! compiles to, the same measure as a template's, or for a regex whose counted repetitions
//! or Unicode classes expand, the size it expands to. So the hub's selector budgets bound
//! URL Patterns too; [`cost_of`] finds the cost by parsing alone, before anything is
//! compiled.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use regex::{Regex, RegexBuilder};
use url::Url;
use urlpattern::matcher::{InnerMatcher, Matcher};
use urlpattern::quirks::{MatchInput, parse_match_input};
use urlpattern::regexp::RegExp;
use urlpattern::{RegexSyntax, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

use crate::selector::{MAX_SELECTOR_LEN, REGEX_SIZE_LIMIT, SelectorError};

/// The hub URL that relative patterns and topics resolve against when none is configured.
pub const DEFAULT_HUB_URL: &str = "http://localhost/.well-known/mercure";

/// The most memory each component regex's lazy DFA cache may grow to, in bytes. A pattern
/// has up to eight of them, and a hub holds many patterns; the regex crate falls back to a
/// slower linear engine rather than fail when a cache is too small.
const DFA_CACHE_LIMIT: usize = 1 << 16;

/// The most heap the one regex compiled while pricing a pattern (its protocol's, to tell
/// whether it names a special scheme) may take: real protocol patterns are a few bytes.
const PRICING_REGEX_LIMIT: usize = 1 << 14;

/// [`DEFAULT_HUB_URL`], parsed.
pub fn default_hub_url() -> Url {
    Url::parse(DEFAULT_HUB_URL).expect("the default hub URL parses")
}

/// A compiled URL Pattern: matches the topics that, resolved against the hub's URL, are
/// URLs the pattern matches.
#[derive(Clone)]
pub struct UrlPattern {
    /// The pattern as the client wrote it.
    source: Box<str>,
    /// What relative topics resolve against.
    base: Arc<Url>,
    /// The parsed pattern, its component regexes compiled.
    pattern: Arc<urlpattern::UrlPattern<Compiled>>,
    /// What the topic's path and host must start with: checked inline, before anything
    /// else of the pattern is read, they reject most topics.
    path_lead: Lead,
    host_lead: Lead,
    /// The components that can fail to match, the likeliest to reject a topic first: a
    /// component whose pattern is `*` matches anything and is left out.
    checks: Box<[Part]>,
    /// The total length of the component regexes ([`crate::selector::Selector::cost`]).
    cost: usize,
}

/// How many of a literal's first bytes [`Lead`] holds.
const LEAD_LEN: usize = 23;

/// The first bytes (up to [`LEAD_LEN`]) that a component's text must start with for its
/// matcher to match: its literal prefix, or the whole literal it must equal.
#[derive(Clone, Copy, Debug, Default)]
struct Lead {
    len: u8,
    bytes: [u8; LEAD_LEN],
}

impl Lead {
    fn of(matcher: &Matcher<Compiled>) -> Self {
        let literal = match &matcher.inner {
            InnerMatcher::Literal { literal } if matcher.prefix.is_empty() => literal.as_str(),
            _ => matcher.prefix.as_str(),
        };
        let literal = &literal.as_bytes()[..literal.len().min(LEAD_LEN)];
        let mut lead = Lead {
            len: u8::try_from(literal.len()).unwrap_or(0),
            ..Lead::default()
        };
        lead.bytes[..literal.len()].copy_from_slice(literal);
        lead
    }

    /// Whether `text` starts with this lead: when not, the component does not match.
    fn admits(&self, text: &str) -> bool {
        text.as_bytes()
            .starts_with(&self.bytes[..usize::from(self.len)])
    }
}

/// One of a URL's components, in the order [`UrlPattern::compile`] checks them: the path
/// and the host tell most topics apart.
#[derive(Clone, Copy, Debug)]
enum Part {
    Pathname,
    Hostname,
    Protocol,
    Port,
    Search,
    Hash,
    Username,
    Password,
}

impl Part {
    const ALL: [Part; 8] = [
        Part::Pathname,
        Part::Hostname,
        Part::Protocol,
        Part::Port,
        Part::Search,
        Part::Hash,
        Part::Username,
        Part::Password,
    ];

    /// This component's matcher in `pattern`, and its text in `input`.
    fn of<'a>(
        self,
        pattern: &'a urlpattern::UrlPattern<Compiled>,
        input: &'a MatchInput,
    ) -> (&'a Matcher<Compiled>, &'a str) {
        match self {
            Part::Pathname => (&pattern.pathname.matcher, &input.pathname),
            Part::Hostname => (&pattern.hostname.matcher, &input.hostname),
            Part::Protocol => (&pattern.protocol.matcher, &input.protocol),
            Part::Port => (&pattern.port.matcher, &input.port),
            Part::Search => (&pattern.search.matcher, &input.search),
            Part::Hash => (&pattern.hash.matcher, &input.hash),
            Part::Username => (&pattern.username.matcher, &input.username),
            Part::Password => (&pattern.password.matcher, &input.password),
        }
    }
}

impl UrlPattern {
    /// Parses and compiles `source`, a relative one resolved against `base`.
    ///
    /// # Errors
    ///
    /// [`SelectorError::TooLong`] over [`MAX_SELECTOR_LEN`]; [`SelectorError::InvalidUrlPattern`]
    /// for a pattern that does not parse, or whose regexes the regex crate refuses or finds
    /// over [`REGEX_SIZE_LIMIT`].
    pub fn compile(source: &str, base: &Url) -> Result<Self, SelectorError> {
        let pattern = parse::<Compiled>(source, base)?;
        let empty = MatchInput::default();
        let checks = Part::ALL
            .into_iter()
            .filter(|part| !matches_anything(part.of(&pattern, &empty).0))
            .collect();
        Ok(Self {
            source: source.into(),
            base: shared_base(base),
            path_lead: Lead::of(&pattern.pathname.matcher),
            host_lead: Lead::of(&pattern.hostname.matcher),
            checks,
            cost: cost_of_parsed(&pattern),
            pattern: Arc::new(pattern),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The total length of the compiled component regexes.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// Whether `topic`, resolved against the hub's URL, matches. A topic that is not a URL
    /// matches nothing.
    ///
    /// The same answer as the `urlpattern` crate's `test`, without its allocations: the
    /// topic's components come from the thread's last resolution, each component is checked
    /// in place, the likeliest to differ first, and a regex only answers yes or no.
    pub fn matches(&self, topic: &str) -> bool {
        with_resolved(&self.base, topic, |input| {
            input.is_some_and(|input| {
                self.path_lead.admits(&input.pathname)
                    && self.host_lead.admits(&input.hostname)
                    && self.checks.iter().all(|part| {
                        let (matcher, text) = part.of(&self.pattern, input);
                        component_matches(matcher, text)
                    })
            })
        })
    }
}

impl fmt::Debug for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlPattern").field(&self.source).finish()
    }
}

/// The [`UrlPattern::cost`] that [`UrlPattern::compile`] would give `source`, found by
/// parsing it without compiling its regexes.
///
/// # Errors
///
/// As [`UrlPattern::compile`], except for what only compiling finds.
pub fn cost_of(source: &str, base: &Url) -> Result<usize, SelectorError> {
    parse::<Priced>(source, base).map(|pattern| cost_of_parsed(&pattern))
}

/// Parses `source` with regexes of type `R`, never ignoring case.
fn parse<R: RegExp>(source: &str, base: &Url) -> Result<urlpattern::UrlPattern<R>, SelectorError> {
    if source.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError::TooLong {
            len: source.len(),
            max: MAX_SELECTOR_LEN,
        });
    }
    let invalid = |error: urlpattern::Error| SelectorError::InvalidUrlPattern(error.to_string());
    let init = UrlPatternInit::parse_constructor_string::<R>(source, Some(base.clone()))
        .map_err(invalid)?;
    let options = UrlPatternOptions {
        regex_syntax: RegexSyntax::Rust,
        ignore_case: false,
    };
    urlpattern::UrlPattern::<R>::parse(init, options).map_err(invalid)
}

/// What resolving a topic costs each match, beside the regexes, in the same unit as
/// [`UrlPattern::cost`]: parsing a URL and splitting it into components is work of the
/// order of running a few hundred bytes of regex over it. Counting it bounds how many URL
/// Patterns the hub's selector budget admits, however short.
const RESOLVE_COST: usize = 256;

/// A topic resolved against a base: the base, the topic, and the URL's components if it is
/// one.
type Resolved = (Arc<Url>, Box<str>, Option<MatchInput>);

thread_local! {
    /// The last topic resolved on this thread, with its base and its URL's components:
    /// fan-out matches one topic against every pattern in turn, so it is parsed and split
    /// once, not once per pattern.
    static LAST_RESOLVED: std::cell::RefCell<Option<Resolved>> =
        const { std::cell::RefCell::new(None) };
}

/// Calls `f` with the components of `topic` resolved against `base`, if it is a URL then.
fn with_resolved<T>(base: &Arc<Url>, topic: &str, f: impl FnOnce(Option<&MatchInput>) -> T) -> T {
    LAST_RESOLVED.with_borrow_mut(|last| {
        let fresh = last.as_ref().is_some_and(|(last_base, last_topic, _)| {
            **last_topic == *topic && (Arc::ptr_eq(last_base, base) || last_base == base)
        });
        if !fresh {
            let input = base
                .join(topic)
                .ok()
                .and_then(|url| parse_match_input(UrlPatternMatchInput::Url(url)));
            *last = Some((base.clone(), topic.into(), input));
        }
        f(last.as_ref().and_then(|(_, _, input)| input.as_ref()))
    })
}

/// `base`, shared with the patterns compiled before against the same base: a hub has one,
/// so matching compares the base of a pattern with the last resolution's by address.
fn shared_base(base: &Url) -> Arc<Url> {
    static LAST: Mutex<Option<Arc<Url>>> = Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match last.as_ref() {
        Some(shared) if **shared == *base => Arc::clone(shared),
        _ => Arc::clone(last.insert(Arc::new(base.clone()))),
    }
}

/// Whether `matcher` matches every text: a `*` with nothing around it.
fn matches_anything<R: RegExp>(matcher: &Matcher<R>) -> bool {
    matcher.prefix.is_empty()
        && matcher.suffix.is_empty()
        && matches!(
            matcher.inner,
            InnerMatcher::SingleCapture {
                filter: None,
                allow_empty: true
            }
        )
}

/// Whether `matcher` matches `text`: what `urlpattern`'s own `Matcher::matches` answers,
/// without building the groups. [`parse`] never ignores case, so neither does this.
fn component_matches(matcher: &Matcher<Compiled>, text: &str) -> bool {
    // The prefix and the suffix must both be there, and not overlap.
    let Some(inner) = text
        .strip_prefix(matcher.prefix.as_str())
        .and_then(|rest| rest.strip_suffix(matcher.suffix.as_str()))
    else {
        return false;
    };
    match &matcher.inner {
        InnerMatcher::Literal { literal } => inner == literal,
        InnerMatcher::SingleCapture {
            filter,
            allow_empty,
        } => (*allow_empty || !inner.is_empty()) && filter.is_none_or(|c| !inner.contains(c)),
        InnerMatcher::RegExp { regexp } => {
            regexp.as_ref().is_ok_and(|regexp| regexp.0.is_match(inner))
        }
    }
}

/// The total length of the regexes a parsed pattern holds: each component's, and its
/// matcher's when the matcher falls back to a regex; plus [`RESOLVE_COST`].
fn cost_of_parsed<R: RegExp>(pattern: &urlpattern::UrlPattern<R>) -> usize {
    let regexes: usize = [
        &pattern.protocol,
        &pattern.username,
        &pattern.password,
        &pattern.hostname,
        &pattern.port,
        &pattern.pathname,
        &pattern.search,
        &pattern.hash,
    ]
    .into_iter()
    .map(|component| {
        let own = component
            .regexp
            .as_ref()
            .map_or(0, |regexp| weight(regexp.pattern_string()));
        let matcher = match &component.matcher.inner {
            InnerMatcher::RegExp { regexp: Ok(regexp) } => weight(regexp.pattern_string()),
            _ => 0,
        };
        own.saturating_add(matcher)
    })
    .fold(0, usize::saturating_add);
    regexes.saturating_add(RESOLVE_COST)
}

/// What one component regex costs: its length, or, when larger, the size of the program it
/// expands to. A counted repetition copies its body (`(?:a{1000}){1000}` is short and a
/// million states), and a Unicode class is one state per range, so the length alone would
/// let a short pattern hold a large program.
fn weight(pattern: &str) -> usize {
    match regex_syntax::Parser::new().parse(pattern) {
        Ok(hir) => pattern.len().max(expanded(&hir)),
        Err(_) => pattern.len(),
    }
}

/// The size of the program `hir` compiles to, roughly: literals by byte, classes by range,
/// repetitions by copy. The parser bounds nesting, so the recursion is bounded too.
fn expanded(hir: &regex_syntax::hir::Hir) -> usize {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(literal) => literal.0.len(),
        HirKind::Class(Class::Unicode(class)) => class.ranges().len(),
        HirKind::Class(Class::Bytes(class)) => class.ranges().len(),
        HirKind::Repetition(repetition) => {
            let copies = repetition
                .max
                .unwrap_or(repetition.min)
                .max(repetition.min)
                .max(1);
            expanded(&repetition.sub).saturating_mul(copies as usize)
        }
        HirKind::Capture(capture) => expanded(&capture.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            subs.iter().map(expanded).fold(0, usize::saturating_add)
        }
    }
}

/// Builds one component regex: bounded in size, never case-insensitive.
fn build(pattern: &str, flags: &str) -> Result<Regex, ()> {
    if flags.contains('i') {
        return Err(());
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_CACHE_LIMIT)
        .build()
        .map_err(|_| ())
}

/// Whether `regex` matches `text`, in the shape `urlpattern` wants: one entry per group,
/// each `None`. A topic only needs a yes or no, and the regex crate answers that with its
/// lazy DFA, a constant amount of work per byte, where finding the groups' spans takes work
/// proportional to the regex's size per byte.
fn captures<'a>(regex: &Regex, text: &'a str) -> Option<Vec<Option<&'a str>>> {
    regex
        .is_match(text)
        .then(|| vec![None; regex.captures_len().saturating_sub(1)])
}

/// A component regex compiled by the regex crate, with the size limits above.
#[derive(Debug)]
struct Compiled(Regex);

impl RegExp for Compiled {
    fn syntax() -> RegexSyntax {
        RegexSyntax::Rust
    }

    fn parse(pattern: &str, flags: &str, _force_eval: bool) -> Result<Self, ()> {
        build(pattern, flags).map(Compiled)
    }

    fn matches<'a>(&self, text: &'a str) -> Option<Vec<Option<&'a str>>> {
        captures(&self.0, text)
    }

    fn pattern_string(&self) -> &str {
        self.0.as_str()
    }
}

/// A component regex as text only, for pricing a pattern before compiling it. Parsing asks
/// whether the protocol component matches a special scheme (`http`, `ws`, …); only then is
/// that one regex compiled.
#[derive(Debug)]
struct Priced {
    source: String,
    flags: String,
    compiled: OnceLock<Option<Regex>>,
}

impl RegExp for Priced {
    fn syntax() -> RegexSyntax {
        RegexSyntax::Rust
    }

    fn parse(pattern: &str, flags: &str, _force_eval: bool) -> Result<Self, ()> {
        if flags.contains('i') {
            return Err(());
        }
        Ok(Priced {
            source: pattern.into(),
            flags: flags.into(),
            compiled: OnceLock::new(),
        })
    }

    fn matches<'a>(&self, text: &'a str) -> Option<Vec<Option<&'a str>>> {
        // Pricing runs before any budget is checked, on the request's own thread: the one
        // regex it may compile is held to a small size, and a protocol pattern over it is
        // priced as matching no special scheme (its real compile, budgeted, decides).
        let regex = self.compiled.get_or_init(|| {
            if self.flags.contains('i') {
                return None;
            }
            RegexBuilder::new(&self.source)
                .size_limit(PRICING_REGEX_LIMIT)
                .dfa_size_limit(DFA_CACHE_LIMIT)
                .build()
                .ok()
        });
        captures(regex.as_ref()?, text)
    }

    fn pattern_string(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn hub() -> Url {
        Url::parse("https://hub.example/.well-known/mercure").unwrap()
    }

    #[test]
    fn patterns_against_topics() {
        let table: &[(&str, &str, bool)] = &[
            // Named groups match one path segment.
            (
                "https://example.com/books/:id",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/:id",
                "https://example.com/books/1/x",
                false,
            ),
            (
                "https://example.com/books/:id",
                "https://example.com/books/",
                false,
            ),
            // `*` matches anything, slashes included.
            (
                "https://example.com/books/*",
                "https://example.com/books/1/reviews/2",
                true,
            ),
            (
                "https://example.com/books/*",
                "https://example.com/authors/1",
                false,
            ),
            ("https://example.com/*", "https://example.com/a?b=c#d", true),
            // Regex groups.
            (
                "https://example.com/:type(news|alerts)/:id",
                "https://example.com/news/7",
                true,
            ),
            (
                "https://example.com/:type(news|alerts)/:id",
                "https://example.com/alerts/7",
                true,
            ),
            (
                "https://example.com/:type(news|alerts)/:id",
                "https://example.com/sport/7",
                false,
            ),
            (
                "https://example.com/n/(\\d+)",
                "https://example.com/n/123",
                true,
            ),
            (
                "https://example.com/n/(\\d+)",
                "https://example.com/n/12a",
                false,
            ),
            // Optional groups.
            (
                "https://example.com/books/:id{/:tail}?",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/:id{/:tail}?",
                "https://example.com/books/1/x",
                true,
            ),
            (
                "https://example.com/books/:id{/:tail}?",
                "https://example.com/books/1/x/y",
                false,
            ),
            // A relative pattern against relative and absolute topics on the hub's host.
            ("/books/:id", "/books/1", true),
            ("/books/:id", "https://hub.example/books/1", true),
            ("/books/:id", "https://other.example/books/1", false),
            ("/books/:id", "/authors/1", false),
            // An absolute pattern on the hub's host against a relative topic.
            ("https://hub.example/books/*", "/books/1", true),
            ("https://example.com/books/*", "/books/1", false),
            // Host names ignore case, paths do not.
            (
                "https://Example.COM/books/*",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/*",
                "https://EXAMPLE.com/books/1",
                true,
            ),
            (
                "https://example.com/Books/*",
                "https://example.com/books/1",
                false,
            ),
            (
                "https://example.com/books/*",
                "https://example.com/BOOKS/1",
                false,
            ),
            // The scheme counts.
            ("https://example.com/*", "http://example.com/a", false),
            ("http{s}?://example.com/*", "http://example.com/a", true),
            // Topics that are not URLs match nothing.
            ("https://example.com/*", "http://[::1/x", false),
            ("*://*/*", "http://exa mple.com/", false),
        ];
        for (pattern, topic, expected) in table {
            let compiled = UrlPattern::compile(pattern, &hub())
                .unwrap_or_else(|e| panic!("{pattern:?} does not compile: {e}"));
            assert_eq!(
                compiled.matches(topic),
                *expected,
                "{pattern:?} against {topic:?}"
            );
        }
    }

    /// What matching answered before the fast path: the topic resolved against the hub's
    /// URL, then the `urlpattern` crate's own `test`, with its own regexes.
    struct Reference(urlpattern::UrlPattern<regex::Regex>);

    impl Reference {
        fn compile(pattern: &str, base: &Url) -> Option<Self> {
            let init = UrlPatternInit::parse_constructor_string::<regex::Regex>(
                pattern,
                Some(base.clone()),
            )
            .ok()?;
            let options = UrlPatternOptions {
                regex_syntax: RegexSyntax::Rust,
                ignore_case: false,
            };
            urlpattern::UrlPattern::<regex::Regex>::parse(init, options)
                .ok()
                .map(Self)
        }

        fn matches(&self, base: &Url, topic: &str) -> bool {
            base.join(topic)
                .ok()
                .is_some_and(|url| self.0.test(UrlPatternMatchInput::Url(url)).unwrap_or(false))
        }
    }

    const PROTOCOLS: &[&str] = &["https://", "http://", "http{s}?://", "*://", "ws://", ""];
    const HOSTS: &[&str] = &[
        "example.com",
        "Example.COM",
        "*.example.com",
        "hub.example",
        "example.com:8080",
        "example.com:*",
        "example.com:443",
        "u:p@example.com",
        ":*@example.com",
        "[::1]",
        "*",
        "xn--bcher-kva.example",
    ];
    const PATTERN_PATHS: &[&str] = &[
        "/books/:id",
        "/books/*",
        "/",
        "/*",
        "*",
        "/b%C3%A9/:id",
        "/bé/*",
        "/:type(news|alerts)/:id",
        "/n/(\\d+)",
        "/books/:id{/:tail}?",
        "/books/:id.json",
        "/Books/*",
        "/books",
        "/books/*/x",
        "/a%20b",
        "/*.json",
    ];
    const PATTERN_TAILS: &[&str] = &["", "?q=:v", "\\?*", "?a=1", "#*", "#top", "?*#h", "?a=1#*"];
    const TOPIC_PROTOCOLS: &[&str] = &["https://", "http://", "HTTPS://", "ws://", "//", ""];
    const TOPIC_HOSTS: &[&str] = &[
        "example.com",
        "EXAMPLE.com",
        "a.example.com",
        "hub.example",
        "example.com:8080",
        "example.com:443",
        "u:p@example.com",
        "[::1]",
        "xn--bcher-kva.example",
        "bücher.example",
        "exa mple.com",
        "[::1",
    ];
    const TOPIC_PATHS: &[&str] = &[
        "/books/1",
        "/books/1/x",
        "/books/",
        "/BOOKS/1",
        "/b%C3%A9/1",
        "/bé/1",
        "/news/7",
        "/sport/7",
        "/n/123",
        "/n/12a",
        "/books/1.json",
        "",
        "/a b",
        "/a%20b",
        "/../books/1",
        "books/1",
        "/books/1/y/x",
    ];
    const TOPIC_TAILS: &[&str] = &["", "?q=1", "?a=1", "?", "#top", "#", "#x y", "?a=1#h"];
    const ODD_TOPICS: &[&str] = &[
        "urn:example:1",
        "not a url",
        "",
        "?q=1",
        "#top",
        "mailto:a@example.com",
        "http://",
        "https://example.com",
        "data:text/plain,x",
    ];

    fn bases() -> [Url; 2] {
        [
            hub(),
            Url::parse("http://Localhost:8080/.well-known/mercure").unwrap(),
        ]
    }

    /// Asserts that `pattern` answers for `topic` what [`reference`] does.
    fn agrees(pattern: &str, base: &Url, topic: &str) -> Result<(), String> {
        let Ok(compiled) = UrlPattern::compile(pattern, base) else {
            return Ok(());
        };
        let expected = Reference::compile(pattern, base)
            .ok_or_else(|| format!("{pattern:?} compiles here only"))?
            .matches(base, topic);
        if compiled.matches(topic) == expected {
            Ok(())
        } else {
            Err(format!(
                "{pattern:?} against {topic:?} (base {base}): expected {expected}"
            ))
        }
    }

    /// Every pattern path and tail on a few hosts, against every topic path and tail on a few
    /// hosts: the fast path answers as the `urlpattern` crate does.
    #[test]
    fn matching_agrees_with_the_urlpattern_crate() {
        let base = hub();
        let patterns: Vec<String> = ["https://example.com", ""]
            .iter()
            .flat_map(|origin| {
                PATTERN_PATHS.iter().flat_map(move |path| {
                    PATTERN_TAILS
                        .iter()
                        .map(move |tail| format!("{origin}{path}{tail}"))
                })
            })
            .chain(["urn:example:*", "*", "*://*/*"].map(String::from))
            .collect();
        let topics: Vec<String> = ["https://example.com", "HTTP://A.Example.com:8080", ""]
            .iter()
            .flat_map(|origin| {
                TOPIC_PATHS.iter().flat_map(move |path| {
                    TOPIC_TAILS
                        .iter()
                        .map(move |tail| format!("{origin}{path}{tail}"))
                })
            })
            .chain(ODD_TOPICS.iter().map(|topic| topic.to_string()))
            .collect();
        let mut matched = 0;
        for pattern in &patterns {
            let compiled = UrlPattern::compile(pattern, &base)
                .unwrap_or_else(|e| panic!("{pattern:?} does not compile: {e}"));
            let reference = Reference::compile(pattern, &base).unwrap();
            for topic in &topics {
                let expected = reference.matches(&base, topic);
                assert_eq!(
                    compiled.matches(topic),
                    expected,
                    "{pattern:?} against {topic:?}"
                );
                matched += usize::from(expected);
            }
        }
        // The table is not all misses.
        assert!(matched > 100, "{matched}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Patterns and topics put together from parts, or arbitrary, on either base.
        #[test]
        fn matching_agrees_with_the_urlpattern_crate_on_generated_pairs(
            pattern in proptest::prop_oneof![
                4 => (
                    proptest::sample::select(PROTOCOLS),
                    proptest::sample::select(HOSTS),
                    proptest::sample::select(PATTERN_PATHS),
                    proptest::sample::select(PATTERN_TAILS),
                )
                    .prop_map(|(protocol, host, path, tail)| if protocol.is_empty() {
                        format!("{path}{tail}")
                    } else {
                        format!("{protocol}{host}{path}{tail}")
                    }),
                1 => "[a-zA-Z0-9:/?#%.*{}()@+\\[\\] -]{0,24}",
            ],
            topics in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => (
                        proptest::sample::select(TOPIC_PROTOCOLS),
                        proptest::sample::select(TOPIC_HOSTS),
                        proptest::sample::select(TOPIC_PATHS),
                        proptest::sample::select(TOPIC_TAILS),
                    )
                        .prop_map(|(protocol, host, path, tail)| if protocol.is_empty() {
                            format!("{path}{tail}")
                        } else {
                            format!("{protocol}{host}{path}{tail}")
                        }),
                    1 => proptest::sample::select(ODD_TOPICS).prop_map(String::from),
                    1 => "[a-zA-Z0-9:/?#%.*@ -]{0,24}",
                ],
                1..4,
            ),
            base in 0..2usize,
        ) {
            let base = &bases()[base];
            for topic in &topics {
                agrees(&pattern, base, topic).map_err(proptest::test_runner::TestCaseError::fail)?;
            }
        }
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for pattern in ["https://example.com/:id(", "https://example.com/(a", "{"] {
            assert!(
                matches!(
                    UrlPattern::compile(pattern, &hub()),
                    Err(SelectorError::InvalidUrlPattern(_))
                ),
                "{pattern:?}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_SELECTOR_LEN));
        assert!(matches!(
            UrlPattern::compile(&long, &hub()),
            Err(SelectorError::TooLong { .. })
        ));
    }

    #[test]
    fn cost_of_agrees_with_compile() {
        for pattern in [
            "/books/:id",
            "https://example.com/:type(news|alerts)/:id{/:tail}?",
            "http{s}?://*.example.com/*",
            "urn:example:*",
        ] {
            let compiled = UrlPattern::compile(pattern, &hub()).unwrap();
            assert_eq!(
                cost_of(pattern, &hub()).unwrap(),
                compiled.cost(),
                "{pattern:?}"
            );
            assert!(compiled.cost() > 0);
        }
        // Counted repetitions and Unicode classes cost what they expand to.
        let short = cost_of("/:x(a)", &hub()).unwrap();
        assert!(cost_of("/:x(a{1000})", &hub()).unwrap() > short + 1000);
        assert!(cost_of("/:x((?:a{1000}){1000})", &hub()).unwrap() > 1_000_000);
        assert!(cost_of("/:x(\\w)", &hub()).unwrap() > short + 100);
    }

    /// Nested groups and long repeated alternations: either refused when compiled, or
    /// matched, in time linear in the topic, against a long topic built to make a
    /// backtracking engine explode.
    #[test]
    fn hostile_patterns_are_refused_or_matched_in_bounded_time() {
        let alternation = (0..60)
            .map(|i| format!("a{i}|a"))
            .collect::<Vec<_>>()
            .join("|");
        let hostile = [
            ("/:x((?:a+)+)b".to_string(), false),
            ("/:x((?:a|aa)+)+b".to_string(), false),
            (format!("/:x((?:{alternation})+)+b"), false),
            ("/:x((?:(?:a*)*){100}){50}b".to_string(), false),
            ("/:x((?:(?:a*)*){1000}){1000}b".to_string(), false),
            ("/:x((?:\\w{100}){100})".to_string(), false),
            (format!("/{}", "(a*)*".repeat(200)), true),
            (format!("/{}", "(?:a|a?)+".repeat(200)), true),
        ];
        // Far longer than any topic a publisher may send.
        let topic = format!("/{}", "a".repeat(100_000));
        for (pattern, expected) in &hostile {
            let started = tokio::time::Instant::now();
            let outcome = UrlPattern::compile(pattern, &hub());
            let compiled_in = started.elapsed();
            match outcome {
                Ok(compiled) => {
                    let started = tokio::time::Instant::now();
                    assert_eq!(compiled.matches(&topic), *expected, "{pattern:?}");
                    eprintln!(
                        "{:.40}: cost {}, compiled in {compiled_in:?}, matched in {:?}",
                        pattern,
                        compiled.cost(),
                        started.elapsed()
                    );
                }
                Err(
                    error @ (SelectorError::InvalidUrlPattern(_) | SelectorError::TooLong { .. }),
                ) => {
                    eprintln!("{pattern:.40}: refused in {compiled_in:?}: {error}");
                }
                Err(other) => panic!("{pattern:?}: {other}"),
            }
        }
    }
}
