//! The servers compared ([`Peer`]) and one of them running ([`Server`]): started on
//! loopback pinned to CPU 0, waited for until it answers, stopped by PID; and installing the
//! packages they need.

use std::{
    env, fmt,
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    harness::{Harness, command_output, display_command_short, tail},
    procs::{alive, comm, descendants, signal},
    scenarios::Scenario,
};
use crate::{install_packages, modified, run};

/// The JWT key Herald runs with in the benchmark (at least 32 bytes; never a secret).
pub(super) const HERALD_KEY: &str = "herald-bench-key-not-a-secret-0123456789";

/// How long a server may take to answer its first request.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Nchan's message buffer in S5 (`bench/peers/nchan/nginx.conf` keeps 100): every event
/// of the run, so a subscriber that resumes finds what it missed.
pub(super) const NCHAN_S5_BUFFER: u32 = 200;

/// Where Debian's nginx keeps the Nchan module.
pub(super) const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// A server in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Peer {
    Herald,
    Nchan,
    Pushpin,
    Node,
    Python,
    /// The raw limit: [`raw_server`](super::raw::raw_server) writes each frame to every socket, nothing else.
    Raw,
}

impl Peer {
    pub(super) const ALL: [Peer; 6] = [
        Peer::Herald,
        Peer::Nchan,
        Peer::Pushpin,
        Peer::Node,
        Peer::Python,
        Peer::Raw,
    ];

