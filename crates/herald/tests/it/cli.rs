//! The command line: `herald token`, `herald publish`, `herald tail`, and `herald serve`
//! refusing bad configuration with exit status 64.

use std::{process::Output, time::Duration};

use herald::auth::Verifier;
use tokio::time::timeout;

use crate::support::{ITEM_TIMEOUT, KEY, TestServer, herald_command, run_herald, token};

const T: &str = "https://example.com/cli";

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn token_prints_a_jwt_that_publishes() {
    let server = TestServer::start().await;
    let output = run_herald(&["token", "--publish", "*", "--jwt-key", KEY]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let jwt = printed.strip_suffix('\n').expect("one line");
    assert_eq!(jwt.matches('.').count(), 2, "{jwt}");

    let grants = Verifier::new(KEY.as_bytes()).verify(jwt).unwrap();
    assert_eq!(
        grants.publish,
        Some(vec![herald_hub::Matcher::template("*")])
    );
    assert_eq!(grants.subscribe, None);
    // The default lifetime is an hour.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = grants.expires.expect("an expiry");
    assert!(
        (now + 3590..=now + 3610).contains(&exp),
        "exp {exp}, now {now}"
    );

    let response = server
        .publish_with(Some(jwt), &[("topic", T), ("id", "via-cli-token")])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "via-cli-token");

    // Without any selector there is nothing to grant.
    let output = run_herald(&["token", "--jwt-key", KEY]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: give at least one --publish or --subscribe selector\n"
    );
}

#[tokio::test]
async fn publish_prints_the_id() {
    let server = TestServer::start().await;
    let url = server.url();
    let output = run_herald(&[
        "publish",
        "--url",
        &url,
        "--jwt-key",
        KEY,
        "--topic",
        T,
        "--data",
        "d",
        "--id",
        "x",
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "x\n");

    // A generated id, on the full hub URL, with type and private.
    let hub = server.hub_url();
    let output = run_herald(&[
        "publish",
        "--url",
        &hub,
        "--jwt-key",
        KEY,
        "--topic",
        T,
        "--data",
        "secret",
        "--type",
        "kind",
        "--private",
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let generated = stdout(&output).trim_end().to_owned();
    assert!(generated.starts_with("urn:uuid:"), "{generated}");

    let mut all = server
        .subscribe()
        .topic(T)
        .bearer(&token(&[], &[T]))
        .query("lastEventID", "earliest")
        .open()
        .await;
    let first = all.next_message().await;
    assert_eq!(
        (first.last_event_id.as_str(), first.data.as_str()),
        ("x", "d")
    );
    let second = all.next_message().await;
    assert_eq!(
        (
            second.last_event_id.as_str(),
            second.event.as_str(),
            second.data.as_str()
        ),
        (generated.as_str(), "kind", "secret")
    );

    // A wrong key: the hub's refusal is reported, with a failing status.
    let output = run_herald(&[
        "publish",
        "--url",
        &url,
        "--jwt-key",
        "another-key-that-is-32-bytes-long!!",
        "--topic",
        T,
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains("401") && error.contains("the JWT signature is invalid"),
        "{error}"
    );
}

#[tokio::test]
async fn tail_prints_json_lines() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut tail = herald_command();
    tail.args([
        "tail",
        "--url",
        &url,
        "--jwt-key",
        KEY,
        "--topic",
        T,
        "--count",
        "2",
        "--json",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let tail = tail.spawn().expect("spawn herald tail");
    // Publish only once tail's subscription is registered.
    server
        .wait_metric("herald_subscribers", ITEM_TIMEOUT, |v| v == 1.0)
        .await;
    server
        .publish(&[("topic", T), ("id", "t1"), ("data", "one\ntwo")])
        .await;
    server
        .publish(&[
            ("topic", T),
            ("id", "t2"),
            ("type", "kind"),
            ("data", "three"),
            ("private", "on"),
        ])
        .await;
    let output = timeout(Duration::from_secs(10), tail.wait_with_output())
        .await
        .expect("tail stops after --count events")
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"id": "t1", "type": "message", "data": "one\ntwo"}),
            // tail's default token may receive every private update.
            serde_json::json!({"id": "t2", "type": "kind", "data": "three"}),
        ]
    );
}

#[tokio::test]
async fn serve_refuses_bad_configuration_with_status_64() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--jwt-key", "short"],
            "error: the publisher JWT key is 5 bytes; HS256 needs at least 32\n",
        ),
        (
            &["--jwt-key", KEY, "--subscriber-jwt-key", "tiny"],
            "error: the subscriber JWT key is 4 bytes; HS256 needs at least 32\n",
        ),
        (
            &["--jwt-key", KEY, "--max-topics", "0"],
            "error: --max-topics must be at least 1\n",
        ),
        (
            &["--jwt-key", KEY, "--subscriber-queue", "0"],
            "error: --subscriber-queue must be at least 1\n",
        ),
        (
            &["--jwt-key", KEY, "--cors-origin", "*"],
            "error: --cors-origin '*' is not allowed: streams carry credentials, list the origins\n",
        ),
        (
            &["--jwt-key", KEY, "--cors-origin", "example.com"],
            "error: --cors-origin \"example.com\" is not an origin like https://app.example.com\n",
        ),
        (
            &["--jwt-key", KEY, "--resource", "hub.example.com"],
            "error: --resource \"hub.example.com\" is not an http(s) URI\n",
        ),
        (
            &[
                "--jwt-key",
                KEY,
                "--issuer",
                "https://a.example=/nonexistent/key.pem",
            ],
            "error: --issuer https://a.example: cannot read /nonexistent/key.pem: No such file \
             or directory (os error 2)\n",
        ),
        (
            // The message names the schemes, never the URL (it holds a password).
            &[
                "--jwt-key",
                KEY,
                "--database-url",
                "mysql://herald:s3cret@db/herald",
            ],
            "error: --database-url must start with sqlite:, postgres: or postgresql: \
             (for example postgres://herald:secret@db.example.com/herald)\n",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
        args.extend_from_slice(flags);
        let output = run_herald(&args).await;
        assert_eq!(
            output.status.code(),
            Some(64),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), *message, "{flags:?}");
        assert_eq!(stdout(&output), "", "{flags:?}: nothing was served");
    }
}

/// Bad configuration prints the problem and exits with 64 (README, "Configuration"). Values that the flag
/// parser itself rejects are bad configuration too.
#[tokio::test]
async fn serve_refuses_unparsable_flag_values_with_status_64() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--max-body", "abc"], "--max-body"),
        (&["--heartbeat", "soon"], "--heartbeat"),
        (&["--durability", "bogus"], "unknown durability \"bogus\""),
        (&["--listen", "nowhere"], "--listen"),
        (
            &["--login-ip-rate", "10"],
            "\"10\" is not a rate like 10/1m (BURST/PERIOD) or 0 (off)",
        ),
        (&["--publish-rate", "5/0s"], "--publish-rate"),
    ];
    for (flags, names) in cases {
        let mut args = vec!["serve", "--data-dir", data_dir, "--jwt-key", KEY];
        args.extend_from_slice(flags);
        let output = run_herald(&args).await;
        assert!(
            stderr(&output).contains(names),
            "{flags:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            output.status.code(),
            Some(64),
            "{flags:?}: {}",
            stderr(&output)
        );
    }
}
