//! Where the load goes: URL templates, the minimal `http://` URL parser the
//! raw-socket subscribers need, and the loopback-only guard.
//!
//! The bench never resolves a host name through DNS: a URL names an IP
//! literal in 127.0.0.0/8, `[::1]`, or `localhost` (taken as 127.0.0.1).
//! Anything else is refused before a single socket is opened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, bail};

/// A parsed `http://` URL on a loopback address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The authority as written in the URL (`host[:port]`), sent as `Host`.
    pub authority: String,
    /// The address to connect to.
    pub addr: SocketAddr,
    /// Path and query, as written (`/` when the URL has none); the fragment
    /// is dropped.
    pub path_and_query: String,
}

impl Target {
    /// Parses `url` and checks that it points at this machine's loopback.
    ///
    /// Only `http://` is accepted; no user info, no percent-encoded or
    /// otherwise exotic hosts: what this parser reads as the host must be
    /// what any other HTTP client (reqwest for the publisher) reads too.
    ///
    /// # Errors
    ///
    /// When the URL is malformed or its host is not 127.0.0.0/8, `::1` or
    /// `localhost`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url:?}: only http:// URLs are supported"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = match tail.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{tail}"),
            Some(_) => tail.to_owned(),
        };
        if path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
            bail!("{url:?}: the path contains spaces or control characters; percent-encode them");
        }
        if authority.is_empty()
            || !authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            bail!("{url:?}: the host must be a plain name or IP literal");
        }
        let (host, port) = split_host_port(authority).with_context(|| format!("{url:?}"))?;
        let ip = loopback_ip(host).with_context(|| format!("{url:?}"))?;
        Ok(Self {
            authority: authority.to_owned(),
            addr: SocketAddr::new(ip, port),
            path_and_query,
        })
    }
}

/// Fills a template: `{topic}` becomes `topic`, `{i}` becomes `index`.
/// Other braces (a Mercure URI template, say) are left alone.
pub fn expand(template: &str, topic: u64, index: u64) -> String {
    if !template.contains('{') {
        return template.to_owned();
    }
    template
        .replace("{topic}", &topic.to_string())
        .replace("{i}", &index.to_string())
}

/// Splits `host[:port]` or `[v6][:port]`; the port defaults to 80.
fn split_host_port(authority: &str) -> anyhow::Result<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').context("unclosed '[' in the host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').context("junk after ']'")?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .with_context(|| format!("bad port {port:?}"))?,
    };
    Ok((host, port))
}

/// The address of a loopback host, or an error for anything else.
fn loopback_ip(host: &str) -> anyhow::Result<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip: IpAddr = host
        .parse()
        .map_err(|_| anyhow::anyhow!("host {host:?} is not an IP literal or localhost"))?;
    if !ip.is_loopback() {
        bail!("host {host} is not a loopback address: the bench only targets this machine");
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok` is `authority addr path`, or `Err` with a fragment of the message.
    fn check(url: &str, expect: Result<&str, &str>) {
        let got = Target::parse(url);
        match (got, expect) {
            (Ok(t), Ok(want)) => {
                let got = format!("{} {} {}", t.authority, t.addr, t.path_and_query);
                assert_eq!(got, want, "{url}");
            }
            (Err(e), Err(want)) => {
                let msg = format!("{e:#}");
                assert!(msg.contains(want), "{url}: {msg:?} lacks {want:?}");
            }
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn loopback_guard() {
        let table: &[(&str, Result<&str, &str>)] = &[
            (
                "http://127.0.0.1:8080/.well-known/mercure?topic=a",
                Ok("127.0.0.1:8080 127.0.0.1:8080 /.well-known/mercure?topic=a"),
            ),
            ("http://127.3.4.5/x", Ok("127.3.4.5 127.3.4.5:80 /x")),
            ("http://localhost:81", Ok("localhost:81 127.0.0.1:81 /")),
            (
                "http://LOCALHOST:81?a=1#frag",
                Ok("LOCALHOST:81 127.0.0.1:81 /?a=1"),
            ),
            ("http://[::1]:9000/sub", Ok("[::1]:9000 [::1]:9000 /sub")),
            ("http://[::1]/sub", Ok("[::1] [::1]:80 /sub")),
            ("http://10.0.0.1:8080/", Err("not a loopback")),
            ("http://192.168.1.1/", Err("not a loopback")),
            ("http://8.8.8.8/", Err("not a loopback")),
            ("http://[::2]/", Err("not a loopback")),
            ("http://0.0.0.0:8080/", Err("not a loopback")),
            ("http://example.com/", Err("not an IP literal")),
            ("http://localhost.example.com/", Err("not an IP literal")),
            ("http://127.0.0.1@evil.com/", Err("plain name")),
            ("http://user:pw@127.0.0.1/", Err("plain name")),
            ("http://127.0.0.1%2eevil/", Err("plain name")),
            ("https://127.0.0.1/", Err("only http://")),
            ("127.0.0.1:8080/", Err("only http://")),
            ("http:///path", Err("plain name")),
            ("http://127.0.0.1:0/", Err("bad port")),
            ("http://127.0.0.1:99999/", Err("bad port")),
            ("http://[::1/", Err("unclosed")),
            ("http://127.0.0.1/a b", Err("spaces")),
        ];
        for (url, expect) in table {
            check(url, *expect);
        }
    }

    #[test]
    fn templates() {
        let table = [
            ("bench-{topic}", 3, 17, "bench-3"),
            ("sub-{i}-t{topic}", 3, 17, "sub-17-t3"),
            ("{topic}{topic}", 1, 0, "11"),
            ("plain", 1, 2, "plain"),
            (
                "https://example.com/books/{id}",
                1,
                2,
                "https://example.com/books/{id}",
            ),
            (
                "http://127.0.0.1:8080/.well-known/mercure?topic=bench-{topic}",
                0,
                5,
                "http://127.0.0.1:8080/.well-known/mercure?topic=bench-0",
            ),
        ];
        for (template, topic, index, want) in table {
            assert_eq!(expand(template, topic, index), want, "{template}");
        }
    }
}
