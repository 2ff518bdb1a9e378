//! `herald-bench app`: the app's write path, from a REST change to other users' streams.
//!
//! The bench sets up its world through Herald's REST API (`setup`): the admin signs in,
//! creates `--users` members and `--workspaces` workspaces, and adds `--members` members to
//! each; every member signs in once. Then it opens one stream per membership,
//! `GET /api/events?workspace=<ws>` with the member's session cookie, so that a change in a
//! workspace reaches exactly its `--members` streams; and the admin creates todos on the
//! open-loop schedule of `run`, todo `k` in workspace `k % workspaces`, through node
//! `k % nodes`. Each todo's title is the bench payload (sequence number, send and schedule
//! times, workspace index), so every stream accounts for its deliveries as `run`'s
//! subscribers do: latency from send and from schedule, lost, duplicated, out of order.
//!
//! Stream `i` follows workspace `i % workspaces` (the subscriber's "topic"), as member
//! `j = i / workspaces`, who is user `(workspace * members + j) % users`; it connects to node
//! `i % nodes`. With `members <= users` the members of one workspace are distinct users.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::json;

use crate::{
    Report, RunArgs,
    args::{PublishKind, SubscribeArgs},
    publisher, run,
    target::Target,
};

/// The password every bench member gets (loopback servers made for the run only).
pub const MEMBER_PASSWORD: &str = "bench-member-password";

/// Requests of the setup in flight at once. User creation and login hash passwords with
/// argon2 on the server, which has two cores at most here.
const SETUP_CONCURRENCY: usize = 4;

/// Time allowed for one setup request (argon2 under load is slow).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `herald-bench app`.
#[derive(Clone, Debug, clap::Parser)]
pub struct AppArgs {
    /// Base URLs of the nodes (loopback), comma-separated: streams and writes are spread
    /// over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub nodes: Vec<String>,
    /// The admin's email.
    #[arg(long, default_value = "admin@example.com")]
    pub admin_email: String,
    /// The admin's password.
    #[arg(long, env = "HERALD_BENCH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// Member users to create (each password costs the server an argon2 hash, twice).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub users: u64,
    /// Workspaces to create.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub workspaces: u64,
    /// Members of each workspace, each with one stream: streams = workspaces x members.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub members: u64,
    /// Todos to create.
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    /// Todos per second, on an open-loop schedule (0: as fast as the writers go).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Concurrent writers (each holds at most one request in flight).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub publishers: u64,
    /// Pause between the last stream opening and the first write.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// After the last write, wait at most this long for deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Time allowed for one write.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,
    /// Process id of the server (the first node), to read its RSS and CPU time from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Hard limit on the run after the setup.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub duration_limit: Duration,
}

/// The world the setup made: what the streams and the writers need.
#[derive(Debug)]
pub struct World {
    /// Base URLs of the nodes.
    pub nodes: Vec<String>,
    /// The admin's `Cookie` header value, which the writes carry.
    pub admin_cookie: String,
    /// Workspace ids, by index.
    pub workspaces: Vec<String>,
    /// Members per workspace.
    pub members: u64,
    /// Each user's `Cookie` header value, by index.
    pub user_cookies: Vec<String>,
}

impl World {
    /// Stream `index`: its URL and `Cookie` header value.
    pub fn stream(&self, index: u64) -> (String, &str) {
        let workspaces = self.workspaces.len() as u64;
        let ws = index % workspaces;
        let member = index / workspaces;
        let user = (ws * self.members + member) % self.user_cookies.len() as u64;
        let node = &self.nodes[(index % self.nodes.len() as u64) as usize];
        (
            format!(
                "{node}/api/events?workspace={}",
                self.workspaces[ws as usize]
            ),
            &self.user_cookies[user as usize],
        )
    }

    /// Where todo `seq` in workspace `ws` is created.
    pub fn todo_url(&self, ws: u64, seq: u64) -> String {
        let node = &self.nodes[(seq % self.nodes.len() as u64) as usize];
        format!(
            "{node}/api/workspaces/{}/todos",
            self.workspaces[ws as usize]
        )
    }
}

