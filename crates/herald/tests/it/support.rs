//! The shared harness: [`TestServer`] runs the real `herald` binary on its own port and
//! data directory; [`Sse`] reads a stream exactly as it arrives on the wire; token and
//! publish helpers. For the app: [`AppClient`] is one signed-in user speaking JSON,
//! [`AppStream`] one of its event streams, [`AppWorld`] the users and workspaces most app
//! tests start from.
//!
//! Every test starts its own server, so tests run in parallel without sharing anything.

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use herald::auth::{Claims, MercureClaim, mint};
use herald_sse::{Decoder, Item, Message};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
    time::{Instant, sleep, timeout},
};

/// The HS256 key every test server verifies tokens with.
pub(crate) const KEY: &str = "integration-tests-key-0123456789abcdef";

/// How long [`Sse`] waits for one item before failing the test. Generous: two cores run
/// the test binary and several debug servers at once.
pub(crate) const ITEM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to start answering `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `herald serve` process on a free port, with its own temporary data directory. It is
/// killed (SIGKILL) when dropped.
pub(crate) struct TestServer {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    stderr_task: Option<JoinHandle<()>>,
    addr: SocketAddr,
    args: Vec<String>,
    /// Extra environment variables of the process, kept for [`TestServer::restart`].
    env: Vec<(String, String)>,
    data_dir: tempfile::TempDir,
    /// For a server that speaks HTTPS: the client settings that trust its certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// An HTTP client for the test's own requests.
    pub(crate) http: reqwest::Client,
}

/// A server process that has started answering.
struct Launched {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_task: JoinHandle<()>,
    addr: SocketAddr,
}

impl TestServer {
    /// A server with `--anonymous` off and default limits.
    pub(crate) async fn start() -> Self {
        Self::with_args(&[]).await
    }

    /// A server with extra `serve` flags.
    pub(crate) async fn with_args(args: &[&str]) -> Self {
        Self::with_env(&[], args).await
    }

    /// A server with extra environment variables and `serve` flags.
    pub(crate) async fn with_env(env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::launched(env, args, None).await
    }

    /// A server that speaks HTTPS (its flags or environment name the certificate), checked
    /// to answer `/healthz` to a client with the settings `tls`.
    pub(crate) async fn with_tls(
        tls: Arc<rustls::ClientConfig>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        Self::launched(env, args, Some(tls)).await
    }

    async fn launched(
        env: &[(&str, &str)],
        args: &[&str],
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("create a temporary data directory");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        // Port 0: the kernel picks a free port and the server prints the address it bound,
        // so no other test or outgoing connection can take the port in between.
        let launched = launch("127.0.0.1:0", data_dir.path(), &args, &env, tls.as_ref())
            .await
            .unwrap_or_else(|stderr| panic!("herald serve failed to start:\n{stderr}"));
        Self {
            child: Some(launched.child),
            stderr: launched.stderr,
            stderr_task: Some(launched.stderr_task),
            addr: launched.addr,
            args,
            env,
            data_dir,
            tls,
            http: http_client(),
        }
    }

    /// `http://127.0.0.1:<port>` (`https://` for a server that speaks HTTPS).
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The hub: `http://127.0.0.1:<port>/.well-known/mercure`.
    pub(crate) fn hub_url(&self) -> String {
        format!("{}/.well-known/mercure", self.url())
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("the server is running")
    }

    /// A memory figure of the server process from `/proc/<pid>/status` (`VmRSS`, `VmHWM`),
    /// in KiB.
    pub(crate) fn memory_kib(&self, field: &str) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }
    /// What the server wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and wait until the process is gone.
    pub(crate) async fn kill9(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.start_kill().expect("send SIGKILL");
        child.wait().await.expect("wait for the killed server");
        self.finish_stderr().await;
    }

    /// SIGTERM, and wait (at most 10 s) for the process to exit; returns its status.
    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id().expect("the server is running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server did not exit within 10 s of SIGTERM; stderr:\n{}",
                    self.stderr()
                )
            })
            .expect("wait for the server");
        self.finish_stderr().await;
        status
    }

    /// Starts the server again on the same port and data directory, with the same flags.
    /// SIGKILLs it first if it is still running. Retries while the port is not yet
    /// reusable.
    pub(crate) async fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9().await;
        }
        let listen = self.addr.to_string();
        let deadline = Instant::now() + START_TIMEOUT;
        let launched = loop {
            match launch(
                &listen,
                self.data_dir.path(),
                &self.args,
                &self.env,
                self.tls.as_ref(),
            )
            .await
            {
                Ok(launched) => break launched,
                Err(stderr) if stderr.contains("cannot listen") && Instant::now() < deadline => {
                    sleep(Duration::from_millis(50)).await;
                }
                Err(stderr) => panic!("herald serve failed to restart:\n{stderr}"),
            }
        };
        assert_eq!(launched.addr, self.addr, "restarted on another address");
        self.child = Some(launched.child);
        self.stderr = launched.stderr;
        self.stderr_task = Some(launched.stderr_task);
    }

    async fn finish_stderr(&mut self) {
        if let Some(task) = self.stderr_task.take() {
            let _ = timeout(Duration::from_secs(5), task).await;
        }
    }

    /// The text of `GET /metrics`.
    pub(crate) async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("read /metrics")
    }

    /// The value of the sample `name`, with its labels if any, exactly as exported.
    ///
    /// # Panics
    ///
    /// If the server does not export it.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        sample(&text, name).unwrap_or_else(|| panic!("no metric {name:?} in:\n{text}"))
    }

    /// Polls the metric `name` until `accept` holds, for at most `within`; returns the last
    /// value seen.
    ///
    /// # Panics
    ///
    /// When the deadline passes first.
    pub(crate) async fn wait_metric(
        &self,
        name: &str,
        within: Duration,
        accept: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.metric(name).await;
            if accept(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "metric {name} is still {value} after {within:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// A subscription request to this server's hub.
    pub(crate) fn subscribe(&self) -> SubscribeReq {
        SubscribeReq {
            http: self.http.clone(),
            url: self.hub_url(),
            query: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Publishes `form` with `token` (or none); returns the raw response.
    pub(crate) async fn publish_with(
        &self,
        token: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.http.post(self.hub_url()).form(form);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("POST the hub")
    }

    /// Publishes `form` with a token that may publish anywhere; asserts 200 and returns
    /// the id the hub answered.
    pub(crate) async fn publish(&self, form: &[(&str, &str)]) -> String {
        let response = self.publish_with(Some(&admin_token()), form).await;
        let status = response.status();
        let content_type = header(response.headers(), "content-type");
        let body = response.text().await.expect("read the publish answer");
        assert_eq!(status, StatusCode::OK, "publish {form:?} answered {body}");
        assert_eq!(content_type, "text/plain; charset=utf-8");
        body
    }

    /// Publishes a public update with id `id` on `topic`.
    /// The ids of every retained update, oldest first, then `sentinel`, which this
    /// publishes to `topic` after the reader is open: proof of what a publish stored.
    pub(crate) async fn stored_ids_then(&self, topic: &str, sentinel: &str) -> Vec<String> {
        let mut all = self
            .subscribe()
            .topic("*")
            .bearer(&token(&[], &["*"]))
            .query("lastEventID", "earliest")
            .open()
            .await;
        self.publish_id(topic, sentinel).await;
        all.ids_until(sentinel).await
    }

    pub(crate) async fn publish_id(&self, topic: &str, id: &str) -> String {
        let got = self
            .publish(&[("topic", topic), ("id", id), ("data", id)])
            .await;
        assert_eq!(got, id);
        got
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Also done by kill_on_drop; explicit so the intent is plain.
            let _ = child.start_kill();
        }
    }
}

/// An HTTP client that ignores proxy settings of the environment.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build an HTTP client")
}

/// Spawns `herald serve` and waits until it answers `/healthz` (over HTTPS with `tls`); on
/// failure returns what it wrote to stderr.
async fn launch(
    listen: &str,
    data_dir: &Path,
    args: &[String],
    env: &[(String, String)],
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Launched, String> {
    let mut command = herald_command();
    command
        .envs(env.iter().cloned())
        .arg("serve")
        .args(["--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--jwt-key", KEY])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawn herald serve");

    // Drain stderr for the life of the process, so the server never blocks on a full pipe
    // and a failure can show what it said.
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_task = {
        let stderr = stderr.clone();
        let pipe = child.stderr.take().expect("piped stderr");
        tokio::spawn(keep_tail(pipe, stderr))
    };
    let failed = |mut child: Child, stderr_task: JoinHandle<()>, stderr: Arc<Mutex<String>>| async move {
        let _ = child.start_kill();
        let status = child.wait().await;
        let _ = timeout(Duration::from_secs(5), stderr_task).await;
        let text = stderr.lock().unwrap().clone();
        format!("{text}\n(exit: {status:?})")
    };

    // The first line on stdout names the bound address.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = timeout(START_TIMEOUT, lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        _ => return Err(failed(child, stderr_task, stderr).await),
    };
    // Keep reading stdout so the server can never block writing to it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr: SocketAddr = line
        .strip_prefix(&format!("Herald hub at {scheme}://"))
        .and_then(|rest| rest.strip_suffix("/.well-known/mercure"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"));

    let http = http_client();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(failed(child, stderr_task, stderr).await);
        }
        let healthy = match tls {
            Some(tls) => https_healthy(addr, tls).await,
            None => http
                .get(format!("http://{addr}/healthz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK),
        };
        if healthy {
            return Ok(Launched {
                child,
                stderr,
                stderr_task,
                addr,
            });
        }
        if Instant::now() >= deadline {
            return Err(failed(child, stderr_task, stderr).await);
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `GET /healthz` over HTTPS (HTTP/1.1) answers 200 within a second.
async fn https_healthy(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> bool {
    use tokio::io::AsyncWriteExt;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let name = rustls::pki_types::ServerName::try_from("localhost").ok()?;
        let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        while answer.len() < 12 {
            let mut chunk = [0u8; 64];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The `herald` binary, with no `HERALD_*` variables inherited from the environment and
/// only warnings logged.
pub(crate) fn herald_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command.env("HERALD_LOG", "warn");
    command
}

/// Runs `herald <args>` to completion (at most 30 s).
pub(crate) async fn run_herald(args: &[&str]) -> std::process::Output {
    run_herald_with(args, &[]).await
}

/// Runs `herald <args>` with extra environment variables to completion (at most 30 s).
pub(crate) async fn run_herald_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = herald_command();
    command
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("herald {args:?} did not finish"))
        .expect("run herald")
}

/// The sample `name` in an OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("metric {name} has value {value:?}"))
        })
}

/// A token for `claims`, signed with `key`.
pub(crate) fn token_with(key: &str, claims: &Claims) -> String {
    mint(key.as_bytes(), claims).expect("sign a token")
}

/// A token signed with [`KEY`] that may publish to `publish` and receive the private
/// updates matching `subscribe`; an empty list leaves that claim out.
pub(crate) fn token(publish: &[&str], subscribe: &[&str]) -> String {
    let list = |selectors: &[&str]| {
        (!selectors.is_empty()).then(|| selectors.iter().map(|s| (*s).to_owned()).collect())
    };
    token_with(
        KEY,
        &Claims {
            mercure: Some(MercureClaim {
                publish: list(publish),
                subscribe: list(subscribe),
            }),
            exp: None,
            sub: None,
        },
    )
}

/// A token that may publish anywhere and receive every private update.
pub(crate) fn admin_token() -> String {
    token(&["*"], &["*"])
}

/// A header's value as text ("" when absent).
pub(crate) fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().expect("a text header").to_owned())
        .unwrap_or_default()
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The `error` field.
    pub(crate) code: String,
    /// The `message` field.
    pub(crate) message: String,
}

impl ApiError {
    /// Reads an error response, asserting that it is JSON of the documented shape.
    pub(crate) async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let content_type = header(response.headers(), "content-type");
        let body = response.text().await.expect("read the error body");
        assert_eq!(
            content_type, "application/json",
            "status {status}, body {body}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
        let object = json.as_object().expect("the body is an object");
        assert_eq!(object.len(), 2, "exactly error and message: {body}");
        Self {
            status,
            code: json["error"]
                .as_str()
                .expect("error is a string")
                .to_owned(),
            message: json["message"]
                .as_str()
                .expect("message is a string")
                .to_owned(),
        }
    }

    /// Shorthand for comparisons.
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A subscription request being built.
#[derive(Clone)]
pub(crate) struct SubscribeReq {
    http: reqwest::Client,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl SubscribeReq {
    /// Adds a `topic` selector.
    pub(crate) fn topic(self, selector: &str) -> Self {
        self.query("topic", selector)
    }

    /// Adds a query parameter.
    pub(crate) fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub(crate) fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends the `Last-Event-ID` header.
    pub(crate) fn last_event_id(self, id: &str) -> Self {
        self.header("last-event-id", id)
    }

    /// Uses another HTTP client (e.g. one bound to another source address).
    pub(crate) fn client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Sends the request; resolves once the response headers arrived.
    pub(crate) async fn send(self) -> reqwest::Response {
        let mut request = self.http.get(&self.url).query(&self.query);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.send().await.expect("GET the hub")
    }

    /// Opens the stream, asserting 200. Once this returns, the hub has registered the
    /// subscriber: publishing now is safe.
    pub(crate) async fn open(self) -> Sse {
        let response = self.send().await;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("subscribe answered {status}: {body}");
        }
        Sse::new(response)
    }

    /// Opens the stream; on any answer but 200, returns its status and body instead.
    pub(crate) async fn try_open(self) -> Result<Sse, (StatusCode, String)> {
        let response = self.send().await;
        let status = response.status();
        if status != StatusCode::OK {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        Ok(Sse::new(response))
    }

    /// Sends the request, expecting an error answer.
    pub(crate) async fn error(self) -> ApiError {
        let response = self.send().await;
        assert_ne!(response.status(), StatusCode::OK, "expected an error");
        ApiError::read(response).await
    }
}

/// An open event stream, decoded item by item, with the raw bytes kept for exact checks.
pub(crate) struct Sse {
    /// The response status.
    pub(crate) status: StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    body: BoxStream<'static, Result<Bytes, BodyError>>,
    decoder: Decoder,
    /// Every byte received so far.
    pub(crate) raw: Vec<u8>,
    ended: bool,
}

/// Why a response body broke off.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Sse {
    fn new(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(Into::into));
        Self::from_parts(status, headers, body.boxed())
    }

    /// A stream of the body `body`, of a response of another client than reqwest.
    pub(crate) fn from_parts(
        status: StatusCode,
        headers: HeaderMap,
        body: BoxStream<'static, Result<Bytes, BodyError>>,
    ) -> Self {
        Self {
            status,
            headers,
            body,
            decoder: Decoder::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// The next item, waiting at most `within`. `Ok(None)` at the end of the stream;
    /// `Err(())` on timeout.
    pub(crate) async fn next_item_within(&mut self, within: Duration) -> Result<Option<Item>, ()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(item) = self.decoder.next_item().expect("a well-formed stream") {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(()),
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.decoder.push(&chunk);
                }
                // A reset connection counts as the end, like EOF.
                Ok(Some(Err(_)) | None) => self.ended = true,
            }
        }
    }

    /// The next item, or `None` at the end of the stream.
    ///
    /// # Panics
    ///
    /// After [`ITEM_TIMEOUT`] without one.
    pub(crate) async fn next_item(&mut self) -> Option<Item> {
        self.next_item_within(ITEM_TIMEOUT)
            .await
            .unwrap_or_else(|()| panic!("no SSE item within {ITEM_TIMEOUT:?}"))
    }

    /// The next event, skipping `retry:` frames and comments.
    ///
    /// # Panics
    ///
    /// At the end of the stream, or after [`ITEM_TIMEOUT`] without an item.
    pub(crate) async fn next_message(&mut self) -> Message {
        loop {
            match self.next_item().await {
                Some(Item::Message(message)) => return message,
                Some(_) => {}
                None => panic!("the stream ended while waiting for an event"),
            }
        }
    }

    /// The ids of the events up to and including the one with id `last`.
    ///
    /// # Panics
    ///
    /// When the stream ends, or no item arrives within [`ITEM_TIMEOUT`], first; the
    /// message lists the ids received so far.
    pub(crate) async fn ids_until(&mut self, last: &str) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            match self.next_item_within(ITEM_TIMEOUT).await {
                Ok(Some(Item::Message(message))) => {
                    ids.push(message.last_event_id);
                    if ids.last().is_some_and(|id| id == last) {
                        return ids;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended before {last:?}; received {ids:?}"),
                Err(()) => panic!(
                    "no event within {ITEM_TIMEOUT:?} while waiting for {last:?}; received {ids:?}"
                ),
            }
        }
    }

    /// Asserts that the stream ends (EOF) within `within`, after only comments.
    pub(crate) async fn expect_end(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item_within(left).await {
                Ok(None) => return,
                Ok(Some(Item::Comment(_))) => {}
                Ok(Some(item)) => panic!("expected the end of the stream, got {item:?}"),
                Err(()) => panic!("the stream did not end within {within:?}"),
            }
        }
    }
}

