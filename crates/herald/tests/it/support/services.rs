//! Real backing services for the tests: [`Redis`] (what a cluster of Herald nodes shares its
//! event log through) and [`Postgres`] (the app's data), each a real server process on its
//! own free port with a throwaway directory, stopped when dropped.
//!
//! Nothing is skipped: when a server's binaries are missing the test fails and says to run
//! `cargo xtask test`, which installs them. Ports come from below the kernel's ephemeral
//! range, so no outgoing connection (a Herald node reconnecting to a stopped Redis, say) can
//! take a service's port while it is down, nor connect to itself on it.

use std::{
    hash::{BuildHasher, RandomState},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    time::{Instant, sleep, timeout},
};

use super::keep_tail;

/// How long a service may take to start answering. Generous: two cores run the test binary,
/// several debug Herald servers and the services at once.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a service may take to exit after it was asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);

/// Where Debian installs `redis-server`.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Where Debian installs each PostgreSQL major version, as `<version>/bin`.
const POSTGRES_VERSIONS: &str = "/usr/lib/postgresql";

/// What a missing binary's panic says.
const INSTALL_HINT: &str = "run `cargo xtask test`, which installs the services the tests need";

/// A `redis-server` on a free port of 127.0.0.1, with a throwaway directory and an
/// append-only file synced on every write, so an acknowledged write survives a restart and
/// even `kill -9`. Killed (SIGKILL) when dropped.
pub(crate) struct Redis {
    /// `None` while stopped.
    child: Option<Child>,
    /// What the running process wrote (Redis logs to stdout).
    log: Arc<Mutex<String>>,
    port: u16,
    /// The data directory: the append-only file lives here, across restarts.
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a Redis and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed, or does not answer within [`START_TIMEOUT`].
    pub(crate) async fn start() -> Self {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing: {INSTALL_HINT}"
        );
        let dir = tempfile::tempdir().expect("create a directory for Redis");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let port = free_port();
            match launch_redis(port, dir.path(), deadline).await {
                Ok((child, log)) => {
                    return Self {
                        child: Some(child),
                        log,
                        port,
                        dir,
                    };
                }
                // Someone took the port between our probe and Redis' bind: take another.
                Err(log) if port_taken(&log) && Instant::now() < deadline => {}
                Err(log) => panic!("redis-server failed to start:\n{log}"),
            }
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// What the server logged since it last started.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and wait until the process is gone (Redis flushes its append-only file and
    /// exits).
    ///
    /// # Panics
    ///
    /// When it is not running, or does not exit within [`STOP_TIMEOUT`].
    pub(crate) async fn stop(&mut self) {
        let mut child = self.child.take().expect("Redis is running");
        signal(&child, "TERM").await;
        let status = timeout(STOP_TIMEOUT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "redis-server did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                    self.log()
                )
            })
            .expect("wait for redis-server");
        assert!(
            status.success(),
            "redis-server exited with {status} on SIGTERM:\n{}",
            self.log()
        );
    }

    /// SIGKILL, and wait until the process is gone.
    ///
    /// # Panics
    ///
    /// When it is not running.
    pub(crate) async fn kill9(&mut self) {
        let mut child = self.child.take().expect("Redis is running");
        child.start_kill().expect("send SIGKILL to redis-server");
        child.wait().await.expect("wait for redis-server");
    }

    /// Starts the server again on the same port and directory (so with the same data), and
    /// waits until it answers `PING`. Stops it (SIGTERM) first if it is running. Retries
    /// while the port is not yet free.
    ///
    /// # Panics
    ///
    /// When it does not answer within [`START_TIMEOUT`].
    pub(crate) async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match launch_redis(self.port, self.dir.path(), deadline).await {
                Ok((child, log)) => {
                    self.child = Some(child);
                    self.log = log;
                    return;
                }
                Err(log) if port_taken(&log) && Instant::now() < deadline => {
                    sleep(Duration::from_millis(50)).await;
                }
                Err(log) => panic!("redis-server failed to restart:\n{log}"),
            }
        }
    }

    /// Sends one command and returns its reply: the text of a simple string, error or
    /// integer reply (with its `+`, `-` or `:`), the payload of a bulk string, `(nil)` for a
    /// null one. Arrays are not supported.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or does not answer within [`START_TIMEOUT`].
    pub(crate) async fn command(&self, args: &[&str]) -> String {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        let exchange = async {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end_matches("\r\n").to_owned();
            let Some(len) = line.strip_prefix('$') else {
                return Ok::<_, std::io::Error>(line);
            };
            let Ok(len) = usize::try_from(len.parse::<i64>().unwrap_or(-1)) else {
                return Ok("(nil)".to_owned());
            };
            let mut payload = vec![0; len + 2];
            reader.read_exact(&mut payload).await?;
            payload.truncate(len);
            Ok(String::from_utf8_lossy(&payload).into_owned())
        };
        timeout(START_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("Redis did not answer {args:?}"))
            .unwrap_or_else(|e| panic!("Redis {args:?}: {e}\n{}", self.log()))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Also done by kill_on_drop; explicit so the intent is plain.
            let _ = child.start_kill();
        }
    }
}