    pub(super) fn parse(s: &str) -> Result<Peer> {
        Peer::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .with_context(|| {
                format!("unknown server `{s}` (herald, nchan, pushpin, node, python, raw)")
            })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Peer::Herald => "herald",
            Peer::Nchan => "nchan",
            Peer::Pushpin => "pushpin",
            Peer::Node => "node",
            Peer::Python => "python",
            Peer::Raw => "raw",
        }
    }

    pub(super) fn title(self) -> &'static str {
        match self {
            Peer::Herald => "Herald",
            Peer::Nchan => "Nchan",
            Peer::Pushpin => "Pushpin",
            Peer::Node => "Node (Express)",
            Peer::Python => "Python (sse-starlette)",
            Peer::Raw => "raw limit",
        }
    }

    /// The port its subscribers connect to.
    pub(super) fn port(self) -> u16 {
        match self {
            Peer::Herald => 18080,
            Peer::Nchan => 18081,
            Peer::Pushpin => 18082,
            Peer::Node => 18083,
            Peer::Python => 18084,
            Peer::Raw => 18085,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Pushpin's other loopback ports: origin, publish (HTTP), ZeroMQ push, sub and command.
pub(super) const PUSHPIN_ORIGIN_PORT: u16 = 18090;

pub(super) const PUSHPIN_PUBLISH_PORT: u16 = 18561;

pub(super) const PUSHPIN_ZMQ_PORTS: [u16; 3] = [18560, 18562, 18563];

/// A server under test.
pub(super) struct Server {
    pub(super) peer: Peer,
    /// The processes started, main one first (Pushpin's origin second).
    pub(super) children: Vec<Child>,
    /// The PID herald-bench measures (for Pushpin: condure, which holds the connections).
    pub(super) pid: u32,
    /// Roots of the process trees whose RSS and CPU [`Tree`](super::procs::Tree) sums.
    pub(super) tree_roots: Vec<u32>,
    pub(super) run_dir: PathBuf,
    pub(super) command: String,
    pub(super) sub_url: String,
    pub(super) pub_url: String,
    pub(super) publish_kind: &'static str,
    pub(super) token: Option<String>,
    /// `target/bench-run/<peer>.pids`, removed once the server is stopped.
    pub(super) pids_file: Option<PathBuf>,
    pub(super) stopped: bool,
}

impl Server {
    pub(super) fn start(
        ctx: &Harness,
        peer: Peer,
        durability: &str,
        scenario: Scenario,
    ) -> Result<Server> {
        let run_dir = ctx.run_root.join(peer.name());
        let pids_file = ctx.run_root.join(format!("{peer}.pids"));
        stop_leftovers(&pids_file);
        if run_dir.exists() {
            fs::remove_dir_all(&run_dir)?;
        }
        fs::create_dir_all(&run_dir)?;
        let mut ports = vec![peer.port()];
        if peer == Peer::Pushpin {
            ports.extend([PUSHPIN_ORIGIN_PORT, PUSHPIN_PUBLISH_PORT]);
            ports.extend(PUSHPIN_ZMQ_PORTS);
        }
        for port in ports {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!("port 127.0.0.1:{port} is in use: is a server of an earlier run still up?");
            }
        }
        let port = peer.port();
        let base = format!("http://127.0.0.1:{port}");
        let peers_dir = ctx.root.join("bench/peers");
        let mut server = Server {
            peer,
            children: Vec::new(),
            pid: 0,
            tree_roots: Vec::new(),
            run_dir: run_dir.clone(),
            command: String::new(),
            sub_url: String::new(),
            pub_url: String::new(),
            publish_kind: "json",
            token: None,
            pids_file: None,
            stopped: false,
        };
        let log = |name: &str| -> Result<(Stdio, Stdio)> {
            let file = fs::File::create(run_dir.join(name))?;
            Ok((file.try_clone()?.into(), file.into()))
        };
        match peer {
            Peer::Herald => {
                let data = run_dir.join("data");
                let args: Vec<String> = [
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                    &data.to_string_lossy(),
                    "--jwt-key",
                    HERALD_KEY,
                    "--anonymous",
                    "--durability",
                    durability,
                    "--max-connections-per-ip",
                    "100000",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                let token = command_output(
                    Command::new(&ctx.herald)
                        .args(["token", "--publish", "*", "--ttl", "4h", "--jwt-key"])
                        .arg(HERALD_KEY),
                )
                .context("herald token")?;
                server.token = Some(token.trim().to_owned());
                server.spawn(pinned(&ctx.herald, &args), log("server.log")?, &ctx.root)?;
                server.command = format!(
                    "taskset -c 0 target/release/herald {}",
                    args.join(" ")
                        .replace(&*run_dir.to_string_lossy(), "<tmp>")
                        .replace(HERALD_KEY, "<key>")
                );
                server.sub_url = format!("{base}/.well-known/mercure?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/.well-known/mercure");
                server.publish_kind = "mercure";
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Nchan => {
                let template = fs::read_to_string(peers_dir.join("nchan/nginx.conf"))?;
                let mut conf = template
                    .replace("@NCHAN_MODULE@", NCHAN_MODULE)
                    .replace("@RUN_DIR@", &run_dir.to_string_lossy())
                    .replace("@PORT@", &port.to_string());
                let mut shown = String::new();
                if scenario == Scenario::S5 {
                    // Resuming needs the missed events still buffered while the next ones
                    // are published: keep every event of the run.
                    let line = "nchan_message_buffer_length 100;";
                    if !conf.contains(line) {
                        bail!("bench/peers/nchan/nginx.conf has no `{line}` to raise for S5");
                    }
                    conf = conf.replace(
                        line,
                        &format!("nchan_message_buffer_length {NCHAN_S5_BUFFER};"),
                    );
                    shown = format!(", with nchan_message_buffer_length {NCHAN_S5_BUFFER}");
                }
                let conf_path = run_dir.join("nginx.conf");
                fs::write(&conf_path, conf)?;
                let args: Vec<String> = vec![
                    "-p".into(),
                    run_dir.to_string_lossy().into_owned(),
                    "-e".into(),
                    run_dir.join("error.log").to_string_lossy().into_owned(),
                    "-c".into(),
                    conf_path.to_string_lossy().into_owned(),
                ];
                server.spawn(
                    pinned(Path::new("nginx"), &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command = format!(
                    "taskset -c 0 nginx -p <tmp> -e <tmp>/error.log -c <tmp>/nginx.conf (bench/peers/nchan/nginx.conf{shown})"
                );
                server.sub_url = format!("{base}/sub?id=bench-{{topic}}");
                server.pub_url = format!("{base}/pub?id=bench-{{topic}}");
                server.publish_kind = "nchan";
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Pushpin => {
                // The origin first, then pushpin in front of it.
                let origin_args = vec![
                    peers_dir
                        .join("pushpin/origin.mjs")
                        .to_string_lossy()
                        .into_owned(),
                    "--port".into(),
                    PUSHPIN_ORIGIN_PORT.to_string(),
                ];
                let mut origin = pinned(Path::new("node"), &origin_args);
                let (out, err) = log("origin.log")?;
                let origin = origin
                    .current_dir(&run_dir)
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .context("cannot start the Pushpin origin (node)")?;
                let origin_pid = origin.id();
                // Owned by the server from here on, so a failed start stops it too.
                server.children.push(origin);
                server.tree_roots.push(origin_pid);
                let template = fs::read_to_string(peers_dir.join("pushpin/pushpin.conf"))?;
                let conf = template
                    .replace("@RUN_DIR@", &run_dir.to_string_lossy())
                    .replace("@PORT@", &port.to_string())
                    .replace("@PUBLISH_PORT@", &PUSHPIN_PUBLISH_PORT.to_string())
                    .replace("@ZMQ_PUSH_PORT@", &PUSHPIN_ZMQ_PORTS[0].to_string())
                    .replace("@ZMQ_SUB_PORT@", &PUSHPIN_ZMQ_PORTS[1].to_string())
                    .replace("@ZMQ_COMMAND_PORT@", &PUSHPIN_ZMQ_PORTS[2].to_string());
                fs::create_dir_all(run_dir.join("run"))?;
                fs::create_dir_all(run_dir.join("log"))?;
                fs::write(run_dir.join("pushpin.conf"), conf)?;
                fs::write(
                    run_dir.join("routes"),
                    format!("* 127.0.0.1:{PUSHPIN_ORIGIN_PORT}\n"),
                )?;
                let args = vec![
                    "--config".into(),
                    run_dir.join("pushpin.conf").to_string_lossy().into_owned(),
                ];
                server.spawn(
                    pinned(Path::new("pushpin"), &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command = format!(
                    "taskset -c 0 pushpin --config <tmp>/pushpin.conf (bench/peers/pushpin/pushpin.conf; routes `* 127.0.0.1:{PUSHPIN_ORIGIN_PORT}`), origin: taskset -c 0 node bench/peers/pushpin/origin.mjs --port {PUSHPIN_ORIGIN_PORT}"
                );
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("http://127.0.0.1:{PUSHPIN_PUBLISH_PORT}/publish/");
                server.publish_kind = "pushpin";
                // Through pushpin to the origin: the whole chain answers.
                wait_http(&mut server, port, "/healthz")?;
                wait_http(&mut server, PUSHPIN_PUBLISH_PORT, "/")?;
                let launcher = server.children[0].id();
                server.pid = descendants(launcher)
                    .into_iter()
                    .find(|&pid| comm(pid).as_deref() == Some("condure"))
                    .context("pushpin is up but has no condure process")?;
            }
            Peer::Node => {
                let args = vec![
                    peers_dir
                        .join("node/server.mjs")
                        .to_string_lossy()
                        .into_owned(),
                    "--port".into(),
                    port.to_string(),
                ];
                server.spawn(
                    pinned(Path::new("node"), &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command =
                    format!("taskset -c 0 node bench/peers/node/server.mjs --port {port}");
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/publish");
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Raw => {
                let exe = env::current_exe().context("cannot find the xtask binary")?;
                let args = vec![
                    "bench".into(),
                    "raw-server".into(),
                    "--port".into(),
                    port.to_string(),
                ];
                server.spawn(pinned(&exe, &args), log("server.log")?, &run_dir)?;
                server.command = format!(
                    "taskset -c 0 target/debug/xtask bench raw-server --port {port} (xtask/src/bench/raw.rs, raw_server)"
                );
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/publish");
                wait_http(&mut server, port, "/healthz")?;
            }
            Peer::Python => {
                let args = vec![
                    peers_dir
                        .join("python/server.py")
                        .to_string_lossy()
                        .into_owned(),
                    "--port".into(),
                    port.to_string(),
                ];
                server.spawn(
                    pinned(&ctx.venv_python, &args),
                    log("server.log")?,
                    &run_dir,
                )?;
                server.command = format!(
                    "taskset -c 0 target/bench-venv/bin/python bench/peers/python/server.py --port {port}"
                );
                server.sub_url = format!("{base}/events?topic=bench-{{topic}}");
                server.pub_url = format!("{base}/publish");
                wait_http(&mut server, port, "/healthz")?;
            }
        }
        server.record_pids(&pids_file);
        Ok(server)
    }

    /// Writes `pid comm` of every process of the server, so that the next run can stop the
    /// ones an interrupted run (Ctrl-C in another terminal, `kill` of xtask) left behind.
    pub(super) fn record_pids(&mut self, path: &Path) {
        let mut lines = String::new();
        for &root in &self.tree_roots {
            for pid in std::iter::once(root).chain(descendants(root)) {
                if let Some(name) = comm(pid) {
                    let _ = writeln!(lines, "{pid} {name}");
                }
            }
        }
        if fs::write(path, lines).is_ok() {
            self.pids_file = Some(path.to_owned());
        }
    }

    /// Starts the main process.
    pub(super) fn spawn(
        &mut self,
        mut cmd: Command,
        (out, err): (Stdio, Stdio),
        dir: &Path,
    ) -> Result<()> {
        let program = display_command_short(&cmd);
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        self.pid = child.id();
        self.tree_roots.insert(0, child.id());
        self.children.insert(0, child);
        Ok(())
    }

    /// Stops every process by PID: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; Pushpin's
    /// children are checked too, in case the launcher left one behind.
    pub(super) fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    pub(super) fn stop_inner(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut leftovers = Vec::new();
        for child in &self.children {
            leftovers.extend(descendants(child.id()));
        }
        let mut problems = Vec::new();
        for child in &mut self.children {
            let pid = child.id();
            signal(pid, "TERM");
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() < STOP_TIMEOUT => {
                        thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        problems.push(format!(
                            "{} pid {pid} ignored SIGTERM for {STOP_TIMEOUT:?}; killed",
                            self.peer
                        ));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        for pid in leftovers {
            let started = Instant::now();
            while alive(pid) && started.elapsed() < STOP_TIMEOUT {
                thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                problems.push(format!(
                    "{} child pid {pid} outlived its parent; killed",
                    self.peer
                ));
                signal(pid, "KILL");
            }
        }
        let _ = fs::remove_dir_all(self.run_dir.join("data"));
        if let Some(path) = &self.pids_file {
            let _ = fs::remove_file(path);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            // Stopped all the same; say so in the output but do not fail the run.
            println!("warning: {}", problems.join("; "));
            Ok(())
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Stops the processes listed in a `.pids` file that still run under the same name: what an
/// interrupted run left behind.
pub(super) fn stop_leftovers(pids_file: &Path) {
    let Ok(text) = fs::read_to_string(pids_file) else {
        return;
    };
    for line in text.lines() {
        let Some((pid, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if alive(pid) && comm(pid).as_deref() == Some(name) {
            println!("stopping {name} (pid {pid}) left over from an interrupted run");
            signal(pid, "TERM");
            let started = Instant::now();
            while alive(pid) && started.elapsed() < STOP_TIMEOUT {
                thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                signal(pid, "KILL");
            }
        }
    }
    let _ = fs::remove_file(pids_file);
}

/// `taskset -c 0 <program> <args>`.
pub(super) fn pinned(program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"]).arg(program).args(args);
    cmd
}

/// Polls `GET path` on the port until it answers with an HTTP status line, or fails when the
/// server exits or [`START_TIMEOUT`] passes.
pub(super) fn wait_http(server: &mut Server, port: u16, path: &str) -> Result<()> {
    let started = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        for child in &mut server.children {
            if let Some(status) = child.try_wait()? {
                let log = fs::read_to_string(server.run_dir.join("server.log")).unwrap_or_default();
                bail!(
                    "{} exited during start ({status}): {}",
                    server.peer,
                    tail(&log, 10)
                );
            }
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                    return Ok(());
                }
            }
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "{} did not answer GET {path} on port {port} within {START_TIMEOUT:?}",
                server.peer
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Installs the Debian packages the chosen servers need, when missing.
pub(super) fn ensure_system_packages(peers: &[Peer]) -> Result<()> {
    let mut needed: Vec<(&str, &str)> = Vec::new();
    if peers.contains(&Peer::Nchan) {
        needed.push(("/usr/sbin/nginx", "nginx"));
        needed.push((NCHAN_MODULE, "libnginx-mod-nchan"));
    }
    if peers.contains(&Peer::Pushpin) {
        needed.push(("/usr/bin/pushpin", "pushpin"));
    }
    if peers
        .iter()
        .any(|p| matches!(p, Peer::Pushpin | Peer::Node))
    {
        needed.push(("/usr/bin/node", "nodejs"));
    }
    needed.push(("/usr/bin/taskset", "util-linux"));
    install_packages(&needed)
}

/// `npm ci` in bench/peers/node unless express is installed from the current lock file.
pub(super) fn ensure_npm(root: &Path) -> Result<()> {
    let dir = root.join("bench/peers/node");
    let up_to_date = dir.join("node_modules/express").is_dir()
        && match (
            modified(&dir.join("package-lock.json")),
            modified(&dir.join("node_modules/.package-lock.json")),
        ) {
            (Some(lock), Some(installed)) => installed >= lock,
            _ => false,
        };
    if up_to_date {
        println!("up to date: bench/peers/node/node_modules");
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"])
        .stdin(Stdio::null());
    run(&mut npm, "in bench/peers/node")
}

/// A venv with bench/peers/python/requirements.txt installed (reinstalled when it changes).
pub(super) fn ensure_venv(root: &Path, venv: &Path) -> Result<()> {
    let requirements = root.join("bench/peers/python/requirements.txt");
    let wanted = fs::read_to_string(&requirements)?;
    let marker = venv.join("installed-requirements.txt");
    if venv.join("bin/python").exists() && fs::read_to_string(&marker).ok() == Some(wanted.clone())
    {
        println!("up to date: {}", venv.display());
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(venv).stdin(Stdio::null());
        run(&mut create, "")?;
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .stdin(Stdio::null());
    run(&mut pip, "")?;
    fs::write(marker, wanted)?;
    Ok(())
}
