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
