//! Topic selectors: which topics a subscription or a JWT claim covers.
//!
//! In the Mercure protocol a subscriber asks for `topic=<selector>`, and a
//! publisher's JWT lists selectors in its `mercure.publish` and
//! `mercure.subscribe` claims. A selector is one of:
//!
//! - `*`, which matches every topic, the empty string included;
//! - an exact topic string, compared byte for byte;
//! - an [RFC 6570] URI template, which matches every topic the template could
//!   expand to. Like Mercure's reference hub, we compile the template to an
//!   anchored regular expression once, at parse time.
//!
//! [`Selector::parse`] decides which: `*` is [`Selector::Any`], a string with
//! no `{` is [`Selector::Exact`] (whatever else it contains: a stray `}` in
//! it is just a character), and anything else must be a valid template.
//!
//! # Matching a template
//!
//! A template matches a topic when the topic equals the template's own source
//! text (Mercure compares the strings first), or when some assignment of
//! values to its variables expands to the topic under RFC 6570 level 4. Each
//! variable may be undefined, a string, a list or an associative array, so:
//!
//! - A value is a run of the characters its operator leaves unencoded:
//!   unreserved `A-Za-z0-9-._~` and `%XX` triplets, plus the reserved
//!   `:/?#[]@!$&'()*+,;=` for `{+var}` and `{#var}`. Raw non-ASCII characters
//!   never appear in a value, because expansion percent-encodes them.
//! - An empty string is a value, so `/books/{id}` matches `/books/`, as it does
//!   in Mercure's hub.
//! - A value may be a list, so `{id}` matches `1,2` and `{/id}` matches `/1,2`.
//! - Undefined variables are left out together with their separator, and an
//!   expression whose variables are all undefined expands to nothing: `/users{/id}`
//!   matches `/users`, and `/search{?q,lang}` matches `/search?lang=en`.
//! - Named operators (`;`, `?`, `&`) must name their variables in template
//!   order: `{?q,lang}` matches `?q=x&lang=en` but not `?lang=en&q=x`. An
//!   exploded variable (`{?params*}`) may be an associative array, so it
//!   matches any `key=value` pairs.
//! - The prefix modifier `{var:N}` matches like `{var}`: prefixes do not apply
//!   to lists, and a prefix of N characters may be up to 4N percent-encoded
//!   bytes, so a length bound would be both wrong and costly to compile.
//!
//! The compiled expression never rejects a real expansion. In a few corner
//! cases it accepts a bit more (an exploded `{/var*}` accepts `/a=b=c`, which
//! no associative array expands to), which is the same direction Mercure's
//! own, looser, translation errs in.
//!
//! Literal text between expressions is matched verbatim (regex metacharacters
//! such as `.`, `?` and `(` are escaped). Unlike strict RFC 6570 we accept any
//! character in literals except braces, because Mercure topics are IRIs.
//!
//! # Limits
//!
//! Selectors come from untrusted clients, so parsing is bounded: a selector
//! is at most [`MAX_SELECTOR_LEN`] bytes with at most [`MAX_EXPRESSIONS`]
//! expressions and [`MAX_VARIABLES`] variables, and the compiled regex must
//! fit in [`REGEX_SIZE_LIMIT`] bytes.
//!
//! [RFC 6570]: https://www.rfc-editor.org/rfc/rfc6570

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::urlpattern::UrlPattern;
use regex::{Regex, RegexBuilder};

/// The longest selector [`Selector::parse`] accepts, in bytes.
///
/// Real topics are URLs well under this; the cap bounds the work and memory
/// one hostile selector can cost before it is even compiled.
pub const MAX_SELECTOR_LEN: usize = 2048;

/// The most `{...}` expressions one template may have.
///
/// Each expression adds alternatives to the compiled regex; real templates
/// have a handful.
pub const MAX_EXPRESSIONS: usize = 64;

/// The most variables one template may have, over all its expressions.
///
/// A `{?a,b,...}` expression compiles to a regex nested one group deeper per
/// variable (the first variable present carries no `&`), and the regex crate
/// refuses patterns nested more than 250 deep.
pub const MAX_VARIABLES: usize = 64;

/// The most heap a compiled template regex may use, in bytes.
///
/// Passed to [`RegexBuilder::size_limit`] so that compiling a selector cannot
/// blow memory; a template over it fails with [`SelectorError::TooComplex`].
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The most memory each template's lazy DFA cache may grow to, in bytes.
///
/// A hub holds one regex per template subscription, so the default of 2 MiB
/// each would add up; the regex crate falls back to a slower engine rather
/// than fail when a cache is too small.
const REGEX_DFA_CACHE_LIMIT: usize = 1 << 19;

/// A compiled topic selector.
///
/// Two selectors are equal when they are the same kind with the same source
/// text; equal sources always compile to the same matcher.
#[derive(Debug, Clone)]
pub enum Selector {
    /// `*`: matches every topic.
    Any,
    /// A topic string with no `{`: matches that exact topic only.
    Exact(Box<str>),
    /// An RFC 6570 URI template: matches every topic it can expand to.
    Template(Template),
    /// A WHATWG URL Pattern ([`crate::urlpattern`]).
    UrlPattern(UrlPattern),
}

