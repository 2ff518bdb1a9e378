//! Where a request's credentials are, for Mercure and for the app alike: one cookie parser,
//! one bearer parser.
//!
//! - Mercure takes a JWT from `Authorization: Bearer`, else the `authorization` query
//!   parameter (an `EventSource` cannot set headers), else the
//!   `__Secure-mercure_access_token` cookie, else the `mercureAuthorization` cookie:
//!   [`mercure_token`]. Exactly one is used; the others are ignored.
//! - The app takes an API token from `Authorization: Bearer`, else the session cookie:
//!   [`app_credentials`].
//!
//! Finding credentials checks nothing: `auth` verifies JWTs, the app's accounts the rest.

use axum::http::{HeaderMap, header};
use herald_app::accounts::{Credentials, SESSION_COOKIE};

use crate::error::ApiError;

/// The cookie 0.x Mercure clients use to carry the token.
pub const MERCURE_COOKIE: &str = "mercureAuthorization";

/// The cookie 1.0 Mercure clients use to carry the token.
pub const SECURE_MERCURE_COOKIE: &str = "__Secure-mercure_access_token";

/// Where a Mercure token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// The `__Secure-mercure_access_token` or `mercureAuthorization` cookie.
    Cookie,
    /// The `authorization` query parameter.
    Query,
}

/// Why an `Authorization` header holds no bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBearer {
    /// The header is not visible ASCII.
    NotText,
    /// Another scheme (`Basic …`), or none.
    OtherScheme,
}

/// The value of cookie `name`, if the request carries it. Every `Cookie` header counts,
/// pairs are split on `;`, the first pair named `name` wins, and a value wrapped in double
/// quotes (RFC 6265's `DQUOTE *cookie-octet DQUOTE`) is taken without them.
///
/// Pairs are split as bytes: another cookie of the host holding UTF-8 (browsers send one
/// header with every cookie) must not hide this one. A value that is not UTF-8 is none.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let (_, value) = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            Some((&pair[..eq], &pair[eq + 1..]))
        })
        .find(|(key, _)| *key == name.as_bytes())?;
    let value = std::str::from_utf8(value).ok()?;
    Some(
        value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value),
    )
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, as
/// HTTP's schemes are), trimmed; it may be empty. `Ok(None)` without the header.
///
/// # Errors
///
/// [`NotBearer`] when the header is there but holds no bearer token.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, NotBearer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| NotBearer::NotText)?;
    const SCHEME: &str = "bearer ";
    value
        .get(..SCHEME.len())
        .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
        .map(|_| Some(value[SCHEME.len()..].trim()))
        .ok_or(NotBearer::OtherScheme)
}

/// Finds a Mercure request's token: the bearer header, else `query_token` (the
/// `authorization` query parameter), else the `__Secure-mercure_access_token` cookie, else
/// the `mercureAuthorization` cookie. Empty values count as absent.
///
/// # Errors
///
/// 401 when an `Authorization` header is present but holds no bearer token: a client that
/// meant to authenticate must not silently become anonymous.
pub fn mercure_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<Option<(&'a str, TokenSource)>, ApiError> {
    match bearer(headers) {
        Ok(None) => {}
        Ok(Some(token)) if !token.is_empty() => return Ok(Some((token, TokenSource::Header))),
        Ok(Some(_)) | Err(NotBearer::OtherScheme) => {
            return Err(ApiError::invalid_token(
                "the Authorization header must be \"Bearer <JWT>\"",
            ));
        }
        Err(NotBearer::NotText) => {
            return Err(ApiError::invalid_token(
                "the Authorization header is not valid text",
            ));
        }
    }
    if let Some(token) = query_token.filter(|t| !t.is_empty()) {
        return Ok(Some((token, TokenSource::Query)));
    }
    Ok([SECURE_MERCURE_COOKIE, MERCURE_COOKIE]
        .into_iter()
        .find_map(|name| cookie(headers, name).filter(|t| !t.is_empty()))
        .map(|t| (t, TokenSource::Cookie)))
}

