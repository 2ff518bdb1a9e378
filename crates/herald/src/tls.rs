//! HTTPS: the certificate and key from PEM files, checked at start, and reloaded on SIGHUP.
//!
//! [`load`] reads a certificate chain (the server's certificate first) and a private key
//! (PKCS#8, PKCS#1 or SEC1) and checks that the key is the certificate's; every problem is
//! one line naming the file. [`Tls`] holds the rustls acceptor, which offers `h2` and
//! `http/1.1` by ALPN, and a [`Reloadable`] certificate: the resolver hands each new
//! handshake the certificate of now, so a reload changes what new connections see and
//! leaves open ones as they are. A reload that fails keeps the certificate in use.
//!
//! The handshake itself runs in each connection's task (`connection::serve`), over the
//! connection's `CountedStream`, within a deadline: the accept loop never waits on a client.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsAcceptor;

/// Largest certificate or key file read: a chain of a few certificates is a few KiB, and a
/// path mistyped to something huge (a log, a device) is refused rather than read whole.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Where the certificate chain and the private key are read from, at start and on every
/// reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// The PEM private key of that certificate.
    pub key: PathBuf,
}

/// The certificate and key in `files`, checked: both files read, at least one certificate,
/// a private key rustls can sign with, and that key matching the first certificate.
///
/// # Errors
///
/// One line naming the file and what is wrong with it.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let cert_pem = read_pem(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            format!(
                "{}: not a valid PEM certificate file: {error}",
                files.cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            files.cert.display()
        ));
    }
    let key_pem = read_pem(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
            files.key.display()
        ),
        error => format!(
            "{}: not a valid PEM private key file: {error}",
            files.key.display()
        ),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| format!("{}: unusable private key: {error}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(format!(
                "{}: the private key does not match the certificate in {}",
                files.key.display(),
                files.cert.display()
            ))
        }
        // The key cannot tell its public half: nothing to compare, as rustls itself does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(error) => Err(format!(
            "{}: the first certificate cannot be used: {error}",
            files.cert.display()
        )),
    }
}

/// Reads a whole PEM file, at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|error| format!("{}: cannot read it: {error}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{}: larger than {MAX_PEM_BYTES} bytes, not a PEM file",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The cryptography of every TLS connection: ring, rustls' choice of cipher suites.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate new handshakes get, replaceable while connections use the old one.
#[derive(Debug)]
pub struct Reloadable {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl Reloadable {
    /// Reads the files again; on success new handshakes get the new certificate, on failure
    /// the old one stays.
    ///
    /// # Errors
    ///
    /// What [`load`] says; nothing changed then.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = load(&self.files)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// When the certificate in use expires (`YYYY-MM-DD HH:MM:SS UTC`), for the log.
    pub fn not_after(&self) -> Option<String> {
        not_after(self.current.load().end_entity_cert().ok()?)
    }
}

/// The `notAfter` time of a DER certificate (RFC 5280, section 4.1.2.5), as
/// `YYYY-MM-DD HH:MM:SS UTC`; `None` when it cannot be read. Only for the log: rustls has
/// parsed and checked the certificate already.
fn not_after(cert: &[u8]) -> Option<String> {
    let (certificate, _) = der(cert, 0x30)?;
    let (mut tbs, _) = der(certificate, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs, 0xa0)?.1; // The version.
    }
    let (_, rest) = der(tbs, 0x02)?; // The serial number.
    let (_, rest) = der(rest, 0x30)?; // The signature algorithm.
    let (_, rest) = der(rest, 0x30)?; // The issuer.
    let (validity, _) = der(rest, 0x30)?;
    let not_before = *validity.first()?;
    let (_, rest) = der(validity, not_before)?;
    let (time, century) = match rest.first()? {
        // UTCTime, YYMMDDHHMMSSZ: 1950 to 2049.
        0x17 => {
            let (time, _) = der(rest, 0x17)?;
            let year: u32 = std::str::from_utf8(time.get(..2)?).ok()?.parse().ok()?;
            (time, if year >= 50 { "19" } else { "20" })
        }
        // GeneralizedTime, YYYYMMDDHHMMSSZ.
        0x18 => (der(rest, 0x18)?.0, ""),
        _ => return None,
    };
    let time = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    if time.len() < 12 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (date, clock) = time.split_at(time.len() - 6);
    let (year, month_day) = date.split_at(date.len() - 4);
    Some(format!(
        "{century}{year}-{}-{} {}:{}:{} UTC",
        &month_day[..2],
        &month_day[2..],
        &clock[..2],
        &clock[2..4],
        &clock[4..]
    ))
}

/// The contents of the DER element with `tag` at the start of `input`, and what follows it.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, mut rest) = rest.split_first()?;
    let length = if length < 0x80 {
        usize::from(length)
    } else {
        let bytes = usize::from(length & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (long, after) = rest.split_at(bytes);
        rest = after;
        long.iter().fold(0, |n, &b| (n << 8) | usize::from(b))
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the server needs to speak TLS: the acceptor, and its certificate to reload.
#[derive(Clone)]
pub struct Tls {
    /// Runs a handshake on an accepted connection.
    pub(crate) acceptor: TlsAcceptor,
    /// The certificate of new handshakes.
    pub reloadable: Arc<Reloadable>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.reloadable.files)
            .finish_non_exhaustive()
    }
}

/// The ALPN protocol of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// The ALPN protocol of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

impl Tls {
    /// TLS with `files`, whose checked contents are `loaded` ([`load`]).
    ///
    /// # Errors
    ///
    /// When rustls refuses its default protocol versions (it does not with ring).
    pub fn new(files: TlsFiles, loaded: CertifiedKey) -> Result<Self, String> {
        let reloadable = Arc::new(Reloadable {
            files,
            current: ArcSwap::from_pointee(loaded),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("cannot set up TLS: {error}"))?
            .with_no_client_auth()
            .with_cert_resolver(reloadable.clone());
        // HTTP/2 first: browsers multiplex every request and stream of a page on one
        // connection then, instead of six per host.
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            reloadable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let (year, month, day) = not_after;
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_when_a_certificate_expires() {
        // Before 2050 as UTCTime, from 2050 on as GeneralizedTime (RFC 5280).
        for (date, want) in [
            ((2031, 5, 6), "2031-05-06 00:00:00 UTC"),
            ((2049, 12, 31), "2049-12-31 00:00:00 UTC"),
            ((2061, 1, 2), "2061-01-02 00:00:00 UTC"),
        ] {
            assert_eq!(not_after(&certificate(date)).as_deref(), Some(want));
        }
    }

    #[test]
    fn a_truncated_certificate_has_no_expiry() {
        let der = certificate((2031, 5, 6));
        assert!(not_after(&der).is_some());
        // Every element's length is checked against what is there, the outermost first.
        for end in 0..der.len() {
            assert_eq!(not_after(&der[..end]), None, "cut at {end}");
        }
        assert_eq!(not_after(b"not DER"), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