impl Selector {
    /// Parses a selector: `*` is [`Selector::Any`], a string with no `{` is
    /// [`Selector::Exact`], and anything else is compiled as an RFC 6570
    /// template.
    ///
    /// # Errors
    ///
    /// Returns an error, saying what is wrong and at which byte, when the
    /// selector is longer than [`MAX_SELECTOR_LEN`], or when it is a malformed
    /// template: an unclosed, stray or nested brace, an empty expression, a
    /// reserved operator (`=,!@|`), a bad variable name or modifier, or more
    /// expressions, variables or regex size than the limits allow.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s == "*" {
            return Ok(Selector::Any);
        }
        if s.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError::TooLong {
                len: s.len(),
                max: MAX_SELECTOR_LEN,
            });
        }
        if !s.contains('{') {
            return Ok(Selector::Exact(s.into()));
        }
        Template::compile(s).map(Selector::Template)
    }

    /// True when `topic` is matched.
    ///
    /// [`Selector::Exact`] is a plain string comparison. A
    /// [`Selector::Template`] also matches a topic equal to its own source
    /// text, because Mercure compares the selector to the topic string first.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(exact) => **exact == *topic,
            Selector::Template(template) => template.matches(topic),
            Selector::UrlPattern(pattern) => pattern.matches(topic),
        }
    }

    /// The source text: `*`, the exact topic, or the template.
    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(exact) => exact,
            Selector::Template(template) => template.as_str(),
            Selector::UrlPattern(pattern) => pattern.as_str(),
        }
    }

    /// What holding and matching this selector costs, in bytes: for a template or a URL
    /// Pattern, the length of its regexes, to which both the compiled programs' memory and
    /// the work of each match are proportional; nothing for `*` and exact topics, which
    /// compile to nothing and compare in one step. A hub budgets its subscribers' selectors
    /// with it.
    pub fn cost(&self) -> usize {
        match self {
            Selector::Any | Selector::Exact(_) => 0,
            Selector::Template(template) => template.cost,
            Selector::UrlPattern(pattern) => pattern.cost(),
        }
    }

    /// The [`cost`](Selector::cost) that [`Selector::parse`] would give `s`, found without
    /// compiling anything: a few microseconds, where compiling a costly template takes tens
    /// of milliseconds. Lets a caller refuse a selector over its budget before paying for it.
    ///
    /// # Errors
    ///
    /// As [`Selector::parse`], except for the errors only compiling finds
    /// ([`SelectorError::TooComplex`]).
    pub fn cost_of(s: &str) -> Result<usize, SelectorError> {
        if s == "*" {
            return Ok(0);
        }
        if s.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError::TooLong {
                len: s.len(),
                max: MAX_SELECTOR_LEN,
            });
        }
        if !s.contains('{') {
            return Ok(0);
        }
        let parts = parse_template(s)?;
        Ok(Template::pattern(s, &parts).len())
    }

    /// True for every selector but [`Selector::Exact`]: selectors that
    /// cannot be indexed by an exact topic and must be tried one by one.
    pub fn is_pattern(&self) -> bool {
        !matches!(self, Selector::Exact(_))
    }

    /// Which variant this is, for equality and hashing.
    fn kind(&self) -> u8 {
        match self {
            Selector::Any => 0,
            Selector::Exact(_) => 1,
            Selector::Template(_) => 2,
            Selector::UrlPattern(_) => 3,
        }
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.kind() == other.kind() && self.as_str() == other.as_str()
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind().hash(state);
        self.as_str().hash(state);
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

/// A compiled RFC 6570 URI template; see the [module docs](self) for what it
/// matches. Built by [`Selector::parse`].
#[derive(Clone)]
pub struct Template {
    /// The template as written, which is also a topic it matches.
    source: Box<str>,
    /// Length of the literal text before the first expression. Every match
    /// starts with it, so checking it first skips the regex for most topics
    /// when a hub tries many templates against one topic.
    prefix_len: usize,
    /// Length of the literal text after the last expression; every match ends
    /// with it.
    suffix_len: usize,
    /// The whole template as an anchored (`^...$`) regex.
    regex: Regex,
    /// The length of the regex's source ([`Selector::cost`]).
    cost: usize,
}

impl Template {
    /// The template's source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `topic` equals the source text or is an expansion of the
    /// template.
    pub fn matches(&self, topic: &str) -> bool {
        if *topic == *self.source {
            return true;
        }
        let prefix = &self.source[..self.prefix_len];
        let suffix = &self.source[self.source.len() - self.suffix_len..];
        topic.starts_with(prefix) && topic.ends_with(suffix) && self.regex.is_match(topic)
    }

    /// The anchored regex source of a parsed template.
    fn pattern(source: &str, parts: &[Part<'_>]) -> String {
        let mut pattern = String::with_capacity(source.len() * 8);
        pattern.push('^');
        for part in parts {
            match part {
                Part::Literal(text) => pattern.push_str(&regex::escape(text)),
                Part::Expression(expression) => expression.push_regex(&mut pattern),
            }
        }
        pattern.push('$');
        pattern
    }

    /// Parses `source` as a template and compiles its regex.
    fn compile(source: &str) -> Result<Template, SelectorError> {
        let parts = parse_template(source)?;
        let pattern = Self::pattern(source, &parts);

        let regex = RegexBuilder::new(&pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_CACHE_LIMIT)
            .build()
            .map_err(|err| match err {
                regex::Error::CompiledTooBig(limit) => SelectorError::TooComplex { limit },
                other => SelectorError::Compile(other.to_string()),
            })?;

        let literal_len = |part: Option<&Part<'_>>| match part {
            Some(Part::Literal(text)) => text.len(),
            _ => 0,
        };
        Ok(Template {
            source: source.into(),
            prefix_len: literal_len(parts.first()),
            suffix_len: literal_len(parts.last()),
            regex,
            cost: pattern.len(),
        })
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

/// Why a selector was rejected. Positions are byte offsets into the selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The selector is longer than [`MAX_SELECTOR_LEN`].
    #[error("selector is {len} bytes long, the limit is {max}")]
    TooLong {
        /// The selector's length in bytes.
        len: usize,
        /// The limit, [`MAX_SELECTOR_LEN`].
        max: usize,
    },
    /// The template has more than [`MAX_EXPRESSIONS`] expressions.
    #[error("template has more than {max} expressions")]
    TooManyExpressions {
        /// The limit, [`MAX_EXPRESSIONS`].
        max: usize,
    },
    /// The template has more than [`MAX_VARIABLES`] variables.
    #[error("template has more than {max} variables")]
    TooManyVariables {
        /// The limit, [`MAX_VARIABLES`].
        max: usize,
    },
    /// A `{` has no matching `}`.
    #[error("unclosed '{{' at byte {at}")]
    UnclosedBrace {
        /// Where the `{` is.
        at: usize,
    },
    /// A `}` in a template closes no expression.
    #[error("unmatched '}}' at byte {at}")]
    UnmatchedBrace {
        /// Where the `}` is.
        at: usize,
    },
    /// A `{` inside an expression.
    #[error("nested '{{' at byte {at}")]
    NestedBrace {
        /// Where the inner `{` is.
        at: usize,
    },
    /// An expression with nothing between its braces, `{}`.
    #[error("empty expression at byte {at}")]
    EmptyExpression {
        /// Where the `{` is.
        at: usize,
    },
    /// An operator RFC 6570 reserves for future use: `=`, `,`, `!`, `@` or `|`.
    #[error("reserved operator '{op}' at byte {at}")]
    ReservedOperator {
        /// The operator.
        op: char,
        /// Where it is.
        at: usize,
    },
    /// A variable name is missing or has a character other than ASCII
    /// letters, digits, `_`, `%XX` and single inner dots.
    #[error("invalid variable name at byte {at}")]
    InvalidVarname {
        /// Where the offending character (or missing name) is.
        at: usize,
    },
    /// A prefix modifier `:N` whose N is not 1 to 9999.
    #[error("invalid prefix length at byte {at}, expected 1 to 9999")]
    InvalidPrefix {
        /// Where the length should start or goes wrong.
        at: usize,
    },
    /// A character after a variable that is not `,` or `}`.
    #[error("unexpected '{found}' at byte {at}, expected ',' or '}}'")]
    UnexpectedChar {
        /// The character.
        found: char,
        /// Where it is.
        at: usize,
    },
    /// The compiled regex would exceed [`REGEX_SIZE_LIMIT`].
    #[error("template is too complex: its regex exceeds {limit} bytes")]
    TooComplex {
        /// The limit the regex crate reported.
        limit: usize,
    },
    /// The regex crate rejected the pattern built from a valid template.
    /// This is a bug in this module.
    #[error("cannot compile template: {0}")]
    Compile(String),
    /// A URL Pattern that does not parse, or that this hub cannot match.
    #[error("invalid URL Pattern: {0}")]
    InvalidUrlPattern(String),
}

/// One piece of a parsed template.
enum Part<'a> {
    /// Text outside braces, matched verbatim.
    Literal(&'a str),
    /// A `{...}` expression.
    Expression(Expression<'a>),
}

/// A parsed `{op var,var,...}` expression.
struct Expression<'a> {
    op: Operator,
    vars: Vec<VarSpec<'a>>,
}

/// One variable of an expression.
struct VarSpec<'a> {
    /// The name as written; named operators emit it verbatim.
    name: &'a str,
    /// `var*`: the value may be a list or associative array whose items are
    /// joined with the operator's separator. A prefix modifier `:N` is parsed
    /// and otherwise ignored (see the module docs).
    explode: bool,
}

/// The RFC 6570 expression operators (appendix A's table).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// `{var}`
    Simple,
    /// `{+var}`
    Reserved,
    /// `{#var}`
    Fragment,
    /// `{.var}`
    Label,
    /// `{/var}`
    Path,
    /// `{;var}`
    Param,
    /// `{?var}`
    Query,
    /// `{&var}`
    QueryContinuation,
}