/// `(id, data)` pairs of messages, for comparisons.
pub(crate) fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.last_event_id.as_str()).collect()
}

/// A stream read over a raw TCP connection, for clients that must misbehave (stop
/// reading) in ways an HTTP library does not allow. Speaks just enough HTTP/1.1: one GET,
/// a chunked or connection-delimited response.
pub(crate) struct RawStream {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// The status line and headers, once read.
    pub(crate) head: String,
    decoder: Decoder,
    /// Bytes left in the current chunk.
    remaining: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    crlf_pending: bool,
    /// Whether the body is chunked; otherwise it ends when the connection does.
    chunked: bool,
    ended: bool,
}

impl RawStream {
    /// Connects with a receive buffer of `recv_buffer` bytes (which also turns off the
    /// kernel's autotuning, so the connection holds little unread data) and sends
    /// `GET <path_and_query>` with `headers`. Reads nothing.
    pub(crate) async fn get(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &[(&str, &str)],
        recv_buffer: u32,
    ) -> Self {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        let mut stream = socket.connect(addr).await.expect("connect");
        let mut request = format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
            head: String::new(),
            decoder: Decoder::new(),
            remaining: 0,
            crlf_pending: false,
            chunked: false,
            ended: false,
        }
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0; 64 * 1024];
        let n = timeout(ITEM_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("the raw stream stalled")
            .expect("read the raw stream");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Takes one CRLF-terminated line from the buffer, reading as needed.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).expect("ASCII line");
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next SSE item of the body; `None` when the response or the connection ends.
    pub(crate) async fn next_item(&mut self) -> Option<Item> {
        if self.head.is_empty() {
            loop {
                let line = self.line().await.expect("a response head");
                if line.is_empty() {
                    break;
                }
                self.head.push_str(&line);
                self.head.push('\n');
            }
            let head = self.head.to_ascii_lowercase();
            self.chunked = head.contains("transfer-encoding: chunked");
            assert!(
                self.chunked || head.contains("connection: close"),
                "a body must be chunked or end with the connection: {}",
                self.head
            );
        }
        loop {
            if let Some(item) = self.decoder.next_item().expect("a well-formed stream") {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            if !self.chunked {
                // The body is everything until the server closes the connection.
                if self.buf.is_empty() && !self.fill().await {
                    self.ended = true;
                    continue;
                }
                self.decoder.push(&self.buf);
                self.buf.clear();
                continue;
            }
            if self.remaining == 0 {
                if self.crlf_pending {
                    let empty = self.line().await?;
                    assert!(empty.is_empty(), "chunk data too long");
                    self.crlf_pending = false;
                }
                let size = self.line().await?;
                let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
                if size == 0 {
                    self.ended = true;
                    continue;
                }
                self.remaining = size;
            }
            if self.buf.is_empty() && !self.fill().await {
                return None;
            }
            let n = self.remaining.min(self.buf.len());
            self.decoder.push(&self.buf[..n]);
            self.buf.drain(..n);
            self.remaining -= n;
            self.crlf_pending = self.remaining == 0;
        }
    }
}

