//! The `herald` process of a test: [`TestServer`] starts it on a free port with its own
//! data directory, restarts, signals and kills it, and keeps the tail of its stderr;
//! [`run_herald`] runs one-shot commands to completion.

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
    time::{Instant, sleep, timeout},
};

use super::KEY;

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