/// Unreserved characters, as the inside of a regex character class.
const CLASS_UNRESERVED: &str = r"A-Za-z0-9\-._\~";

/// Reserved characters, as the inside of a regex character class.
const CLASS_RESERVED: &str = r":/?\#\[\]@!$\&'()*+,;=";

/// One percent-encoded byte.
const PCT_ENCODED: &str = "%[0-9A-Fa-f]{2}";

impl Operator {
    /// The string put before the first defined variable.
    fn first(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved => "",
            Operator::Fragment => "#",
            Operator::Label => ".",
            Operator::Path => "/",
            Operator::Param => ";",
            Operator::Query => "?",
            Operator::QueryContinuation => "&",
        }
    }

    /// The string put between defined variables and exploded items.
    fn sep(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved | Operator::Fragment => ",",
            Operator::Label => ".",
            Operator::Path => "/",
            Operator::Param => ";",
            Operator::Query | Operator::QueryContinuation => "&",
        }
    }

    /// Whether values are written as `name=value`.
    fn named(self) -> bool {
        matches!(
            self,
            Operator::Param | Operator::Query | Operator::QueryContinuation
        )
    }

    /// Whether reserved characters pass through unencoded.
    fn allows_reserved(self) -> bool {
        matches!(self, Operator::Reserved | Operator::Fragment)
    }

    /// Regex for a run of value characters of this operator, plus the
    /// characters in `extra` (the inside of a character class).
    fn value_chars(self, extra: &str) -> String {
        let reserved = if self.allows_reserved() {
            CLASS_RESERVED
        } else {
            ""
        };
        format!("(?:[{CLASS_UNRESERVED}{reserved}{extra}]|{PCT_ENCODED})*")
    }
}

