//! HTTPS: `--tls-cert` and `--tls-key`. HTTP/1.1 over TLS (the direct subscribe and
//! publish paths included), HTTP/2 chosen by ALPN, the certificate reloaded on SIGHUP while
//! streams stay open, refused certificates at start (exit 64), the `Secure` session cookie,
//! the handshake deadline, and the write deadline below TLS.
//!
//! The certificates come from a test CA made with rcgen; the clients are tokio-rustls with
//! hyper's HTTP/1 and HTTP/2 client connections, trusting that CA only.

use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, client::conn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::{
    io::AsyncReadExt,
    net::TcpStream,
    process::Command,
    time::{Instant, sleep, timeout},
};
use tokio_rustls::client::TlsStream;

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ITEM_TIMEOUT, KEY, Sse, TestServer, admin_token, run_herald,
};

/// A CA that issues server certificates for `localhost` and `127.0.0.1`, and the files a
/// server reads them from.
struct Certs {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

/// One issued certificate and its key, in PEM, and the certificate's DER (what a client is
/// shown).
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Certs {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Herald test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new certificate (its own key) named `common_name`.
    fn issue(&self, common_name: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Writes `issued` where the server reads its certificate and key.
    fn install(&self, issued: &Issued) {
        std::fs::write(self.cert_path(), &issued.cert_pem).unwrap();
        std::fs::write(self.key_path(), &issued.key_pem).unwrap();
    }

    /// The server flags naming the installed files.
    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".to_owned(),
            self.cert_path().display().to_string(),
            "--tls-key".to_owned(),
            self.key_path().display().to_string(),
        ]
    }

    /// Client settings that trust this CA only and offer `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A server started with the installed certificate.
    async fn server(&self, env: &[(&str, &str)]) -> TestServer {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestServer::with_tls(self.client(&[HTTP1]), env, &args).await
    }
}

const HTTP1: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";

/// A TLS connection to `server`, verified against `config`'s roots as `localhost`.
async fn connect(server: &TestServer, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the TLS handshake")
}

/// The certificate the server showed on `stream`.
fn shown(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone()
}