/// Extracts the bench payload from an app event: the title of a `todos:created` event.
pub fn payload_of(event: &str, data: &str) -> Option<crate::tally::Payload> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Resource,
    }
    #[derive(Deserialize)]
    struct Resource {
        title: String,
    }
    if event != "todos:created" {
        return None;
    }
    let envelope: Envelope = serde_json::from_str(data).ok()?;
    crate::tally::Payload::parse(&envelope.data.title)
}

/// Checks `app`'s arguments without touching the network.
///
/// # Errors
///
/// On a non-loopback URL or inconsistent counts.
pub fn check_app(args: &AppArgs) -> anyhow::Result<()> {
    if args.nodes.is_empty() {
        bail!("--nodes needs at least one URL");
    }
    for node in &args.nodes {
        Target::parse(node).context("--nodes")?;
        if node.ends_with('/') || node.matches('/').count() > 2 {
            bail!("--nodes takes base URLs without a path, like http://127.0.0.1:8080");
        }
    }
    if args.members > args.users {
        bail!("--members must be at most --users: a workspace's members are distinct users");
    }
    run::check_run(&run_args(args, None))
}

/// The `run` this app run is, with `world` set up.
fn run_args(args: &AppArgs, world: Option<Arc<World>>) -> RunArgs {
    let node = &args.nodes[0];
    RunArgs {
        sub: SubscribeArgs {
            subscribers: args.workspaces * args.members,
            sub_url: format!("{node}/api/events"),
            topics: args.workspaces,
            source_ips: 1,
            index_offset: 0,
            sub_token: None,
            last_event_id: None,
            connect_concurrency: 64,
            connect_timeout: Duration::from_secs(30),
            http2: false,
            streams_per_connection: 1,
            server_pid: args.server_pid,
            duration_limit: args.duration_limit,
            app: world,
        },
        pub_url: format!("{node}/api/workspaces/{{topic}}/todos"),
        pub_topic: "{topic}".to_owned(),
        publish_kind: PublishKind::Json,
        token: None,
        events: args.events,
        rate: args.rate,
        publishers: args.publishers,
        payload_bytes: 0,
        settle: args.settle,
        drain: args.drain,
        publish_timeout: args.publish_timeout,
        reconnect_after: None,
        missed: 0,
        catch_up_limit: Duration::from_secs(30),
    }
}

/// Sets up the world, then runs: streams, open-loop writes, drain, report.
///
/// # Errors
///
/// When the setup fails (a refused login, say) or the arguments are bad.
pub async fn app(args: AppArgs) -> anyhow::Result<Report> {
    check_app(&args)?;
    let started = tokio::time::Instant::now();
    let world = setup(&args).await?;
    let setup_s = started.elapsed().as_secs_f64();
    let mut report = run::run(run_args(&args, Some(Arc::new(world)))).await?;
    report.mode = "app";
    report.limits.notes.push(format!(
        "setup: {} users, {} workspaces x {} members, through {} node(s), in {setup_s:.1} s",
        args.users,
        args.workspaces,
        args.members,
        args.nodes.len()
    ));
    Ok(report)
}

/// Makes the users, workspaces and memberships, and signs everyone in.
async fn setup(args: &AppArgs) -> anyhow::Result<World> {
    let client = publisher::client(SETUP_CONCURRENCY)?;
    let node = |i: u64| args.nodes[(i % args.nodes.len() as u64) as usize].as_str();
    let admin_cookie = login(&client, node(0), &args.admin_email, &args.admin_password)
        .await
        .context("the admin's login")?;
    let api = Api {
        client: &client,
        cookie: &admin_cookie,
    };

    let user_ids = bounded(args.users, |i| {
        let api = &api;
        async move {
            let created = api
                .post(
                    node(i),
                    "/api/users",
                    json!({
                        "email": member_email(i),
                        "name": format!("Member {i}"),
                        "password": MEMBER_PASSWORD,
                        "role": "member",
                    }),
                )
                .await?;
            id(&created)
        }
    })
    .await
    .context("create the members")?;

    let workspaces = bounded(args.workspaces, |w| {
        let api = &api;
        async move {
            let created = api
                .post(
                    node(w),
                    "/api/workspaces",
                    json!({ "name": format!("bench {w}") }),
                )
                .await?;
            id(&created)
        }
    })
    .await
    .context("create the workspaces")?;

    let memberships = args.workspaces * args.members;
    bounded(memberships, |m| {
        let (api, workspaces, user_ids) = (&api, &workspaces, &user_ids);
        async move {
            let (w, j) = (m / args.members, m % args.members);
            let user = (w * args.members + j) % args.users;
            api.post(
                node(m),
                &format!("/api/workspaces/{}/members", workspaces[w as usize]),
                json!({ "userId": user_ids[user as usize], "role": "member" }),
            )
            .await?;
            Ok(())
        }
    })
    .await
    .context("add the members")?;

    let user_cookies = bounded(args.users, |i| {
        let client = &client;
        async move { login(client, node(i), &member_email(i), MEMBER_PASSWORD).await }
    })
    .await
    .context("the members' logins")?;

    Ok(World {
        nodes: args.nodes.clone(),
        admin_cookie,
        workspaces,
        members: args.members,
        user_cookies,
    })
}