/// Spawns `redis-server` on `port` with its data in `dir`, and waits until it answers
/// `PING`; on failure returns what it logged.
async fn launch_redis(
    port: u16,
    dir: &Path,
    deadline: Instant,
) -> Result<(Child, Arc<Mutex<String>>), String> {
    let mut command = Command::new(REDIS_SERVER);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        // Durable: every write reaches the disk before Redis acknowledges it.
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(["--save", "", "--daemonize", "no"])
        .current_dir(dir);
    let (mut child, log) = spawn(command);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(exited(&log, status).await);
        }
        if ping(port).await {
            return Ok((child, log));
        }
        if Instant::now() >= deadline {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "no PONG within {START_TIMEOUT:?}; log:\n{}",
                log.lock().unwrap()
            ));
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG` (not `-LOADING`, say).
async fn ping(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line == "+PONG\r\n")
    };
    matches!(
        timeout(Duration::from_secs(1), exchange).await,
        Ok(Ok(true))
    )
}

/// A throwaway PostgreSQL cluster on a free port of 127.0.0.1, with a database `herald`.
/// Its directory belongs to the `postgres` user when we run as root (`initdb` refuses
/// root). Stopped (fast shutdown, then SIGKILL) and removed when dropped.
pub(crate) struct Postgres {
    /// The postmaster itself, not a wrapper, so signals reach it.
    child: Option<Child>,
    /// What it logged.
    log: Arc<Mutex<String>>,
    port: u16,
    /// The binaries of the newest installed version.
    bin: PathBuf,
    /// Holds `data/` (the cluster) and the Unix socket. Declared after `child`, so it is
    /// removed after the server stopped.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a cluster with `initdb`, starts it, waits until `psql` can run a query, and
    /// creates the database `herald`.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not installed, or a step fails or takes too long; the message
    /// holds the server's log.
    pub(crate) async fn start() -> Self {
        let bin = postgres_bin();
        let owner = cluster_owner();
        let dir = tempfile::tempdir().expect("create a directory for PostgreSQL");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the PostgreSQL directory to the postgres user");
        }
        let data = dir.path().join("data");

        let mut initdb = pg_command(&bin.join("initdb"), owner, dir.path());
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            // A throwaway cluster: no need to sync the files initdb writes. The server
            // itself runs with fsync on.
            .arg("--no-sync");
        let output = timeout(INITDB_TIMEOUT, initdb.output())
            .await
            .unwrap_or_else(|_| panic!("initdb took more than {INITDB_TIMEOUT:?}"))
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        let deadline = Instant::now() + START_TIMEOUT;
        let (child, log, port) = loop {
            let port = free_port();
            let mut postgres = pg_command(&bin.join("postgres"), owner, dir.path());
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
                // Small, so that several clusters fit beside the tests.
                .args(["-c", "shared_buffers=16MB", "-c", "max_connections=100"]);
            let (mut child, log) = spawn(postgres);
            match wait_for_postgres(&bin, &mut child, &log, port, deadline).await {
                Ok(()) => break (child, log, port),
                Err(text) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    if !(port_taken(&text) && Instant::now() < deadline) {
                        panic!("PostgreSQL failed to start: {text}");
                    }
                }
            }
        };
        let postgres = Self {
            child: Some(child),
            log,
            port,
            bin,
            dir,
        };
        postgres.psql_in("postgres", "CREATE DATABASE herald").await;
        postgres
    }

    /// `postgres://postgres@127.0.0.1:<port>/herald`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/herald", self.port)
    }

    /// What the server logged.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Runs `sql` in the database `herald` with `psql`; returns its output, unaligned and
    /// without headers (`select 1, 2` gives `1|2`).
    ///
    /// # Panics
    ///
    /// When the statement fails.
    pub(crate) async fn psql(&self, sql: &str) -> String {
        self.psql_in("herald", sql).await
    }

    /// A `psql` session on the database `herald` whose statements the test sends one by
    /// one (to hold a transaction open, say). It shows in `pg_stat_activity` with the
    /// `application_name` [`PG_SESSION_NAME`].
    pub(crate) fn session(&self) -> PgSession {
        let mut command = pg_command(&self.bin.join("psql"), None, Path::new("/"));
        command
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "herald"])
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGAPPNAME", PG_SESSION_NAME)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("run psql");
        let stdin = child.stdin.take().expect("psql's stdin");
        PgSession { child, stdin }
    }

    async fn psql_in(&self, database: &str, sql: &str) -> String {
        psql(&self.bin, self.port, database, sql)
            .await
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}\nserver log:\n{}", self.log()))
    }
}