impl Expression<'_> {
    /// Appends the regex matching every expansion of this expression.
    fn push_regex(&self, out: &mut String) {
        let op = self.op;
        match op {
            // Every value here is a run over a character set that contains
            // the `,` separator, so any number of them joined by `,` is again
            // such a run: one character class covers all variables.
            Operator::Simple | Operator::Reserved | Operator::Fragment => {
                let extra = if self.vars.iter().any(|var| var.explode) {
                    ",="
                } else {
                    ","
                };
                let values = op.value_chars(extra);
                if op == Operator::Fragment {
                    push_optional(out, op.first(), &values);
                } else {
                    out.push_str(&values);
                }
            }
            // The first defined variable is introduced by the same string as
            // every later one, so each variable is `(?:sep part)?` in order.
            Operator::Label | Operator::Path | Operator::Param | Operator::QueryContinuation => {
                for var in &self.vars {
                    push_optional(out, op.sep(), &self.var_regex(var));
                }
            }
            // `?` before the first defined variable, `&` before the others.
            // With M(1) = P(1) and M(k) = (?:M(k-1)(?:&P(k))?|P(k)), M(k)
            // matches the defined ones among variables 1..=k joined by `&`
            // (either some before k are defined, or k alone is), and the
            // regex stays linear in the number of variables.
            Operator::Query => {
                let mut joined = String::new();
                for (k, var) in self.vars.iter().enumerate() {
                    let part = self.var_regex(var);
                    if k == 0 {
                        joined = part;
                    } else {
                        let mut next = String::with_capacity(joined.len() + 2 * part.len() + 16);
                        next.push_str("(?:");
                        next.push_str(&joined);
                        push_optional(&mut next, op.sep(), &part);
                        next.push('|');
                        next.push_str(&part);
                        next.push(')');
                        joined = next;
                    }
                }
                push_optional(out, op.first(), &joined);
            }
        }
    }

    /// Regex for one defined variable's expansion, without the separator or
    /// first string before it. Only called for operators whose variables are
    /// matched one by one.
    fn var_regex(&self, var: &VarSpec<'_>) -> String {
        let op = self.op;
        if !op.named() {
            // Label and Path. A list joins with `,` unexploded; exploded, a
            // list joins with the separator and an associative array with
            // `=` and the separator.
            let extra = if var.explode {
                format!("{}=", op.sep())
            } else {
                ",".to_owned()
            };
            return op.value_chars(&extra);
        }
        // `;name` for an empty value, `?name=` and `&name=`.
        let assign = |value: String| {
            if op == Operator::Param {
                format!("(?:={value})?")
            } else {
                format!("={value}")
            }
        };
        if var.explode {
            // Exploded, each list item is named after the variable and each
            // associative array entry after its key, so any key will do.
            let value = op.value_chars("");
            let pair = format!("{value}{}", assign(value.clone()));
            format!("{pair}(?:{}{pair})*", regex::escape(op.sep()))
        } else {
            format!("{}{}", regex::escape(var.name), assign(op.value_chars(",")))
        }
    }
}

/// Appends `(?:sep inner)?`.
fn push_optional(out: &mut String, sep: &str, inner: &str) {
    out.push_str("(?:");
    out.push_str(&regex::escape(sep));
    out.push_str(inner);
    out.push_str(")?");
}

/// Splits a template into literals and expressions.
fn parse_template(source: &str) -> Result<Vec<Part<'_>>, SelectorError> {
    let bytes = source.as_bytes();
    let mut parts = Vec::new();
    let mut expressions = 0;
    let mut variables = 0;
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                if literal_start < i {
                    parts.push(Part::Literal(&source[literal_start..i]));
                }
                let close = find_close(bytes, i)?;
                let expression = parse_expression(source, i, close)?;
                expressions += 1;
                if expressions > MAX_EXPRESSIONS {
                    return Err(SelectorError::TooManyExpressions {
                        max: MAX_EXPRESSIONS,
                    });
                }
                variables += expression.vars.len();
                if variables > MAX_VARIABLES {
                    return Err(SelectorError::TooManyVariables { max: MAX_VARIABLES });
                }
                parts.push(Part::Expression(expression));
                i = close + 1;
                literal_start = i;
            }
            b'}' => return Err(SelectorError::UnmatchedBrace { at: i }),
            _ => i += 1,
        }
    }
    if literal_start < bytes.len() {
        parts.push(Part::Literal(&source[literal_start..]));
    }
    Ok(parts)
}

/// Finds the `}` closing the `{` at `open`.
fn find_close(bytes: &[u8], open: usize) -> Result<usize, SelectorError> {
    for (at, &byte) in bytes.iter().enumerate().skip(open + 1) {
        match byte {
            b'}' => return Ok(at),
            b'{' => return Err(SelectorError::NestedBrace { at }),
            _ => {}
        }
    }
    Err(SelectorError::UnclosedBrace { at: open })
}

/// Parses the expression between the braces at `open` and `close`.
fn parse_expression(
    source: &str,
    open: usize,
    close: usize,
) -> Result<Expression<'_>, SelectorError> {
    let bytes = source.as_bytes();
    let mut at = open + 1;
    if at == close {
        return Err(SelectorError::EmptyExpression { at: open });
    }
    let op = match bytes[at] {
        b'+' => Operator::Reserved,
        b'#' => Operator::Fragment,
        b'.' => Operator::Label,
        b'/' => Operator::Path,
        b';' => Operator::Param,
        b'?' => Operator::Query,
        b'&' => Operator::QueryContinuation,
        op @ (b'=' | b',' | b'!' | b'@' | b'|') => {
            return Err(SelectorError::ReservedOperator {
                op: char::from(op),
                at,
            });
        }
        _ => Operator::Simple,
    };
    if op != Operator::Simple {
        at += 1;
    }

    let mut vars = Vec::new();
    loop {
        let name_start = at;
        at = parse_varname(bytes, at, close)?;
        let name = &source[name_start..at];
        let mut explode = false;
        match bytes[at] {
            b'*' => {
                explode = true;
                at += 1;
            }
            b':' => at = parse_prefix(bytes, at + 1, close)?,
            _ => {}
        }
        vars.push(VarSpec { name, explode });
        match bytes[at] {
            b'}' => return Ok(Expression { op, vars }),
            b',' => at += 1,
            _ => {
                return Err(SelectorError::UnexpectedChar {
                    found: source[at..].chars().next().unwrap_or('\u{fffd}'),
                    at,
                });
            }
        }
    }
}