/// One HTTP connection over TLS.
enum Client {
    Http1(conn::http1::SendRequest<Full<Bytes>>),
    Http2(conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// Sends `request` (with an absolute URI); resolves once the response head arrived.
    /// HTTP/1.1 sends the target in origin form with a `Host` header, as browsers do;
    /// HTTP/2 names the host in `:authority` only.
    async fn send(&mut self, mut request: Request<Full<Bytes>>) -> Response<Incoming> {
        match self {
            Self::Http1(sender) => {
                let uri = request.uri().clone();
                let host = uri.authority().expect("an absolute URI").as_str();
                request.headers_mut().insert("host", host.parse().unwrap());
                *request.uri_mut() = uri.path_and_query().unwrap().as_str().parse().unwrap();
                sender.ready().await.expect("the connection is open");
                sender
                    .send_request(request)
                    .await
                    .expect("an HTTP/1.1 answer")
            }
            Self::Http2(sender) => sender
                .send_request(request)
                .await
                .expect("an HTTP/2 answer"),
        }
    }
}

/// An HTTP/1.1 connection over TLS.
async fn http1(stream: TlsStream<TcpStream>) -> Client {
    let (sender, connection) = conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    Client::Http1(sender)
}

/// An HTTP/2 connection over TLS.
async fn http2(stream: TlsStream<TcpStream>) -> Client {
    let (sender, connection) = conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    Client::Http2(sender)
}

/// A request to `server`'s `path`, by the name its certificate has.
fn request(server: &TestServer, method: &str, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", server.addr().port()))
}

fn publish_request(server: &TestServer, topic: &str, data: &str) -> Request<Full<Bytes>> {
    let form = format!("topic={topic}&data={data}");
    request(server, "POST", "/.well-known/mercure")
        .header("authorization", format!("Bearer {}", admin_token()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap()
}

/// A subscription to `topic` with a token that may receive everything.
fn subscribe_request(server: &TestServer, topic: &str) -> Request<Full<Bytes>> {
    request(
        server,
        "GET",
        &format!("/.well-known/mercure?topic={topic}"),
    )
    .header("authorization", format!("Bearer {}", admin_token()))
    .body(Full::new(Bytes::new()))
    .unwrap()
}

fn get(server: &TestServer, path: &str) -> Request<Full<Bytes>> {
    request(server, "GET", path)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The whole body of `response`, as text.
async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The event stream of `response`.
fn sse(response: Response<Incoming>) -> Sse {
    let (parts, body) = response.into_parts();
    let body = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(Into::into));
    Sse::from_parts(parts.status, parts.headers, body.boxed())
}

#[tokio::test]
async fn https_serves_http1_and_the_direct_paths() {
    let certs = Certs::new();
    certs.install(&certs.issue("first"));
    let server = certs.server(&[]).await;
    assert!(server.url().starts_with("https://"));

    let stream = connect(&server, certs.client(&[HTTP1])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(HTTP1));
    let mut client = http1(stream).await;
    let health = client.send(get(&server, "/healthz")).await;
    assert_eq!(health.status(), 200);
    assert_eq!(text(health).await, "ok");

    // A subscription from a client that offers no ALPN protocol at all: the direct path
    // answers it (no chunked framing, the body ends with the connection), over TLS.
    let subscriber = connect(&server, certs.client(&[])).await;
    assert_eq!(subscriber.get_ref().1.alpn_protocol(), None);
    let response = http1(subscriber)
        .await
        .send(subscribe_request(&server, "tls"))
        .await;
    let mut events = sse(response);
    assert_eq!(events.status, 200);
    assert_eq!(
        events.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(events.headers["connection"], "close");
    assert!(!events.headers.contains_key("transfer-encoding"));

    // Two publishes on one kept connection: the direct publish path, over TLS.
    let mut publisher = http1(connect(&server, certs.client(&[HTTP1])).await).await;
    for data in ["one", "two"] {
        let answer = publisher.send(publish_request(&server, "tls", data)).await;
        assert_eq!(answer.status(), 200);
        let id = text(answer).await;
        let message = events.next_message().await;
        assert_eq!((message.last_event_id, message.data), (id, data.to_owned()));
    }
}

#[tokio::test]
async fn http2_is_chosen_by_alpn_for_the_router_and_streams() {
    let certs = Certs::new();
    certs.install(&certs.issue("first"));
    let cert = certs.cert_path().display().to_string();
    let key = certs.key_path().display().to_string();
    // The environment names the files here.
    let server = TestServer::with_tls(
        certs.client(&[HTTP1]),
        &[("HERALD_TLS_CERT", &cert), ("HERALD_TLS_KEY", &key)],
        &[],
    )
    .await;

    let stream = connect(&server, certs.client(&[H2, HTTP1])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(H2));
    let mut client = http2(stream).await;
    let health = client.send(get(&server, "/healthz")).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), hyper::Version::HTTP_2);
    assert_eq!(text(health).await, "ok");

    // A stream and a publish, multiplexed on the one connection.
    let response = client.send(subscribe_request(&server, "h2")).await;
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let mut events = sse(response);
    assert_eq!(events.status, 200);
    assert_eq!(
        events.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let answer = client.send(publish_request(&server, "h2", "over-h2")).await;
    assert_eq!(answer.status(), 200);
    let id = text(answer).await;
    let message = events.next_message().await;
    assert_eq!(
        (message.last_event_id, message.data),
        (id, "over-h2".into())
    );
}

/// Connects until the server shows `expected`, for at most 10 s: a reload is done by a task
/// of the server after the signal arrives.
async fn wait_for_certificate(
    server: &TestServer,
    client: &Arc<rustls::ClientConfig>,
    expected: &CertificateDer<'_>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stream = connect(server, client.clone()).await;
        if shown(&stream) == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server still shows the old certificate"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

async fn hangup(server: &TestServer) {
    let sent = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(sent.success());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_open_streams() {
    let certs = Certs::new();
    let first = certs.issue("first");
    certs.install(&first);
    let server = certs.server(&[]).await;
    let client = certs.client(&[HTTP1]);
    assert_eq!(shown(&connect(&server, client.clone()).await), first.der);

    // Streams opened before the reload: one on the direct path, one over HTTP/2.
    let response = http1(connect(&server, client.clone()).await)
        .await
        .send(subscribe_request(&server, "reload"))
        .await;
    let mut direct = sse(response);
    assert_eq!(direct.status, 200);
    let response = http2(connect(&server, certs.client(&[H2])).await)
        .await
        .send(subscribe_request(&server, "reload"))
        .await;
    let mut multiplexed = sse(response);
    assert_eq!(multiplexed.status, 200);

    let second = certs.issue("second");
    assert_ne!(second.der, first.der);
    certs.install(&second);
    hangup(&server).await;
    wait_for_certificate(&server, &client, &second.der).await;

    // The open streams still receive what is published after the reload.
    let mut publisher = http1(connect(&server, client.clone()).await).await;
    let answer = publisher
        .send(publish_request(&server, "reload", "after"))
        .await;
    assert_eq!(answer.status(), 200);
    let id = text(answer).await;
    for events in [&mut direct, &mut multiplexed] {
        let message = events.next_message().await;
        assert_eq!((&*message.last_event_id, &*message.data), (&*id, "after"));
    }

    // A broken certificate file: the reload fails, says why, and the second certificate
    // stays.
    std::fs::write(certs.cert_path(), "not a certificate\n").unwrap();
    hangup(&server).await;
    let deadline = Instant::now() + ITEM_TIMEOUT;
    let logged = loop {
        let stderr = server.stderr();
        if let Some(line) = stderr
            .lines()
            .find(|line| line.contains("cannot reload the TLS certificate"))
        {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no reload error in:\n{stderr}");
        sleep(Duration::from_millis(20)).await;
    };
    assert!(
        logged.contains(&certs.cert_path().display().to_string())
            && logged.contains("no PEM certificate"),
        "{logged}"
    );
    assert_eq!(shown(&connect(&server, client.clone()).await), second.der);
    let health = http1(connect(&server, client).await)
        .await
        .send(get(&server, "/healthz"))
        .await;
    assert_eq!(health.status(), 200);
}

/// Runs `herald serve` with `tls_args` to its exit; returns its stderr, asserting exit 64.
async fn refused(tls_args: &[&str]) -> String {
    let data_dir = tempfile::tempdir().unwrap();
    let data_dir = data_dir.path().display().to_string();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--jwt-key",
        KEY,
    ];
    args.extend_from_slice(tls_args);
    let output = run_herald(&args).await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(64), "{tls_args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "it never listened: {tls_args:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[tokio::test]
async fn a_bad_certificate_or_key_refuses_to_start() {
    let certs = Certs::new();
    let good = certs.issue("good");
    let other = certs.issue("other");
    let dir = certs.dir.path();
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(path("cert.pem"), &good.cert_pem).unwrap();
    std::fs::write(path("key.pem"), &good.key_pem).unwrap();
    std::fs::write(path("other-key.pem"), &other.key_pem).unwrap();
    std::fs::write(path("garbage.pem"), "this is not PEM\n").unwrap();
    std::fs::write(
        path("bad-base64.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (cert, key) = (path("cert.pem"), path("key.pem"));

    for (args, file, problem) in [
        (
            vec!["--tls-cert", &path("garbage.pem"), "--tls-key", &key],
            path("garbage.pem"),
            "no PEM certificate",
        ),
        (
            vec!["--tls-cert", &path("bad-base64.pem"), "--tls-key", &key],
            path("bad-base64.pem"),
            "not a valid PEM certificate file",
        ),
        (
            vec!["--tls-cert", &path("missing.pem"), "--tls-key", &key],
            path("missing.pem"),
            "cannot read it",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &path("missing.pem")],
            path("missing.pem"),
            "cannot read it",
        ),
        // The certificate file holds no key.
        (
            vec!["--tls-cert", &cert, "--tls-key", &cert],
            cert.clone(),
            "no PEM private key",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &path("other-key.pem")],
            path("other-key.pem"),
            "does not match the certificate",
        ),
    ] {
        let stderr = refused(&args).await;
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&file) && stderr.contains(problem),
            "{args:?}: {stderr}"
        );
    }
    let stderr = refused(&["--tls-cert", &cert]).await;
    assert!(stderr.contains("--tls-cert needs --tls-key"), "{stderr}");
    let stderr = refused(&["--tls-key", &key]).await;
    assert!(stderr.contains("--tls-key needs --tls-cert"), "{stderr}");
}

#[tokio::test]
async fn the_session_cookie_is_secure_over_https() {
    let certs = Certs::new();
    certs.install(&certs.issue("app"));
    let server = certs
        .server(&[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ])
        .await;
    let origin = format!("https://localhost:{}", server.addr().port());
    let login = || {
        request(&server, "POST", "/api/login")
            .header("content-type", "application/json")
            .header("origin", &origin)
            .body(Full::new(Bytes::from(
                json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string(),
            )))
            .unwrap()
    };
    let secure = |response: &Response<Incoming>| {
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let attributes: Vec<String> = cookie
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        assert!(attributes.iter().any(|a| a == "secure"), "{cookie}");
        cookie.split(';').next().unwrap().to_owned()
    };

    // HTTP/1.1.
    let mut client = http1(connect(&server, certs.client(&[HTTP1])).await).await;
    let answer = client.send(login()).await;
    assert_eq!(answer.status(), 200);
    let session = secure(&answer);
    let _ = text(answer).await;
    let logout = request(&server, "POST", "/api/logout")
        .header("cookie", &session)
        .header("origin", &origin)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = client.send(logout).await;
    assert_eq!(answer.status(), 204);
    secure(&answer);

    // HTTP/2, whose requests name their host in `:authority` only: the same-origin check
    // of a cookie login passes there too.
    let mut client = http2(connect(&server, certs.client(&[H2])).await).await;
    let answer = client.send(login()).await;
    assert_eq!(answer.version(), hyper::Version::HTTP_2);
    assert_eq!(answer.status(), 200);
    secure(&answer);
}

#[tokio::test]
async fn a_client_that_never_starts_its_handshake_is_closed() {
    let certs = Certs::new();
    certs.install(&certs.issue("first"));
    let server = certs.server(&[]).await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let opened = Instant::now();
    let mut byte = [0u8; 1];
    let read = timeout(Duration::from_secs(30), silent.read(&mut byte))
        .await
        .expect("the server closed the connection");
    // Closed (EOF or reset) without a byte: nothing was ever sent.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The handshake deadline (10 s) closed it, not something sooner.
    assert!(
        opened.elapsed() >= Duration::from_secs(9),
        "{:?}",
        opened.elapsed()
    );
    // The server still serves.
    let health = http1(connect(&server, certs.client(&[HTTP1])).await)
        .await
        .send(get(&server, "/healthz"))
        .await;
    assert_eq!(health.status(), 200);
}

/// The value of the sample `name` in `GET /metrics`, over TLS.
async fn metric(server: &TestServer, certs: &Certs, name: &str) -> f64 {
    let answer = http1(connect(server, certs.client(&[HTTP1])).await)
        .await
        .send(get(server, "/metrics"))
        .await;
    assert_eq!(answer.status(), 200);
    let text = text(answer).await;
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Waits (at most 15 s) until `herald_streams_open` is `n`.
async fn streams_open(server: &TestServer, certs: &Certs, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let open = metric(server, certs, "herald_streams_open").await;
        if open == n {
            return;
        }
        assert!(Instant::now() < deadline, "{open} streams open, not {n}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_that_takes_no_data_ends_after_the_write_deadline() {
    use tokio::io::AsyncWriteExt;
    let certs = Certs::new();
    certs.install(&certs.issue("first"));
    let mut args = certs.args();
    args.extend(["--write-timeout".to_owned(), "2s".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::with_tls(certs.client(&[HTTP1]), &[], &args).await;

    // A subscriber with a small receive window that sends its request and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr()).await.unwrap();
    let mut stalled = tokio_rustls::TlsConnector::from(certs.client(&[HTTP1]))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "GET /.well-known/mercure?topic=deadline HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {}\r\n\r\n",
        admin_token()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    streams_open(&server, &certs, 1.0).await;

    // 5 MiB: more than the kernel buffers, less than the subscriber queue holds (see
    // `deadlines`), so only the write deadline, below TLS, can end the stream.
    let data = "x".repeat(64 * 1024);
    let mut publisher = http1(connect(&server, certs.client(&[HTTP1])).await).await;
    for n in 0..80 {
        let form = format!("topic=deadline&id=d{n}&data={data}");
        let answer = publisher
            .send(
                request(&server, "POST", "/.well-known/mercure")
                    .header("authorization", format!("Bearer {}", admin_token()))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(form)))
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status(), 200);
        let _ = text(answer).await;
    }
    streams_open(&server, &certs, 0.0).await;
    assert_eq!(
        metric(&server, &certs, "herald_slow_subscriber_disconnects_total").await,
        0.0,
        "the queue never overflowed"
    );
    assert_eq!(metric(&server, &certs, "herald_subscribers").await, 0.0);
    drop(stalled);
}

#[tokio::test]
async fn without_tls_sighup_reloads_nothing_and_stops_nothing() {
    let server = TestServer::start().await;
    hangup(&server).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("nothing to reload") {
        assert!(
            Instant::now() < deadline,
            "no log line about SIGHUP: {}",
            server.stderr()
        );
        sleep(Duration::from_millis(20)).await;
    }
    let health = crate::support::http_client()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .expect("the server still answers");
    assert_eq!(health.status(), 200);
}