// The app (docs/app-api.md): users with sessions, JSON requests and answers, and the app's
// event streams.

/// The admin an app server creates on its first start (`HERALD_ADMIN_EMAIL`).
pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";

/// That admin's password (`HERALD_ADMIN_PASSWORD`).
pub(crate) const ADMIN_PASSWORD: &str = "admin-password-0123";

/// The password of every user the app tests create.
pub(crate) const PASSWORD: &str = "user-password-0123";

/// The name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "herald_session";

impl TestServer {
    /// A server whose first start creates the admin [`ADMIN_EMAIL`] with
    /// [`ADMIN_PASSWORD`].
    pub(crate) async fn app() -> Self {
        Self::with_env(
            &[
                ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
                ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ],
            &[],
        )
        .await
    }
}

/// The string `value[key]`.
///
/// # Panics
///
/// When it is absent or not a string.
pub(crate) fn text(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} is not a string in {value}"))
        .to_owned()
}

/// The `id` of a resource.
pub(crate) fn id_of(value: &Value) -> String {
    text(value, "id")
}

/// The sorted keys of a JSON object, for exact shape checks.
pub(crate) fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Asserts that `value` is an RFC 3339 timestamp in UTC.
pub(crate) fn assert_utc_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp is a string: {value}"));
    let bytes = text.as_bytes();
    let shaped = bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|range| bytes[range].iter().all(u8::is_ascii_digit));
    let utc = text.ends_with('Z') || text.ends_with("+00:00");
    assert!(shaped && utc, "not an RFC 3339 timestamp in UTC: {text:?}");
}

