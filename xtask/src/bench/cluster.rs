//! What `cargo xtask bench app` runs its measurements against: Herald nodes ([`Nodes`]) on
//! SQLite or on a shared PostgreSQL ([`Postgres`]) and Redis ([`Redis`]), each process on
//! loopback and pinned to CPU 0, stopped by PID; and the few REST calls the driver makes
//! itself ([`call`]).

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use herald_bench::http::{Body, HeadError, parse_head};

use super::{
    harness::{command_output, tail},
    peers::{START_TIMEOUT, STOP_TIMEOUT, pinned},
    procs::{alive, signal},
};

/// The admin the nodes make on their first start (a throwaway server's; not a secret).
pub(super) const ADMIN_EMAIL: &str = "admin@bench.example";
pub(super) const ADMIN_PASSWORD: &str = "bench-admin-password";

/// The first node's port; node `i` listens on `NODE_PORT + i`.
const NODE_PORT: u16 = 18300;
const POSTGRES_PORT: u16 = 18350;
const REDIS_PORT: u16 = 18351;

/// Where Debian installs each PostgreSQL major version, as `<version>/bin`.
const POSTGRES_VERSIONS: &str = "/usr/lib/postgresql";

/// Time allowed for one REST call of the driver (a login hashes with argon2).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process stopped by PID (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) when
/// dropped, if [`Proc::stop`] was not called.
pub(super) struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// The signal that stops it cleanly (PostgreSQL's fast shutdown is SIGINT).
    stop_signal: &'static str,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path, stop_signal: &'static str) -> Result<Proc> {
        let file = fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            stop_signal,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails if the process has exited, with the end of its log.
    fn check_running(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            bail!("{} exited ({status}): {}", self.name, tail(&log, 10));
        }
        Ok(())
    }

    pub(super) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        signal(pid, self.stop_signal);
        let started = Instant::now();
        while matches!(child.try_wait(), Ok(None)) {
            if started.elapsed() > STOP_TIMEOUT {
                println!(
                    "warning: {} (pid {pid}) ignored SIG{}; killed",
                    self.name, self.stop_signal
                );
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // PostgreSQL's backends exit with the postmaster; wait for none to be left.
        while alive(pid) && started.elapsed() < STOP_TIMEOUT {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fails unless `port` of 127.0.0.1 is free.
fn ensure_free(port: u16) -> Result<()> {
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        bail!("port 127.0.0.1:{port} is in use: is a server of an earlier run still up?");
    }
    Ok(())
}

/// A PostgreSQL cluster for the whole bench run (one database per measurement), fsync on.
pub(super) struct Postgres {
    pub(super) proc: Proc,
    bin: PathBuf,
    dir: PathBuf,
}

impl Postgres {
    pub(super) fn start(dir: &Path) -> Result<Postgres> {
        ensure_free(POSTGRES_PORT)?;
        let bin = postgres_bin()?;
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
        let owner = cluster_owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        let data = dir.join("data");
        let mut initdb = pg_command(&bin.join("initdb"), owner, dir);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        command_output(&mut initdb).context("initdb")?;
        let mut postgres = pg_command(&bin.join("postgres"), owner, dir);
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &POSTGRES_PORT.to_string(), "-k"])
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
            .args(["-c", "shared_buffers=128MB", "-c", "max_connections=200"]);
        // Pinned like the nodes: every server process shares CPU 0.
        let mut pinned_postgres = Command::new("taskset");
        pinned_postgres
            .args(["-c", "0"])
            .arg(postgres.get_program())
            .args(postgres.get_args())
            .current_dir(dir);
        clear_pg_env(&mut pinned_postgres);
        if let Some((uid, gid)) = owner {
            pinned_postgres
                .uid(uid)
                .gid(gid)
                .env("HOME", dir)
                .env("USER", "postgres");
        }
        let proc = Proc::spawn(
            "postgres",
            pinned_postgres,
            &dir.join("postgres.log"),
            "INT",
        )?;
        let mut pg = Postgres {
            proc,
            bin,
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        loop {
            pg.proc.check_running()?;
            if pg
                .psql("postgres", "select 1")
                .is_ok_and(|out| out.trim() == "1")
            {
                return Ok(pg);
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("PostgreSQL did not answer within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub(super) fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = pg_command(&self.bin.join("psql"), None, Path::new("/"));
        cmd.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &POSTGRES_PORT.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-c", sql]);
        command_output(&mut cmd)
    }

    /// A new empty database `name`; its URL.
    pub(super) fn database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{POSTGRES_PORT}/{name}"
        ))
    }

    pub(super) fn drop_database(&self, name: &str) {
        if let Err(e) = self.psql("postgres", &format!("DROP DATABASE IF EXISTS {name}")) {
            println!("warning: cannot drop database {name}: {e:#}");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.proc.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `bin` directory of the newest PostgreSQL installed.
fn postgres_bin() -> Result<PathBuf> {
    let entries = fs::read_dir(POSTGRES_VERSIONS).with_context(|| {
        format!("cannot list {POSTGRES_VERSIONS}: install PostgreSQL (`cargo xtask test` does)")
    })?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "postgres", "psql"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL with initdb, postgres and psql")
}

/// The uid and gid of `postgres` when we run as root (`initdb` refuses root).
fn cluster_owner() -> Result<Option<(u32, u32)>> {
    if fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    ids.map(Some).context("no postgres user")
}

fn clear_pg_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
}

fn pg_command(program: &Path, owner: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    clear_pg_env(&mut cmd);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid)
            .gid(gid)
            .env("HOME", dir)
            .env("USER", "postgres");
    }
    cmd.current_dir(dir);
    cmd
}

/// A Redis for the whole bench run, every write synced (`appendfsync always`), as a
/// cluster's event log runs in production; each measurement uses its own key prefix.
pub(super) struct Redis {
    pub(super) proc: Proc,
    port: u16,
}

impl Redis {
    pub(super) fn start(dir: &Path) -> Result<Redis> {
        ensure_free(REDIS_PORT)?;
        fs::create_dir_all(dir)?;
        let args: Vec<String> = [
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.to_string_lossy(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut cmd = pinned(Path::new("redis-server"), &args);
        cmd.current_dir(dir);
        let mut proc = Proc::spawn("redis-server", cmd, &dir.join("redis.log"), "TERM")?;
        let started = Instant::now();
        loop {
            proc.check_running()?;
            if redis_command(REDIS_PORT, "PING").is_ok_and(|r| r.starts_with("+PONG")) {
                return Ok(Redis {
                    proc,
                    port: REDIS_PORT,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("Redis did not answer PING within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Empties Redis between measurements, so that none reads another's streams.
    pub(super) fn flush(&self) {
        if let Err(e) = redis_command(self.port, "FLUSHALL") {
            println!("warning: Redis FLUSHALL: {e:#}");
        }
    }
}

/// Sends one inline command and returns the first line of the reply.
fn redis_command(port: u16, command: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

/// Where the nodes keep the app's data.
pub(super) enum Backend<'a> {
    /// One node, SQLite in its data directory.
    Sqlite,
    /// Nodes sharing a PostgreSQL database and Redis (under its own key prefix).
    Cluster {
        database_url: String,
        redis: &'a Redis,
        prefix: String,
    },
}

/// Running Herald nodes.
pub(super) struct Nodes {
    pub(super) procs: Vec<Proc>,
    pub(super) ports: Vec<u16>,
    pub(super) command: String,
    /// On PostgreSQL and Redis.
    pub(super) clustered: bool,
    dir: PathBuf,
}

impl Nodes {
    /// Starts `count` nodes of `bin` with fresh data directories under `dir`, waits until
    /// each answers `/readyz`.
    pub(super) fn start(bin: &Path, count: usize, backend: &Backend, dir: &Path) -> Result<Nodes> {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
        let mut nodes = Nodes {
            procs: Vec::new(),
            ports: Vec::new(),
            command: String::new(),
            clustered: matches!(backend, Backend::Cluster { .. }),
            dir: dir.to_owned(),
        };
        for i in 0..count {
            let port = NODE_PORT + i as u16;
            ensure_free(port)?;
            let data = dir.join(format!("node{i}"));
            let mut args: Vec<String> = [
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                &data.to_string_lossy(),
                "--max-connections-per-ip",
                "100000",
                "--app-change-rate",
                "0",
                // On, as by default, and never reached: charging a change to its workspace
                // costs what it costs a deployment (finding who may read the workspace).
                "--workspace-change-rate",
                "1000000/1s",
                "--login-ip-rate",
                "0",
                "--login-account-rate",
                "0",
                "--login-failure-rate",
                "0",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            if let Backend::Cluster {
                database_url,
                redis,
                prefix,
            } = backend
            {
                args.extend([
                    "--database-url".into(),
                    database_url.clone(),
                    "--redis-url".into(),
                    redis.url(),
                    "--redis-prefix".into(),
                    prefix.clone(),
                ]);
            }
            let mut cmd = pinned(bin, &args);
            cmd.env("HERALD_ADMIN_EMAIL", ADMIN_EMAIL)
                .env("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("HERALD_LOG", "warn");
            if i == 0 {
                nodes.command = format!(
                    "HERALD_ADMIN_EMAIL=… HERALD_ADMIN_PASSWORD=… taskset -c 0 {} {}",
                    bin.display(),
                    args.join(" ").replace(&*dir.to_string_lossy(), "<tmp>")
                );
            }
            let log = dir.join(format!("node{i}.log"));
            nodes
                .procs
                .push(Proc::spawn(&format!("herald node {i}"), cmd, &log, "TERM")?);
            nodes.ports.push(port);
            // One at a time: the first start of a cluster migrates the database and makes
            // the admin.
            nodes.wait_ready(i)?;
        }
        Ok(nodes)
    }

    fn wait_ready(&mut self, i: usize) -> Result<()> {
        let started = Instant::now();
        loop {
            self.procs[i].check_running()?;
            if call(self.ports[i], "GET", "/readyz", None, None).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("node {i} was not ready within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }

    pub(super) fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    pub(super) fn stop(mut self) {
        for proc in &mut self.procs {
            proc.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// An answer to [`call`].
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) set_cookie: Option<String>,
    pub(super) body: String,
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, on its own connection.
pub(super) fn call(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json: Option<&str>,
) -> Result<Answer> {
    let mut stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let (head, len) = parse_head(&raw).map_err(|e: HeadError| anyhow::anyhow!("{e}"))?;
    let mut decoded = Vec::new();
    Body::new(head.framing)
        .decode(&raw[len..], |chunk| decoded.extend_from_slice(chunk))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Answer {
        status: head.status,
        set_cookie: head
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .map(str::to_owned),
        body: String::from_utf8_lossy(&decoded).into_owned(),
    })
}

/// Signs the admin in on `port` and creates a workspace; the session cookie and the
/// workspace's id.
pub(super) fn admin_workspace(port: u16) -> Result<(String, String)> {
    let login = serde_json::json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
    let answer = call(port, "POST", "/api/login", None, Some(&login.to_string()))?;
    if answer.status != 200 {
        bail!("admin login: status {}: {}", answer.status, answer.body);
    }
    let cookie = answer.set_cookie.context("the login set no cookie")?;
    let body = serde_json::json!({ "name": "wrk" }).to_string();
    let answer = call(port, "POST", "/api/workspaces", Some(&cookie), Some(&body))?;
    if answer.status != 201 {
        bail!(
            "create a workspace: status {}: {}",
            answer.status,
            answer.body
        );
    }
    let created: serde_json::Value = serde_json::from_str(&answer.body)?;
    let ws = created["id"]
        .as_str()
        .context("no workspace id")?
        .to_owned();
    Ok((cookie, ws))
}