/// The `application_name` of a [`PgSession`].
pub(crate) const PG_SESSION_NAME: &str = "herald-test-session";

/// A `psql` session fed statement by statement (see [`Postgres::session`]); killed when
/// dropped.
pub(crate) struct PgSession {
    child: Child,
    stdin: tokio::process::ChildStdin,
}

impl PgSession {
    /// Sends `sql` (whole statements, `;`-terminated); psql runs them as it reads them.
    pub(crate) async fn send(&mut self, sql: &str) {
        self.stdin
            .write_all(format!("{sql}\n").as_bytes())
            .await
            .expect("write to psql");
        self.stdin.flush().await.expect("write to psql");
    }

    /// Ends the session (`\q`) and waits for psql to exit, successfully.
    pub(crate) async fn end(mut self) {
        self.send("\\q").await;
        let status = timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("psql exits within 30 s")
            .expect("wait for psql");
        assert!(status.success(), "psql failed: {status}");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(child) = &mut self.child else { return };
        // SIGINT is the fast shutdown: it disconnects clients. SIGTERM is the "smart" one,
        // which waits until every client, a Herald still running say, has left.
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // A synchronous wait (no runtime in drop), bounded by a count of short sleeps.
        let polls = STOP_TIMEOUT.as_millis() / 20;
        for _ in 0..polls {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.start_kill();
        for _ in 0..polls {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `bin` directory of the newest PostgreSQL installed under [`POSTGRES_VERSIONS`] that
/// has `initdb`, `postgres` and `psql`.
fn postgres_bin() -> PathBuf {
    let entries = std::fs::read_dir(POSTGRES_VERSIONS)
        .unwrap_or_else(|e| panic!("cannot list {POSTGRES_VERSIONS} ({e}): {INSTALL_HINT}"));
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            // "15", or "9.6" for old ones; compare numerically.
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "postgres", "psql"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| {
            panic!("no PostgreSQL with initdb, postgres and psql under {POSTGRES_VERSIONS}: {INSTALL_HINT}")
        })
}

/// The uid and gid of the `postgres` user when we run as root, who may not run a cluster;
/// `None` otherwise (the cluster then belongs to us).
fn cluster_owner() -> Option<(u32, u32)> {
    // /proc/self belongs to the effective user of the process.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    Some(ids.unwrap_or_else(|| panic!("no postgres user: {INSTALL_HINT}")))
}

/// A command for a PostgreSQL tool, run as `owner` if any (the process itself switches
/// user, so signals sent to it reach the tool rather than a `runuser` in between), from
/// `dir`, with no `PG*` variables inherited.
fn pg_command(program: &Path, owner: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
    if let Some((uid, gid)) = owner {
        command
            .uid(uid)
            .gid(gid)
            .env("HOME", dir)
            .env("USER", "postgres");
    }
    command.current_dir(dir).stdin(Stdio::null());
    command
}

/// Waits until the server on `port` accepts a TCP connection and `psql` runs `select 1`.
async fn wait_for_postgres(
    bin: &Path,
    child: &mut Child,
    log: &Arc<Mutex<String>>,
    port: u16,
    deadline: Instant,
) -> Result<(), String> {
    let mut last_error = String::new();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(exited(log, status).await);
        }
        let listening = timeout(
            Duration::from_secs(1),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .is_ok_and(|connected| connected.is_ok());
        if listening {
            match psql(bin, port, "postgres", "select 1").await {
                Ok(out) if out == "1" => return Ok(()),
                Ok(out) => last_error = format!("select 1 gave {out:?}"),
                Err(e) => last_error = e,
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready within {START_TIMEOUT:?} (last psql error: {last_error}); log:\n{}",
                log.lock().unwrap()
            ));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `sql` in `database` of the server on `port` over TCP; returns the trimmed output,
/// or what went wrong.
async fn psql(bin: &Path, port: u16, database: &str, sql: &str) -> Result<String, String> {
    let mut command = pg_command(&bin.join("psql"), None, Path::new("/"));
    command
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", database, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .kill_on_drop(true);
    let output = timeout(Duration::from_secs(30), command.output())
        .await
        .map_err(|_| "psql took more than 30 s".to_owned())?
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "psql exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Spawns `command` (killed on drop) and collects its stdout and stderr, so it never blocks
/// on a full pipe and a failure can show what it said.
fn spawn(mut command: Command) -> (Child, Arc<Mutex<String>>) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let log = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(keep_tail(stdout, log.clone()));
    tokio::spawn(keep_tail(stderr, log.clone()));
    (child, log)
}

/// The log of a process that exited, with its status; waits briefly for the pipes to
/// drain first.
async fn exited(log: &Arc<Mutex<String>>, status: std::process::ExitStatus) -> String {
    sleep(Duration::from_millis(100)).await;
    format!("exited with {status}; log:\n{}", log.lock().unwrap())
}

/// Whether a server's log says its port was taken.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// Sends `SIG<name>` to `child`.
async fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the process is running").to_string();
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .await
        .expect("run kill");
    assert!(sent.success(), "kill -{name} {pid} failed");
}

/// A port of 127.0.0.1 that is free now, chosen at random below the kernel's ephemeral
/// range: outgoing connections never take it, and neither do servers that bind port 0.
fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // At most 10,000 ports below the range, none privileged.
    let first = low.saturating_sub(10_000).max(1024);
    if low <= first + 100 {
        // No room below the range: let the kernel choose.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("bind a free port")
            .port();
    }
    let random = RandomState::new();
    for attempt in 0u32..1000 {
        let offset = random.hash_one(attempt) % u64::from(low - first);
        let port = first + u16::try_from(offset).expect("offset below the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {first}..{low}");
}

/// The harness itself: each service starts, answers, keeps what it acknowledged and goes
/// away.
mod tests {
    use super::{Postgres, Redis};

    #[tokio::test]
    async fn redis_keeps_acknowledged_writes_across_restart_and_kill_9() {
        let mut redis = Redis::start().await;
        assert!(
            redis.url().starts_with("redis://127.0.0.1:"),
            "{}",
            redis.url()
        );
        assert_eq!(redis.command(&["SET", "k", "v1"]).await, "+OK");

        redis.stop().await;
        redis.restart().await;
        assert_eq!(redis.command(&["GET", "k"]).await, "v1");

        assert_eq!(redis.command(&["SET", "k", "v2"]).await, "+OK");
        redis.kill9().await;
        redis.restart().await;
        assert_eq!(redis.command(&["GET", "k"]).await, "v2");
        assert_eq!(redis.command(&["GET", "missing"]).await, "(nil)");
    }

    #[tokio::test]
    async fn postgres_runs_queries_in_the_herald_database_and_is_removed_on_drop() {
        let postgres = Postgres::start().await;
        let port = postgres.port;
        assert_eq!(
            postgres.url(),
            format!("postgres://postgres@127.0.0.1:{port}/herald")
        );
        assert_eq!(postgres.psql("select current_database()").await, "herald");
        assert_eq!(postgres.psql("show fsync").await, "on");
        postgres
            .psql("create table t (n int); insert into t values (1), (2)")
            .await;
        assert_eq!(postgres.psql("select sum(n) from t").await, "3");

        let dir = postgres.dir.path().to_owned();
        drop(postgres);
        assert!(!dir.exists(), "{} is still there", dir.display());
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
}