/// How an [`AppClient`] authenticates.
#[derive(Clone, Debug)]
enum Auth {
    None,
    /// `Cookie: herald_session=…`.
    Cookie(String),
    /// `Authorization: Bearer hrld_…`.
    Bearer(String),
}

/// A user of the app: an HTTP client that sends one user's session cookie (or API token)
/// with every request, and speaks JSON.
#[derive(Clone)]
pub(crate) struct AppClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// The `User` this client acts as; `null` when anonymous.
    pub(crate) user: Value,
}

impl AppClient {
    /// A client that sends no credentials.
    pub(crate) fn anonymous(server: &TestServer) -> Self {
        Self {
            http: server.http.clone(),
            base: server.url(),
            auth: Auth::None,
            user: Value::Null,
        }
    }

    /// A client that sends `cookie` (`herald_session=…`) as its `Cookie` header.
    pub(crate) fn with_cookie(server: &TestServer, cookie: &str) -> Self {
        Self {
            auth: Auth::Cookie(cookie.to_owned()),
            ..Self::anonymous(server)
        }
    }

    /// A client that sends `Authorization: Bearer <token>`.
    pub(crate) fn with_bearer(server: &TestServer, token: &str) -> Self {
        Self {
            auth: Auth::Bearer(token.to_owned()),
            ..Self::anonymous(server)
        }
    }