fn member_email(i: u64) -> String {
    format!("member{i}@bench.example")
}

/// The admin's requests.
struct Api<'a> {
    client: &'a reqwest::Client,
    cookie: &'a str,
}

impl Api<'_> {
    /// POSTs `body` as JSON; the answer's JSON, or why it failed.
    async fn post(
        &self,
        node: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .client
            .post(format!("{node}{path}"))
            .header(reqwest::header::COOKIE, self.cookie)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(SETUP_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        answer(path, response).await
    }
}

/// Signs in; the `Cookie` header value of the session.
async fn login(
    client: &reqwest::Client,
    node: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{node}/api/login"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({ "email": email, "password": password }).to_string())
        .timeout(SETUP_TIMEOUT)
        .send()
        .await
        .context("POST /api/login")?;
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    answer("/api/login", response).await?;
    cookie.context("the login answered without a session cookie")
}

/// The JSON of a 2xx answer, or an error with its status and the start of its body.
async fn answer(path: &str, response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let body = response.bytes().await.context("read the answer")?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        bail!("{path}: status {}: {}", status.as_u16(), text.trim());
    }
    if body.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&body).with_context(|| format!("{path}: the answer is not JSON"))
}

fn id(value: &serde_json::Value) -> anyhow::Result<String> {
    value["id"]
        .as_str()
        .map(str::to_owned)
        .context("the answer has no id")
}

/// Runs `make(i)` for `i` in `0..n`, [`SETUP_CONCURRENCY`] at a time; the results in order,
/// or the first error.
async fn bounded<T, F, Fut>(n: u64, make: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    use futures::{StreamExt as _, TryStreamExt as _};
    futures::stream::iter(0..n)
        .map(&make)
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_distinct_members_of_their_workspace() {
        let world = World {
            nodes: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            admin_cookie: String::new(),
            workspaces: (0..4).map(|w| format!("w{w}")).collect(),
            members: 3,
            user_cookies: (0..5).map(|u| format!("u{u}")).collect(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..12 {
            let (url, cookie) = world.stream(i);
            let ws = i % 4;
            let node = if i % 2 == 0 { 1 } else { 2 };
            assert_eq!(
                url,
                format!("http://127.0.0.1:{node}/api/events?workspace=w{ws}")
            );
            assert!(seen.insert((ws, cookie.to_owned())), "{i}: {cookie} twice");
        }
        assert_eq!(
            world.todo_url(3, 5),
            "http://127.0.0.1:2/api/workspaces/w3/todos"
        );
    }

    #[test]
    fn payloads_come_from_created_todos_only() {
        let payload = crate::tally::Payload {
            seq: 7,
            sent_ns: 1,
            sched_ns: 2,
            topic: 3,
        };
        let data = json!({
            "type": "todos:created",
            "data": { "id": "x", "title": payload.to_json(0) },
        })
        .to_string();
        assert_eq!(payload_of("todos:created", &data), Some(payload));
        assert_eq!(payload_of("todos:updated", &data), None);
        assert_eq!(payload_of("connected", "{}"), None);
        assert_eq!(
            payload_of("todos:created", r#"{"data":{"title":"x"}}"#),
            None
        );
    }
}