/// Parses `varname = varchar *( ["."] varchar )` starting at `at`, where
/// `varchar = ALPHA / DIGIT / "_" / pct-encoded`, and returns where it ends.
fn parse_varname(bytes: &[u8], mut at: usize, close: usize) -> Result<usize, SelectorError> {
    loop {
        // A varchar is required here: at the start, and after a dot.
        at = parse_varchar(bytes, at, close).ok_or(SelectorError::InvalidVarname { at })?;
        loop {
            match bytes[at] {
                b'.' => {
                    at += 1;
                    break;
                }
                _ => match parse_varchar(bytes, at, close) {
                    Some(next) => at = next,
                    None => return Ok(at),
                },
            }
        }
    }
}

/// Parses one varchar at `at`, returning where it ends.
fn parse_varchar(bytes: &[u8], at: usize, close: usize) -> Option<usize> {
    match bytes[at] {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => Some(at + 1),
        b'%' if at + 2 < close
            && bytes[at + 1].is_ascii_hexdigit()
            && bytes[at + 2].is_ascii_hexdigit() =>
        {
            Some(at + 3)
        }
        _ => None,
    }
}

/// Parses the `N` of a `:N` prefix modifier (`%x31-39 0*3DIGIT`) starting at
/// `at`, returning where it ends.
fn parse_prefix(bytes: &[u8], at: usize, close: usize) -> Result<usize, SelectorError> {
    if !matches!(bytes[at], b'1'..=b'9') {
        return Err(SelectorError::InvalidPrefix { at });
    }
    let digits = bytes[at..close]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits > 4 {
        return Err(SelectorError::InvalidPrefix { at: at + 4 });
    }
    Ok(at + digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(selector: &str, topic: &str, expected: bool) {
        let parsed = Selector::parse(selector)
            .unwrap_or_else(|err| panic!("{selector:?} does not parse: {err}"));
        assert_eq!(
            parsed.matches(topic),
            expected,
            "{selector:?} matching {topic:?}"
        );
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            // Exact.
            (
                "https://example.com/books/1",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/1",
                "https://example.com/books/2",
                false,
            ),
            (
                "https://example.com/books/1",
                "https://example.com/books/1/",
                false,
            ),
            ("", "", true),
            ("", "x", false),
            ("a}b", "a}b", true),
            ("https://example.com/*", "https://example.com/x", false),
            ("https://example.com/*", "https://example.com/*", true),
            // Any.
            ("*", "https://example.com/books/1", true),
            ("*", "", true),
            ("*", "{weird}", true),
            // Simple.
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/abc-1_2.3~4",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1/reviews",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "http://example.com/books/1",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/a%20b",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/a%2",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/a b",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/caf%C3%A9",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/café",
                false,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/1,2",
                true,
            ),
            (
                "https://example.com/books/{id}",
                "https://example.com/books/a?b",
                false,
            ),
            ("/books/{id}/reviews/{rid}", "/books/1/reviews/2", true),
            ("/books/{id}/reviews/{rid}", "/books/1/reviews", false),
            ("/books/{id}/reviews/{rid}", "/books/1/2/reviews/3", false),
            ("{x,y}", "1,2", true),
            ("{x,y}", "", true),
            ("{x,y}", "1/2", false),
            ("{x:3}", "abcdef", true),
            ("{x*}", "a=1,b=2", true),
            // Reserved.
            (
                "https://example.com/{+path}",
                "https://example.com/a/b/c",
                true,
            ),
            (
                "https://example.com/{+path}",
                "https://example.com/a/b?c=d#e",
                true,
            ),
            ("https://example.com/{+path}", "https://example.com/", true),
            (
                "https://example.com/{+path}",
                "https://example.com/a b",
                false,
            ),
            ("{+base}/books", "https://example.com/books", true),
            ("{+base}/books", "https://example.com/authors", false),
            // Fragment.
            ("/page{#frag}", "/page", true),
            ("/page{#frag}", "/page#top", true),
            ("/page{#frag}", "/page#", true),
            ("/page{#frag}", "/page#a/b,c", true),
            ("/page{#frag}", "/pagetop", false),
            ("/page{#frag}", "/page##", true),
            // Label.
            ("/file{.ext}", "/file", true),
            ("/file{.ext}", "/file.json", true),
            ("/file{.ext}", "/file.tar.gz", true),
            ("/file{.ext}", "/filejson", false),
            ("/file{.ext}", "/file.a/b", false),
            ("/file{.a,b}", "/file.x.y", true),
            // Path segments.
            ("/users{/id}", "/users", true),
            ("/users{/id}", "/users/42", true),
            ("/users{/id}", "/users/42/x", false),
            ("/users{/id}", "/users42", false),
            ("/users{/id,sub}", "/users/42/x", true),
            ("/users{/id,sub}", "/users/42/x/y", false),
            ("{/segs*}", "/a/b/c", true),
            ("{/segs*}", "", true),
            ("{/segs*}", "a/b", false),
            ("/files{/segs*}/meta", "/files/a/b/meta", true),
            // Path parameters.
            ("/map{;x,y}", "/map", true),
            ("/map{;x,y}", "/map;x=1;y=2", true),
            ("/map{;x,y}", "/map;x", true),
            ("/map{;x,y}", "/map;y=2", true),
            ("/map{;x,y}", "/map;y=2;x=1", false),
            ("/map{;x,y}", "/map;z=1", false),
            ("/map{;x,y}", "/map;x=1,2", true),
            ("/map{;x*}", "/map;a=1;b", true),
            // Query.
            ("/search{?q,lang}", "/search", true),
            ("/search{?q,lang}", "/search?q=x", true),
            ("/search{?q,lang}", "/search?q=x&lang=en", true),
            ("/search{?q,lang}", "/search?lang=en", true),
            ("/search{?q,lang}", "/search?q=", true),
            ("/search{?q,lang}", "/search?q=a%20b", true),
            ("/search{?q,lang}", "/search?lang=en&q=x", false),
            ("/search{?q,lang}", "/search?q", false),
            ("/search{?q,lang}", "/search?", false),
            ("/search{?q,lang}", "/search&q=x", false),
            ("/search{?q,lang}", "/search?q=x&q=y", false),
            ("/search{?q,lang}", "/search?other=1", false),
            ("/search{?q,lang}", "/search?q=x&lang=en&x=1", false),
            ("/search{?params*}", "/search?a=1&b=2", true),
            ("/search{?q}{&lang}", "/search?q=x&lang=en", true),
            ("/search?fixed=1{&lang}", "/search?fixed=1&lang=en", true),
            ("/search?fixed=1{&lang}", "/search?fixed=1", true),
            ("/search?fixed=1{&lang}", "/search?fixed=1&q=x", false),
            // Regex metacharacters in literals are literal.
            ("/a.b/{x}", "/a.b/1", true),
            ("/a.b/{x}", "/aXb/1", false),
            ("/a?b/{x}", "/a?b/1", true),
            ("/a?b/{x}", "/b/1", false),
            ("/a+b/{x}", "/a+b/1", true),
            ("/a+b/{x}", "/aab/1", false),
            ("/(a)|[b]$^/{x}", "/(a)|[b]$^/1", true),
            ("/(a)|[b]$^/{x}", "/a/1", false),
            ("/a\\d/{x}", "/a\\d/1", true),
            ("/a\\d/{x}", "/a1/1", false),
            // A template matches its own source text.
            (
                "https://example.com/books/{id}",
                "https://example.com/books/{id}",
                true,
            ),
            ("/search{?q,lang}", "/search{?q,lang}", true),
            ("/search{?q,lang}", "/search{?q}", false),
            // Non-ASCII literals.
            ("/livres/é/{id}", "/livres/é/1", true),
            ("/livres/é/{id}", "/livres/e/1", false),
        ];
        for &(selector, topic, expected) in cases {
            check(selector, topic, expected);
        }
    }

    #[track_caller]
    fn check_err(selector: &str, expected: &str) {
        match Selector::parse(selector) {
            Ok(parsed) => panic!("{selector:?} parsed as {parsed:?}, expected {expected:?}"),
            Err(err) => assert_eq!(err.to_string(), expected, "{selector:?}"),
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("{", "unclosed '{' at byte 0"),
            ("https://example.com/{id", "unclosed '{' at byte 20"),
            ("/a/{id}/{", "unclosed '{' at byte 8"),
            ("a}b{x}", "unmatched '}' at byte 1"),
            ("{x}}", "unmatched '}' at byte 3"),
            ("{a{b}}", "nested '{' at byte 2"),
            ("{}", "empty expression at byte 0"),
            ("/a/{}", "empty expression at byte 3"),
            ("{!x}", "reserved operator '!' at byte 1"),
            ("{=x}", "reserved operator '=' at byte 1"),
            ("{,x}", "reserved operator ',' at byte 1"),
            ("{@x}", "reserved operator '@' at byte 1"),
            ("{|x}", "reserved operator '|' at byte 1"),
            ("{+}", "invalid variable name at byte 2"),
            ("{x,}", "invalid variable name at byte 3"),
            ("{x,,y}", "invalid variable name at byte 3"),
            ("{ x}", "invalid variable name at byte 1"),
            ("{$x}", "invalid variable name at byte 1"),
            ("{é}", "invalid variable name at byte 1"),
            ("{.}", "invalid variable name at byte 2"),
            ("{a.}", "invalid variable name at byte 3"),
            ("{a..b}", "invalid variable name at byte 3"),
            ("{%2}", "invalid variable name at byte 1"),
            ("{%zz}", "invalid variable name at byte 1"),
            ("{x y}", "unexpected ' ' at byte 2, expected ',' or '}'"),
            ("{x-y}", "unexpected '-' at byte 2, expected ',' or '}'"),
            ("{xé}", "unexpected 'é' at byte 2, expected ',' or '}'"),
            ("{x**}", "unexpected '*' at byte 3, expected ',' or '}'"),
            ("{x*:3}", "unexpected ':' at byte 3, expected ',' or '}'"),
            ("{x:3*}", "unexpected '*' at byte 4, expected ',' or '}'"),
            (
                "{x:}",
                "invalid prefix length at byte 3, expected 1 to 9999",
            ),
            (
                "{x:0}",
                "invalid prefix length at byte 3, expected 1 to 9999",
            ),
            (
                "{x:a}",
                "invalid prefix length at byte 3, expected 1 to 9999",
            ),
            (
                "{x:10000}",
                "invalid prefix length at byte 7, expected 1 to 9999",
            ),
        ];
        for &(selector, expected) in cases {
            check_err(selector, expected);
        }
    }

    #[test]
    fn valid_varspecs() {
        for selector in [
            "{x:1}",
            "{x:9999}",
            "{a.b.c}",
            "{A_1%2F}",
            "{_}",
            "{x,y*,z:3}",
            "{+x}{#y}{.z}{/w}{;v}{?u}{&t}",
        ] {
            assert!(
                matches!(Selector::parse(selector), Ok(Selector::Template(_))),
                "{selector:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let long = format!("/{}", "a".repeat(MAX_SELECTOR_LEN));
        check_err(&long, "selector is 2049 bytes long, the limit is 2048");
        let long_template = format!("{long}{{x}}");
        check_err(
            &long_template,
            "selector is 2052 bytes long, the limit is 2048",
        );
        let at_limit = format!("{}{{x}}", "a".repeat(MAX_SELECTOR_LEN - 3));
        check(
            &at_limit,
            &format!("{}1", "a".repeat(MAX_SELECTOR_LEN - 3)),
            true,
        );

        let many_expressions = "{x}".repeat(MAX_EXPRESSIONS + 1);
        check_err(&many_expressions, "template has more than 64 expressions");
        check(&"{x}".repeat(MAX_EXPRESSIONS), "abc", true);

        let names: Vec<String> = (0..=MAX_VARIABLES).map(|i| format!("v{i}")).collect();
        check_err(
            &format!("{{{}}}", names.join(",")),
            "template has more than 64 variables",
        );
        // The widest query expression the limits allow still compiles.
        let widest = format!("/q{{?{}}}", names[..MAX_VARIABLES].join(","));
        check(&widest, "/q?v0=1&v63=2", true);
        check(&widest, "/q?v63=2&v0=1", false);
        let widest_exploded = format!("/q{{?{}*}}", names[..MAX_VARIABLES].join("*,"));
        assert!(matches!(
            Selector::parse(&widest_exploded),
            Ok(_) | Err(SelectorError::TooComplex { .. })
        ));
    }

    #[test]
    fn accessors() {
        let any = Selector::parse("*").unwrap();
        let exact = Selector::parse("/books/1").unwrap();
        let template = Selector::parse("/books/{id}").unwrap();
        assert!(matches!(any, Selector::Any));
        assert!(matches!(exact, Selector::Exact(_)));
        assert!(matches!(template, Selector::Template(_)));
        assert_eq!(any.as_str(), "*");
        assert_eq!(exact.as_str(), "/books/1");
        assert_eq!(template.as_str(), "/books/{id}");
        assert!(any.is_pattern());
        assert!(!exact.is_pattern());
        assert!(template.is_pattern());
        assert_eq!(template.to_string(), "/books/{id}");
        assert_eq!("/books/{id}".parse::<Selector>().unwrap(), template);
        assert_ne!(Selector::Exact("*".into()), any);
        assert_eq!(
            format!("{template:?}"),
            r#"Template(Template("/books/{id}"))"#
        );
    }

    #[test]
    fn cost_of_agrees_with_parse() {
        for selector in [
            "*",
            "/books/1",
            "/books/{id}",
            "https://example.com/books/{id}/reviews{/rid}{?page,size}",
            "{?a*,b*,c}{+d}",
        ] {
            assert_eq!(
                Selector::cost_of(selector),
                Selector::parse(selector).map(|s| s.cost()),
                "{selector}"
            );
        }
        assert!(Selector::parse("/a/{b}").unwrap().cost() > 0);
        assert_eq!(
            Selector::cost_of("/a/{b"),
            Err(SelectorError::UnclosedBrace { at: 3 })
        );
    }

    /// Compiling many distinct templates, as a busy hub does, stays cheap.
    #[test]
    fn compiles_many_templates() {
        let selectors: Vec<Selector> = (0..10_000)
            .map(|i| {
                Selector::parse(&format!(
                    "https://example.com/tenants/{i}/books/{{id}}/reviews{{/rid}}{{?page,size}}"
                ))
                .unwrap()
            })
            .collect();
        assert!(selectors[1234].matches("https://example.com/tenants/1234/books/7/reviews/3"));
        assert!(!selectors[1234].matches("https://example.com/tenants/1235/books/7/reviews/3"));
    }

    /// An RFC 6570 expander (appendix A), to check that every expansion of a
    /// random template is matched.
    mod expand {
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        pub(super) enum Value {
            Undefined,
            Str(String),
            List(Vec<String>),
            Assoc(Vec<(String, String)>),
        }

        #[derive(Debug, Clone)]
        pub(super) struct Var {
            pub(super) name: String,
            pub(super) modifier: Modifier,
            pub(super) value: Value,
        }

        #[derive(Debug, Clone, Copy)]
        pub(super) enum Modifier {
            None,
            Prefix(usize),
            Explode,
        }

        #[derive(Debug, Clone)]
        pub(super) enum Piece {
            Literal(String),
            Expression(char, Vec<Var>),
        }

        fn encode(s: &str, allow_reserved: bool, out: &mut String) {
            let bytes = s.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let b = bytes[i];
                let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
                let reserved = b":/?#[]@!$&'()*+,;=".contains(&b);
                let pct = allow_reserved
                    && b == b'%'
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
                if unreserved || (allow_reserved && reserved) || pct {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
                i += 1;
            }
        }

        /// Expands one expression.
        fn expand_expression(op: char, vars: &[Var], out: &mut String) {
            let (first, sep, named, ifemp, allow) = match op {
                '+' => ("", ",", false, "", true),
                '#' => ("#", ",", false, "", true),
                '.' => (".", ".", false, "", false),
                '/' => ("/", "/", false, "", false),
                ';' => (";", ";", true, "", false),
                '?' => ("?", "&", true, "=", false),
                '&' => ("&", "&", true, "=", false),
                _ => ("", ",", false, "", false),
            };
            let mut any = false;
            for var in vars {
                let defined = match &var.value {
                    Value::Undefined => false,
                    Value::Str(_) => true,
                    Value::List(items) => !items.is_empty(),
                    Value::Assoc(entries) => !entries.is_empty(),
                };
                if !defined {
                    continue;
                }
                out.push_str(if any { sep } else { first });
                any = true;
                let explode = matches!(var.modifier, Modifier::Explode);
                match &var.value {
                    Value::Undefined => unreachable!(),
                    Value::Str(s) => {
                        if named {
                            out.push_str(&var.name);
                            if s.is_empty() {
                                out.push_str(ifemp);
                                continue;
                            }
                            out.push('=');
                        }
                        let s: String = match var.modifier {
                            Modifier::Prefix(n) => s.chars().take(n).collect(),
                            _ => s.clone(),
                        };
                        encode(&s, allow, out);
                    }
                    Value::List(items) if !explode => {
                        if named {
                            out.push_str(&var.name);
                            out.push('=');
                        }
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            encode(item, allow, out);
                        }
                    }
                    Value::Assoc(entries) if !explode => {
                        if named {
                            out.push_str(&var.name);
                            out.push('=');
                        }
                        for (i, (k, v)) in entries.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            encode(k, allow, out);
                            out.push(',');
                            encode(v, allow, out);
                        }
                    }
                    Value::List(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push_str(sep);
                            }
                            if named {
                                out.push_str(&var.name);
                                if item.is_empty() {
                                    out.push_str(ifemp);
                                    continue;
                                }
                                out.push('=');
                            }
                            encode(item, allow, out);
                        }
                    }
                    Value::Assoc(entries) => {
                        for (i, (k, v)) in entries.iter().enumerate() {
                            if i > 0 {
                                out.push_str(sep);
                            }
                            encode(k, allow, out);
                            if named && v.is_empty() {
                                out.push_str(ifemp);
                                continue;
                            }
                            out.push('=');
                            encode(v, allow, out);
                        }
                    }
                }
            }
        }

        /// The template's source text and one expansion of it.
        pub(super) fn render(pieces: &[Piece]) -> (String, String) {
            let mut source = String::new();
            let mut topic = String::new();
            for piece in pieces {
                match piece {
                    Piece::Literal(text) => {
                        source.push_str(text);
                        topic.push_str(text);
                    }
                    Piece::Expression(op, vars) => {
                        source.push('{');
                        if *op != ' ' {
                            source.push(*op);
                        }
                        for (i, var) in vars.iter().enumerate() {
                            if i > 0 {
                                source.push(',');
                            }
                            source.push_str(&var.name);
                            match var.modifier {
                                Modifier::None => {}
                                Modifier::Prefix(n) => source.push_str(&format!(":{n}")),
                                Modifier::Explode => source.push('*'),
                            }
                        }
                        source.push('}');
                        expand_expression(*op, vars, &mut topic);
                    }
                }
            }
            (source, topic)
        }

        fn value_string() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    "a", "Z", "0", "-", ".", "_", "~", "/", "?", "#", "&", "=", ",", ";", ":", "%",
                    "%41", " ", "é", "+", "[", "!", "'",
                ]),
                0..5,
            )
            .prop_map(|parts| parts.concat())
        }

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Undefined),
                value_string().prop_map(Value::Str),
                prop::collection::vec(value_string(), 0..3).prop_map(Value::List),
                prop::collection::vec((value_string(), value_string()), 0..3)
                    .prop_map(Value::Assoc),
            ]
        }

        fn var() -> impl Strategy<Value = Var> {
            let name = prop::sample::select(vec!["x", "y", "id", "a.b", "v_1", "%41"]);
            let modifier = prop_oneof![
                Just(Modifier::None),
                (1usize..4).prop_map(Modifier::Prefix),
                Just(Modifier::Explode),
            ];
            (name, modifier, value()).prop_map(|(name, modifier, value)| {
                // A prefix applies to strings only.
                let modifier = match (&value, modifier) {
                    (Value::List(_) | Value::Assoc(_), Modifier::Prefix(_)) => Modifier::None,
                    (_, modifier) => modifier,
                };
                Var {
                    name: name.to_owned(),
                    modifier,
                    value,
                }
            })
        }

        pub(super) fn pieces() -> impl Strategy<Value = Vec<Piece>> {
            let literal = prop::sample::select(vec![
                "/",
                "/books/",
                "https://example.com/",
                ".",
                "?a=1",
                "(x)",
                "é",
                "+",
            ])
            .prop_map(|s| Piece::Literal(s.to_owned()));
            let op = prop::sample::select(vec![' ', '+', '#', '.', '/', ';', '?', '&']);
            let expression = (op, prop::collection::vec(var(), 1..4))
                .prop_map(|(op, vars)| Piece::Expression(op, vars));
            prop::collection::vec(prop_oneof![literal, expression], 1..5)
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(
            selector in "[{}a,.:*%0-9+#/;?&!=é ]{0,24}",
            topic in "[{}a,.:*%0-9+#/;?&!=é ]{0,24}",
        ) {
            if let Ok(parsed) = Selector::parse(&selector) {
                parsed.matches(&topic);
                proptest::prop_assert!(parsed.matches(&selector));
            }
        }

        #[test]
        fn every_expansion_matches(pieces in expand::pieces()) {
            let (source, topic) = expand::render(&pieces);
            let selector = Selector::parse(&source).unwrap();
            proptest::prop_assert!(
                selector.matches(&topic),
                "{source:?} does not match its expansion {topic:?}"
            );
        }
    }
}