    /// Logs in (a new session each time).
    ///
    /// # Panics
    ///
    /// Unless the login answers 200 and sets the session cookie.
    pub(crate) async fn login(server: &TestServer, email: &str, password: &str) -> Self {
        let reply = Self::anonymous(server)
            .post("/api/login", &json!({"email": email, "password": password}))
            .await;
        let cookie = reply.session_cookie();
        let user = reply.expect(200);
        Self {
            auth: Auth::Cookie(cookie),
            user,
            ..Self::anonymous(server)
        }
    }

    /// The user's id.
    pub(crate) fn id(&self) -> String {
        id_of(&self.user)
    }

    /// The `{id, name}` by which events name this user.
    pub(crate) fn event_user(&self) -> Value {
        json!({"id": self.user["id"], "name": self.user["name"]})
    }

    /// The `Cookie` header this client sends.
    ///
    /// # Panics
    ///
    /// When it does not authenticate by cookie.
    pub(crate) fn cookie(&self) -> String {
        match &self.auth {
            Auth::Cookie(cookie) => cookie.clone(),
            other => panic!("not a cookie client: {other:?}"),
        }
    }

    /// A request to `path` (which starts with `/`) with this client's credentials.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Auth::None => request,
            Auth::Cookie(cookie) => request.header("cookie", cookie),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Sends `body` as it is, with `content_type` (if any) and extra `headers`.
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let what = format!("{method} {path}");
        let mut request = self.request(method, path);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Reply::read(what, response).await
    }

    /// Sends `body` (if any) as JSON.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|body| serde_json::to_vec(body).expect("serialize the body"));
        let content_type = body.as_ref().map(|_| "application/json");
        self.raw(method, path, content_type, body, &[]).await
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`.
    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// The `items` of a `GET path` that answers 200.
    pub(crate) async fn items(&self, path: &str) -> Vec<Value> {
        let page = self.get(path).await.expect(200);
        page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no items array in {page}"))
            .clone()
    }

    /// Creates a user (as an admin); returns the `User`.
    pub(crate) async fn create_user(&self, email: &str, name: &str, role: &str) -> Value {
        let body = json!({"email": email, "name": name, "password": PASSWORD, "role": role});
        self.post("/api/users", &body).await.expect(201)
    }

    /// Creates a `member` user (as an admin) and signs it in.
    pub(crate) async fn new_member(&self, server: &TestServer, email: &str, name: &str) -> Self {
        self.create_user(email, name, "member").await;
        Self::login(server, email, PASSWORD).await
    }

    /// Creates a workspace; returns the `Workspace`.
    pub(crate) async fn create_workspace(&self, name: &str) -> Value {
        self.post("/api/workspaces", &json!({"name": name}))
            .await
            .expect(201)
    }

    /// Adds `user` to `ws` with `role`; returns the `Member`.
    pub(crate) async fn add_member(&self, ws: &str, user: &str, role: &str) -> Value {
        let body = json!({"userId": user, "role": role});
        self.post(&format!("/api/workspaces/{ws}/members"), &body)
            .await
            .expect(201)
    }

    /// Creates a resource in `collection` of `ws`; returns it.
    pub(crate) async fn create(&self, ws: &str, collection: &str, body: Value) -> Value {
        self.post(&format!("/api/workspaces/{ws}/{collection}"), &body)
            .await
            .expect(201)
    }

    /// A request for the event stream at `path` (with its query, if any).
    pub(crate) fn events(&self, path: &str) -> AppStreamReq {
        AppStreamReq {
            client: self.clone(),
            path: path.to_owned(),
            headers: Vec::new(),
        }
    }
}

/// A whole answer of the app.
pub(crate) struct Reply {
    /// The request, for messages: `POST /api/login`.
    pub(crate) what: String,
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body.
    pub(crate) body: String,
}

impl Reply {
    async fn read(what: String, response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: read the body: {e}"));
        Self {
            what,
            status,
            headers,
            body,
        }
    }

    /// Asserts the status; returns the JSON body (`null` for a 204, whose body must be
    /// empty).
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{} answered {}: {}",
            self.what,
            self.status,
            self.body
        );
        if status == 204 {
            assert_eq!(self.body, "", "{}: a 204 has no body", self.what);
            return Value::Null;
        }
        let content_type = header(&self.headers, "content-type");
        assert!(
            content_type.starts_with("application/json"),
            "{} answered content-type {content_type:?}: {}",
            self.what,
            self.body
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: the body is not JSON ({e}): {}", self.what, self.body))
    }

    /// Asserts an error answer with `status` and `code`, whose body is exactly the JSON
    /// object `{error, message}` with a message.
    #[track_caller]
    pub(crate) fn expect_error(self, status: u16, code: &str) -> ApiError {
        let what = &self.what;
        let body = &self.body;
        assert_eq!(
            self.status.as_u16(),
            status,
            "{what} answered {}: {body}",
            self.status
        );
        let content_type = header(&self.headers, "content-type");
        assert!(
            content_type.starts_with("application/json"),
            "{what} answered {status} with content-type {content_type:?}: {body}"
        );
        let json: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {body}"));
        assert_eq!(
            keys(&json),
            ["error", "message"],
            "{what}: an error is exactly {{error, message}}: {body}"
        );
        let error = ApiError {
            status: self.status.as_u16(),
            code: text(&json, "error"),
            message: text(&json, "message"),
        };
        assert_eq!(error.code, code, "{what} answered {status}: {body}");
        assert!(!error.message.is_empty(), "{what}: an empty message");
        error
    }

    /// The `Set-Cookie` header that sets the session cookie.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub(crate) fn set_session_cookie(&self) -> String {
        let prefix = format!("{SESSION_COOKIE}=");
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().expect("a text Set-Cookie").to_owned())
            .find(|value| value.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{}: no Set-Cookie {prefix}…", self.what))
    }

    /// `herald_session=<value>`, as a `Cookie` header sends it back.
    pub(crate) fn session_cookie(&self) -> String {
        let set_cookie = self.set_session_cookie();
        set_cookie
            .split(';')
            .next()
            .expect("a cookie pair")
            .trim()
            .to_owned()
    }
}

/// A request for one of the app's event streams, being built.
pub(crate) struct AppStreamReq {
    client: AppClient,
    path: String,
    headers: Vec<(String, String)>,
}

impl AppStreamReq {
    /// Sends the `Last-Event-ID` header.
    pub(crate) fn last_event_id(mut self, id: &str) -> Self {
        self.headers
            .push(("last-event-id".to_owned(), id.to_owned()));
        self
    }

    async fn send(&self) -> reqwest::Response {
        let mut request = self
            .client
            .request(Method::GET, &self.path)
            .header("accept", "text/event-stream");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.path))
    }

    /// Opens the stream and reads up to its `connected` event, asserting 200, the SSE
    /// headers, `connected` first and a `retry:` hint.
    pub(crate) async fn open(self) -> AppStream {
        let what = format!("GET {}", self.path);
        let response = self.send().await;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("{what} answered {status}: {body}");
        }
        let content_type = header(response.headers(), "content-type");
        assert!(
            content_type.starts_with("text/event-stream"),
            "{what}: content-type {content_type:?}"
        );
        for (name, value) in [
            ("cache-control", "no-cache, no-transform"),
            ("x-accel-buffering", "no"),
        ] {
            assert_eq!(header(response.headers(), name), value, "{what}: {name}");
        }
        let mut sse = Sse::new(response);
        // The opening: `connected` first of the events, with a `retry:` hint before or right
        // after it.
        let mut retry = false;
        let connected = loop {
            match sse.next_item().await {
                Some(Item::Retry(_)) => retry = true,
                Some(Item::Comment(_)) => {}
                Some(Item::Message(message)) => break message,
                None => panic!("{what}: the stream ended before `connected`"),
            }
        };
        assert_eq!(
            connected.event, "connected",
            "{what}: the first event: {connected:?}"
        );
        while !retry {
            match sse.next_item().await {
                Some(Item::Retry(_)) => retry = true,
                Some(Item::Comment(_)) => {}
                other => {
                    panic!("{what}: no retry: hint at the opening; after `connected`: {other:?}")
                }
            }
        }
        let connected = serde_json::from_str(&connected.data).unwrap_or_else(|e| {
            panic!("{what}: `connected` data is not JSON ({e}): {connected:?}")
        });
        AppStream {
            sse,
            connected,
            what,
        }
    }

    /// Sends the request, expecting an error answer with `status` and `code`.
    pub(crate) async fn error(self, status: u16, code: &str) -> ApiError {
        let what = format!("GET {}", self.path);
        let response = self.send().await;
        assert_ne!(
            response.status(),
            StatusCode::OK,
            "{what}: expected {status}, the stream opened"
        );
        Reply::read(what, response).await.expect_error(status, code)
    }
}

/// One event of an app stream.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AppEvent {
    /// The `event:` field.
    pub(crate) event: String,
    /// The `id:` field (the last event id at dispatch).
    pub(crate) id: String,
    /// The `data:`, parsed as JSON (a JSON string when it is not JSON).
    pub(crate) data: Value,
}

/// An open app stream, past its `connected` event.
pub(crate) struct AppStream {
    sse: Sse,
    /// The data of the `connected` event.
    pub(crate) connected: Value,
    what: String,
}

impl AppStream {
    /// The workspaces of the `connected` event, sorted.
    pub(crate) fn connected_workspaces(&self) -> Vec<String> {
        let mut list: Vec<String> = self.connected["workspaces"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: connected without workspaces", self.what))
            .iter()
            .map(|ws| ws.as_str().expect("a workspace id").to_owned())
            .collect();
        list.sort_unstable();
        list
    }

    /// The next event, `Ok(None)` at the end of the stream, `Err(())` when none came
    /// `within`. Skips `retry:` hints and comments.
    pub(crate) async fn next_event_within(
        &mut self,
        within: Duration,
    ) -> Result<Option<AppEvent>, ()> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sse.next_item_within(left).await? {
                Some(Item::Message(message)) => {
                    let data = serde_json::from_str(&message.data)
                        .unwrap_or_else(|_| Value::String(message.data.clone()));
                    return Ok(Some(AppEvent {
                        event: message.event,
                        id: message.last_event_id,
                        data,
                    }));
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next event.
    ///
    /// # Panics
    ///
    /// At the end of the stream, or after [`ITEM_TIMEOUT`] without one.
    pub(crate) async fn next_event(&mut self) -> AppEvent {
        match self.next_event_within(ITEM_TIMEOUT).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("{}: the stream ended while waiting for an event", self.what),
            Err(()) => panic!("{}: no event within {ITEM_TIMEOUT:?}", self.what),
        }
    }

    /// The events up to and including the one with id `last`.
    ///
    /// # Panics
    ///
    /// When the stream ends or stalls first; the message lists what came.
    pub(crate) async fn events_until(&mut self, last: &str) -> Vec<AppEvent> {
        let mut events = Vec::new();
        loop {
            match self.next_event_within(ITEM_TIMEOUT).await {
                Ok(Some(event)) => {
                    let done = event.id == last;
                    events.push(event);
                    if done {
                        return events;
                    }
                }
                Ok(None) => panic!(
                    "{}: the stream ended before {last:?}; received {events:#?}",
                    self.what
                ),
                Err(()) => panic!(
                    "{}: no event within {ITEM_TIMEOUT:?} while waiting for {last:?}; received {events:#?}",
                    self.what
                ),
            }
        }
    }

    /// Asserts that the stream ends within `within`, with no other event first.
    pub(crate) async fn expect_end(&mut self, within: Duration) {
        match self.next_event_within(within).await {
            Ok(None) => {}
            Ok(Some(event)) => panic!("{}: expected the end, got {event:?}", self.what),
            Err(()) => panic!("{}: the stream did not end within {within:?}", self.what),
        }
    }
}

/// The users and workspaces most app tests start from, on a fresh server: the admin; Alice,
/// who owns `ws`; Bob, a member of `ws`; Carol, who is not, and owns `carol_ws`. All
/// three are `member` users, signed in with a session cookie.
pub(crate) struct AppWorld {
    /// The server.
    pub(crate) server: TestServer,
    /// The admin.
    pub(crate) admin: AppClient,
    /// The owner of `ws`.
    pub(crate) alice: AppClient,
    /// A member of `ws`.
    pub(crate) bob: AppClient,
    /// Not a member of `ws`.
    pub(crate) carol: AppClient,
    /// The workspace "Team".
    pub(crate) ws: String,
    /// Carol's own workspace.
    pub(crate) carol_ws: String,
}

impl AppWorld {
    /// Starts a server and creates the users and workspaces.
    pub(crate) async fn start() -> Self {
        let server = TestServer::app().await;
        let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let alice = admin
            .new_member(&server, "alice@example.com", "Alice")
            .await;
        let bob = admin.new_member(&server, "bob@example.com", "Bob").await;
        let carol = admin
            .new_member(&server, "carol@example.com", "Carol")
            .await;
        let ws = id_of(&alice.create_workspace("Team").await);
        alice.add_member(&ws, &bob.id(), "member").await;
        let carol_ws = id_of(&carol.create_workspace("Carol's").await);
        Self {
            server,
            admin,
            alice,
            bob,
            carol,
            ws,
            carol_ws,
        }
    }

    /// `/api/workspaces/{ws}/{rest}` (`rest` without a leading slash; empty for the
    /// workspace itself).
    pub(crate) fn ws_path(&self, rest: &str) -> String {
        if rest.is_empty() {
            format!("/api/workspaces/{}", self.ws)
        } else {
            format!("/api/workspaces/{}/{rest}", self.ws)
        }
    }
}

/// Appends what `pipe` yields to `log`, keeping the tail only: enough to explain a failure.
pub(crate) async fn keep_tail(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    log: Arc<Mutex<String>>,
) {
    let mut buf = vec![0; 8192];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let mut text = log.lock().unwrap();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.len() > 256 * 1024 {
            let cut = text.len() - 128 * 1024;
            let cut = (cut..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.drain(..cut);
        }
    }
}
