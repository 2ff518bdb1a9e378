//! Rate limits and the cost of credentials: password hashing keeps memory flat under a login
//! flood; logins, app changes and publishes over their limit get 429 with `Retry-After` and
//! change nothing, while other addresses, users, workspaces and tokens go on. Other client
//! addresses are other loopback source addresses (127.0.0.2, …).

use std::{net::IpAddr, time::Duration};

use futures::future::join_all;
use herald::auth::{Claims, MercureClaim};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::{sleep, timeout};

use crate::support::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AppClient, KEY, Reply, TestServer, header, id_of, token,
    token_with,
};

/// A client whose requests leave from `source`, a loopback address: another client address
/// as the server sees it.
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().expect("an address"))
        .build()
        .expect("build an HTTP client")
}

/// `POST /api/login` from `http`.
async fn login(http: &reqwest::Client, server: &TestServer, email: &str, password: &str) -> Reply {
    let response = http
        .post(format!("{}/api/login", server.url()))
        .header("content-type", "application/json")
        .body(json!({"email": email, "password": password}).to_string())
        .send()
        .await
        .expect("POST /api/login");
    reply("POST /api/login", response).await
}

async fn reply(what: &str, response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("read the body");
    Reply {
        what: what.to_owned(),
        status,
        headers,
        body,
    }
}

/// Asserts a 429 `rate_limited` with a `Retry-After` of 1..=`max` seconds; returns it.
#[track_caller]
fn retry_after(reply: Reply, max: u64) -> u64 {
    let secs: u64 = header(&reply.headers, "retry-after")
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "{}: no numeric Retry-After: {:?}",
                reply.what, reply.headers
            )
        });
    assert!(
        (1..=max).contains(&secs),
        "Retry-After {secs} is not in 1..={max}"
    );
    reply.expect_error(429, "rate_limited");
    secs
}

/// Each argon2 hash holds 19 MiB: 200 at once took about 4 GB that stayed allocated. With
/// one hash per core at a time, the peak stays within a generous bound, and every request
/// is answered (401 for the unknown email, or 503 with `Retry-After` when no turn came in
/// time) instead of waiting without end.
#[tokio::test]
async fn a_login_flood_keeps_memory_flat() {
    const LOGINS: usize = 200;
    const MAX_GROWTH_KIB: u64 = 300 * 1024;
    // Without the address limit every request reaches the hashing queue.
    let server = TestServer::with_args(&[
        "--login-ip-rate",
        "0",
        "--login-failure-rate",
        "0",
        "--login-account-rate",
        "0",
    ])
    .await;
    // One login first: what every process allocates once (the decoy hash, pools) is not
    // the flood's.
    login(&server.http, &server, "warm@example.com", "password-0")
        .await
        .expect_error(401, "unauthorized");
    let before = server.memory_kib("VmRSS");
    let http = crate::support::http_client();
    let logins = (0..LOGINS).map(|i| {
        let (http, server) = (&http, &server);
        async move {
            let email = format!("nobody-{i}@example.com");
            timeout(
                Duration::from_secs(30),
                login(http, server, &email, "wrong-password"),
            )
            .await
            .unwrap_or_else(|_| panic!("login {i} got no answer within 30 s"))
        }
    });
    let replies = join_all(logins).await;
    let peak = server.memory_kib("VmHWM");
    let (mut unauthorized, mut unavailable) = (0, 0);
    for reply in replies {
        match reply.status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let secs = header(&reply.headers, "retry-after");
                assert!(
                    secs.parse::<u64>().is_ok_and(|s| s >= 1),
                    "Retry-After {secs:?}"
                );
                reply.expect_error(503, "unavailable");
                unavailable += 1;
            }
            other => panic!("a login answered {other}: {}", reply.body),
        }
    }
    assert!(unauthorized > 0, "no login was checked at all");
    eprintln!(
        "{unauthorized} × 401, {unavailable} × 503; RSS {before} KiB before, peak {peak} KiB"
    );
    assert!(
        peak.saturating_sub(before) < MAX_GROWTH_KIB,
        "the flood grew the server from {before} KiB to a peak of {peak} KiB"
    );
    // And the server still answers logins.
    login(&server.http, &server, ADMIN_EMAIL, "wrong-password-1")
        .await
        .expect_error(401, "unauthorized");
}

