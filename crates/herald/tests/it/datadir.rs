//! The data directory: private to the user that runs Herald (0700, its databases and key
//! 0600, whatever the umask), and served by one `herald serve` at a time.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use tokio::time::timeout;

use crate::support::{KEY, TestServer, run_herald};

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn databases_key_and_directory_are_private_whatever_the_umask() {
    // The directory does not exist yet: the server creates it (and its parent).
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("nested").join("data");
    let data = data_dir.to_str().unwrap();
    // A umask that would leave everything readable and writable by everyone.
    let mut shell = tokio::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {} serve --listen 127.0.0.1:0 --data-dir {data}",
            env!("CARGO_BIN_EXE_herald")
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            shell.env_remove(name);
        }
    }
    let mut child = shell.spawn().expect("spawn herald serve");
    // The server prints its address once the databases are open; a write makes their
    // -wal and -shm files exist too.
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the server starts")
        .unwrap()
        .expect("a first line");
    assert!(first.starts_with("Herald hub at "), "{first}");
    let private = [
        "herald.db",
        "herald.db-wal",
        "herald.db-shm",
        "jwt.key",
        "herald.lock",
    ];
    for file in private {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data_dir), 0o700, "the data directory");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn existing_databases_are_made_private_at_start() {
    let server = TestServer::start().await;
    let dir = server.data_dir().to_owned();
    let mut server = server;
    server.kill9().await;
    // As an older version left them.
    for file in ["herald.db", "herald.db-wal"] {
        let path = dir.join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    // And a directory that only Herald uses, readable by everyone.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.restart().await;
    for file in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&dir), 0o700, "the data directory");
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_exits_64_and_says_who_holds_it() {
    let mut server = TestServer::start().await;
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    let output = run_herald(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--jwt-key",
        KEY,
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: another herald (pid {}) is serving from the data directory {data_dir}; \
             stop it, or give this one another --data-dir\n",
            server.pid()
        )
    );
    assert!(output.stdout.is_empty(), "nothing was served");
    // The first one is untouched, and the lock ends with its process, however it ends.
    assert_eq!(
        server
            .http
            .get(format!("{}/healthz", server.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.kill9().await;
    server.restart().await;
}

#[tokio::test]
async fn zero_deadlines_are_refused_with_status_64() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for flag in ["--write-timeout", "--body-timeout"] {
        let output = run_herald(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--jwt-key",
            KEY,
            flag,
            "0s",
        ])
        .await;
        assert_eq!(output.status.code(), Some(64), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!("error: {flag} must be longer than 0\n")
        );
    }
}