/// The app's credentials in a request: a bearer token, else the session cookie. An
/// `Authorization` header without a bearer token is no credential (a browser's basic
/// authentication in front of Herald, say), so the session cookie still counts.
pub fn app_credentials(headers: &HeaderMap) -> Option<Credentials<'_>> {
    if let Ok(Some(token)) = bearer(headers) {
        return Some(Credentials::Token(token));
    }
    cookie(headers, SESSION_COOKIE).map(Credentials::Session)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static [u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn cookies_follow_rfc_6265() {
        let check = |cookies: &[&'static [u8]], expected: Option<&str>| {
            let map = headers(
                &cookies
                    .iter()
                    .map(|c| (header::COOKIE, *c))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(cookie(&map, "name"), expected, "{cookies:?}");
        };
        check(&[b"name=value"], Some("value"));
        check(&[b"a=b; name=value; c=d"], Some("value"));
        check(&[b"a=b", b"name=second"], Some("second"));
        check(&[b"name=\"quoted\""], Some("quoted"));
        check(&[b"name=\"\""], Some(""));
        // Only a wrapping pair of quotes goes; a lone one is part of the value.
        check(&[b"name=\"open"], Some("\"open"));
        check(&[b"name=in\"side"], Some("in\"side"));
        check(&[b"name="], Some(""));
        check(&[b"other=value"], None);
        check(&[b"names=value; xname=value"], None);
        // Another cookie's UTF-8 does not hide this one; this one's own bytes must be text.
        check(&[b"x=\xc3\xa9; name=value"], Some("value"));
        check(&[b"x=\xff; name=value"], Some("value"));
        check(&[b"name=\xff"], None);
        check(&[b"name=first; name=second"], Some("first"));
        check(&[], None);
    }

    #[test]
    fn bearer_tokens() {
        let check = |value: &'static [u8], expected: Result<Option<&str>, NotBearer>| {
            let map = headers(&[(header::AUTHORIZATION, value)]);
            assert_eq!(bearer(&map), expected, "{value:?}");
        };
        check(b"Bearer abc", Ok(Some("abc")));
        check(b"bearer abc", Ok(Some("abc")));
        check(b"BEARER abc", Ok(Some("abc")));
        check(b"bEaReR abc", Ok(Some("abc")));
        check(b"Bearerabc", Err(NotBearer::OtherScheme));
        check(b"Bear", Err(NotBearer::OtherScheme));
        check(b"Bearer  abc ", Ok(Some("abc")));
        check(b"Bearer ", Ok(Some("")));
        check(b"Basic abc", Err(NotBearer::OtherScheme));
        check(b"Bearer\tabc", Err(NotBearer::OtherScheme));
        check(b"Bearer \xff", Err(NotBearer::NotText));
        assert_eq!(bearer(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn mercure_tokens_are_found_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; mercureAuthorization=cookie-token"),
        );
        // The query parameter comes before the cookies.
        assert_eq!(
            mercure_token(&headers, Some("q")).unwrap(),
            Some(("q", TokenSource::Query))
        );
        assert_eq!(
            mercure_token(&headers, None).unwrap(),
            Some(("cookie-token", TokenSource::Cookie))
        );
        assert_eq!(
            mercure_token(&headers, Some("")).unwrap(),
            Some(("cookie-token", TokenSource::Cookie))
        );
        // The 1.0 cookie comes before the 0.x one, wherever it is in the header.
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("mercureAuthorization=old; __Secure-mercure_access_token=new"),
        );
        assert_eq!(
            mercure_token(&headers, None).unwrap(),
            Some(("new", TokenSource::Cookie))
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer header-token"),
        );
        assert_eq!(
            mercure_token(&headers, Some("q")).unwrap(),
            Some(("header-token", TokenSource::Header))
        );
        assert_eq!(
            mercure_token(&HeaderMap::new(), Some("q")).unwrap(),
            Some(("q", TokenSource::Query))
        );
        assert_eq!(mercure_token(&HeaderMap::new(), None).unwrap(), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(mercure_token(&headers, None).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(mercure_token(&headers, None).is_err());
    }

    #[test]
    fn the_app_takes_a_bearer_token_before_the_session_cookie() {
        let both = headers(&[
            (header::AUTHORIZATION, b"Bearer hrld_x"),
            (header::COOKIE, b"herald_session=s"),
        ]);
        assert!(matches!(
            app_credentials(&both),
            Some(Credentials::Token("hrld_x"))
        ));
        let basic = headers(&[
            (header::AUTHORIZATION, b"Basic abc"),
            (header::COOKIE, b"herald_session=\"s\""),
        ]);
        assert!(matches!(
            app_credentials(&basic),
            Some(Credentials::Session("s"))
        ));
        assert!(app_credentials(&HeaderMap::new()).is_none());
    }
}