/// Forty wrong passwords in a row from one address meet 429 after five failures; that
/// address cannot lock the account's owner out, who signs in at once from another.
#[tokio::test]
async fn wrong_passwords_meet_429_without_locking_the_owner_out() {
    let server = TestServer::app().await;
    let attacker = client_from("127.0.0.1");
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..40 {
        let reply = login(&attacker, &server, ADMIN_EMAIL, "not-the-password").await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
        }
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    // The default `--login-failure-rate` refills one failure every 30 s.
    retry_after(limited.expect("a 429"), 30);
    // Even the right password waits, from that address.
    let reply = login(&attacker, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    retry_after(reply, 30);

    let owner = client_from("127.0.0.2");
    login(&owner, &server, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect(200);
    // Nor is the owner's address limited by the attacker's failures.
    login(&owner, &server, ADMIN_EMAIL, "a-typo-password")
        .await
        .expect_error(401, "unauthorized");
    login(&owner, &server, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect(200);
    // Attempts 6–20 met the account's limit for that address, 21–40 the address's own.
    assert!(
        server
            .metric("herald_rate_limited_total{limit=\"login_failure\"}")
            .await
            >= 10.0
    );
    assert!(
        server
            .metric("herald_rate_limited_total{limit=\"login_ip\"}")
            .await
            >= 10.0
    );
}

/// A stolen session cannot guess its user's password through a password change any faster
/// than through logins: wrong current passwords count as failed logins of that account.
#[tokio::test]
async fn password_changes_share_the_login_limits() {
    let server = TestServer::app().await;
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let reply = admin
            .post(
                "/api/me/password",
                &json!({"current": "not-the-password", "new": "a-new-password-1"}),
            )
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429, 429, 429]);
    // The same account's logins from that address wait too.
    let reply = login(
        &client_from("127.0.0.1"),
        &server,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
    )
    .await;
    retry_after(reply, 30);
}

/// Failures from many addresses drain the account's own budget: then every address waits,
/// for at most the next token, and the right password works once `Retry-After` has passed.
#[tokio::test]
async fn guesses_from_many_addresses_wait_for_retry_after() {
    let server = TestServer::with_env(
        &[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        &[
            "--login-failure-rate",
            "2/100s",
            "--login-account-rate",
            "3/9s",
        ],
    )
    .await;
    let a = client_from("127.0.0.3");
    let b = client_from("127.0.0.4");
    let owner = client_from("127.0.0.5");
    for _ in 0..2 {
        login(&a, &server, ADMIN_EMAIL, "guess-number-1")
            .await
            .expect_error(401, "unauthorized");
    }
    // `a` has had its two failures.
    retry_after(login(&a, &server, ADMIN_EMAIL, "guess-number-2").await, 100);
    // `b`'s first failure is the account's third.
    login(&b, &server, ADMIN_EMAIL, "guess-number-3")
        .await
        .expect_error(401, "unauthorized");
    let reply = login(&owner, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // One token every 3 s.
    let wait = retry_after(reply, 3);
    sleep(Duration::from_secs(wait)).await;
    login(&owner, &server, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .expect(200);
    assert!(
        server
            .metric("herald_rate_limited_total{limit=\"login_account\"}")
            .await
            >= 1.0
    );
}

/// Every login from one address counts against `--login-ip-rate`, whatever the account.
#[tokio::test]
async fn logins_are_limited_per_address() {
    let server = TestServer::with_args(&["--login-ip-rate", "3/300s"]).await;
    let a = client_from("127.0.0.6");
    for i in 0..3 {
        login(&a, &server, &format!("user{i}@example.com"), "password-0")
            .await
            .expect_error(401, "unauthorized");
    }
    let reply = login(&a, &server, "user9@example.com", "password-0").await;
    retry_after(reply, 100);
    login(
        &client_from("127.0.0.7"),
        &server,
        "user9@example.com",
        "password-0",
    )
    .await
    .expect_error(401, "unauthorized");
}

/// A server with an admin and `args`, and the admin signed in.
async fn with_admin(args: &[&str]) -> (TestServer, AppClient) {
    let server = TestServer::with_env(
        &[
            ("HERALD_ADMIN_EMAIL", ADMIN_EMAIL),
            ("HERALD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        args,
    )
    .await;
    let admin = AppClient::login(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (server, admin)
}

/// Changes are limited per user and per workspace; a refused change changes nothing, and
/// other users and workspaces go on. Outsiders cannot spend a workspace's budget, and
/// reads and logout cost nothing.
#[tokio::test]
async fn app_changes_are_limited_per_user_and_per_workspace() {
    // Budgets refill so slowly that nothing refills during the test.
    let (server, admin) = with_admin(&[
        "--app-change-rate",
        "4/400s",
        "--workspace-change-rate",
        "6/600s",
    ])
    .await;
    // The admin's changes 1–3.
    let alice = admin
        .new_member(&server, "alice@example.com", "Alice")
        .await;
    let bob = admin.new_member(&server, "bob@example.com", "Bob").await;
    let carol = admin
        .new_member(&server, "carol@example.com", "Carol")
        .await;
    // Alice's 1 and 2; the workspace's 1.
    let ws = id_of(&alice.create_workspace("Team").await);
    alice.add_member(&ws, &bob.id(), "member").await;
    let todos = format!("/api/workspaces/{ws}/todos");

    // An outsider's changes are hers to pay, not the workspace's.
    for _ in 0..3 {
        carol
            .post(&todos, &json!({"title": "not mine"}))
            .await
            .expect_error(404, "not_found");
    }
    // Alice's 3 and 4; the workspace's 2 and 3. Reads are free.
    for title in ["a1", "a2"] {
        alice
            .post(&todos, &json!({"title": title}))
            .await
            .expect(201);
        alice.get(&todos).await.expect(200);
    }
    retry_after(alice.post(&todos, &json!({"title": "a3"})).await, 100);
    // Bob's 1–3; the workspace's 4–6.
    for title in ["b1", "b2", "b3"] {
        bob.post(&todos, &json!({"title": title})).await.expect(201);
    }
    let refused = bob.post(&todos, &json!({"title": "b4"})).await;
    let message = refused.body.clone();
    retry_after(refused, 100);
    assert!(message.contains("this workspace"), "{message}");

    // Nothing of the refused changes happened.
    let titles: Vec<Value> = alice
        .items(&todos)
        .await
        .iter()
        .map(|todo| todo["title"].clone())
        .collect();
    let mut titles: Vec<&str> = titles.iter().filter_map(Value::as_str).collect();
    titles.sort_unstable();
    assert_eq!(titles, ["a1", "a2", "b1", "b2", "b3"]);

    // Another workspace and another user go on: the admin's change 4.
    let admin_ws = admin
        .items("/api/workspaces")
        .await
        .into_iter()
        .find(|ws| ws["name"] == "My workspace")
        .map(|ws| id_of(&ws))
        .expect("the admin's workspace");
    admin
        .post(
            &format!("/api/workspaces/{admin_ws}/todos"),
            &json!({"title": "elsewhere"}),
        )
        .await
        .expect(201);
    // Logout is no change to limit.
    alice.post("/api/logout", &json!({})).await.expect(204);
    assert!(
        server
            .metric("herald_rate_limited_total{limit=\"app_change\"}")
            .await
            >= 1.0
    );
    assert!(
        server
            .metric("herald_rate_limited_total{limit=\"workspace_change\"}")
            .await
            >= 1.0
    );
}

/// Who may read a workspace is remembered for a second when charging its budget: once
/// that has passed, a member who was removed no longer spends it.
#[tokio::test]
async fn a_removed_member_stops_spending_the_workspace_budget() {
    let (server, admin) = with_admin(&[
        "--app-change-rate",
        "0",
        "--workspace-change-rate",
        "4/600s",
    ])
    .await;
    let alice = admin
        .new_member(&server, "alice@example.com", "Alice")
        .await;
    let bob = admin.new_member(&server, "bob@example.com", "Bob").await;
    let ws = id_of(&alice.create_workspace("Team").await);
    let todos = format!("/api/workspaces/{ws}/todos");
    // The workspace's 1–3: Bob joins, writes (and is remembered as a reader), leaves.
    alice.add_member(&ws, &bob.id(), "member").await;
    bob.post(&todos, &json!({"title": "b1"})).await.expect(201);
    alice
        .delete(&format!("/api/workspaces/{ws}/members/{}", bob.id()))
        .await
        .expect(204);
    sleep(Duration::from_millis(1_200)).await;
    for _ in 0..3 {
        bob.post(&todos, &json!({"title": "gone"}))
            .await
            .expect_error(404, "not_found");
    }
    // The workspace's 4th, and then none left.
    alice
        .post(&todos, &json!({"title": "a1"}))
        .await
        .expect(201);
    retry_after(alice.post(&todos, &json!({"title": "a2"})).await, 150);
}

/// A publisher token for subject `sub`; `n` makes tokens of one subject differ.
fn subject_token(sub: &str, n: u64) -> String {
    token_with(
        KEY,
        &Claims {
            mercure: Some(MercureClaim {
                publish: Some(vec!["*".to_owned()]),
                subscribe: None,
            }),
            exp: Some(4_000_000_000 + n),
            sub: Some(sub.to_owned()),
        },
    )
}

/// Publishes are limited per publisher (the token's subject, else the token), on the
/// direct HTTP/1 path and through the router (a request with an `Origin`) alike; a refused
/// publish stores nothing, and other publishers go on.
#[tokio::test]
async fn publishes_are_limited_per_publisher() {
    let server = TestServer::with_args(&["--publish-rate", "3/300s"]).await;
    let topic = "https://example.com/rated";
    let (first, second) = (token(&["*"], &[]), token(&[topic], &[]));
    let publish = |token: &str, id: &str, origin: Option<&str>| {
        let mut request = server
            .http
            .post(server.hub_url())
            .bearer_auth(token)
            .form(&[("topic", topic), ("id", id), ("data", id)]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move {
            reply(
                "POST /.well-known/mercure",
                request.send().await.expect("POST"),
            )
            .await
        }
    };
    for id in ["p1", "p2", "p3"] {
        assert_eq!(publish(&first, id, None).await.status, StatusCode::OK);
    }
    retry_after(publish(&first, "refused-direct", None).await, 100);
    retry_after(
        publish(&first, "refused-routed", Some("https://elsewhere.example")).await,
        100,
    );
    // Another token has its own budget, through the router too.
    let routed = publish(&second, "q1", Some("https://elsewhere.example")).await;
    assert_eq!(routed.status, StatusCode::OK, "{}", routed.body);
    for id in ["q2", "q3"] {
        assert_eq!(publish(&second, id, None).await.status, StatusCode::OK);
    }
    retry_after(publish(&second, "refused-second", None).await, 100);

    // Tokens that name the same subject share its budget, whatever else differs.
    let (left, right) = (subject_token("backend", 1), subject_token("backend", 2));
    for (token, id) in [(&left, "s1"), (&right, "s2"), (&left, "s3")] {
        assert_eq!(publish(token, id, None).await.status, StatusCode::OK);
    }
    retry_after(publish(&right, "refused-subject", None).await, 100);
    let other = subject_token("another", 1);
    assert_eq!(publish(&other, "o1", None).await.status, StatusCode::OK);

    let ids = server.stored_ids_then(topic, "sentinel").await;
    assert_eq!(
        ids,
        [
            "p1", "p2", "p3", "q1", "q2", "q3", "s1", "s2", "s3", "o1", "sentinel"
        ]
    );
    assert!(
        server
            .metric("herald_rate_limited_total{limit=\"publish\"}")
            .await
            >= 3.0
    );
}
