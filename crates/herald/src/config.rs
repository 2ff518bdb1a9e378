//! Configuration of `herald serve`: command-line flags, each also read from an environment
//! variable `HERALD_<NAME>`, validated into one [`Config`] before any port is bound.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use herald_hub::{Durability, HubConfig, QueueLimits, UpdateLimits};

use crate::{
    ratelimit::Rate,
    tls::{Tls, TlsFiles},
};

/// Flags of `herald serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the event log (SQLite), the generated JWT key and, without
    /// --database-url, the app's data (in the log's file, herald.db).
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    pub data_dir: PathBuf,

    /// Where the app keeps its data: `postgres://user:password@host/database` (which the
    /// nodes of a cluster share) or `sqlite:///path/app.db`. Default: the event log's
    /// SQLite file (herald.db) in the data directory, where a change commits with its
    /// events.
    #[arg(long, env = "HERALD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// HS256 key that verifies publisher and subscriber JWTs. When no key is given, one is
    /// generated on first start and kept in jwt.key in the data directory.
    #[arg(long, env = "HERALD_JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<String>,

    /// HS256 key for publisher JWTs (overrides --jwt-key for publishers).
    #[arg(long, env = "HERALD_PUBLISHER_JWT_KEY", hide_env_values = true)]
    pub publisher_jwt_key: Option<String>,

    /// HS256 key for subscriber JWTs (overrides --jwt-key for subscribers).
    #[arg(long, env = "HERALD_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    pub subscriber_jwt_key: Option<String>,

    /// Let subscribers without a JWT receive public updates.
    #[arg(long, env = "HERALD_ANONYMOUS")]
    pub anonymous: bool,

    /// Announce Mercure subscriptions as they start and end (private updates on
    /// `/.well-known/mercure/subscriptions/…`, each a durable write) and serve the
    /// subscriptions API. Off: no events, and the API answers 404.
    #[arg(long, env = "HERALD_SUBSCRIPTION_EVENTS")]
    pub subscription_events: bool,

    /// Interval of the comment heartbeat on idle streams (0 disables it).
    #[arg(long, env = "HERALD_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Reconnection delay suggested to clients with `retry:` at the start of each stream.
    #[arg(long, env = "HERALD_RETRY", default_value = "3s", value_parser = humantime::parse_duration)]
    pub retry: Duration,

    /// Most updates the event log retains (0: no count limit).
    #[arg(long, env = "HERALD_RETENTION_COUNT", default_value_t = 100_000)]
    pub retention_count: u64,

    /// Oldest update the event log retains (0: no age limit).
    #[arg(long, env = "HERALD_RETENTION_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub retention_age: Duration,

    /// Updates kept in memory for fast replay.
    #[arg(long, env = "HERALD_HISTORY_SIZE", default_value_t = 10_000)]
    pub history_size: usize,

    /// Bytes of updates kept in memory for fast replay; the oldest leave first when this or
    /// --history-size is reached.
    #[arg(long, env = "HERALD_HISTORY_BYTES", default_value_t = 64 << 20)]
    pub history_bytes: usize,

    /// `full` fsyncs every commit before acknowledging; `normal` survives a crash of Herald
    /// but may lose the last commits on power loss.
    #[arg(long, env = "HERALD_DURABILITY", default_value = "full")]
    pub durability: Durability,

    /// Largest request body, in bytes (413 above it).
    #[arg(long, env = "HERALD_MAX_BODY", default_value_t = 1 << 20)]
    pub max_body: usize,

    /// Most topics in one publish (400 above it).
    #[arg(long, env = "HERALD_MAX_TOPICS", default_value_t = 64)]
    pub max_topics: usize,

    /// Most topic selectors in one subscription (400 above it).
    #[arg(long, env = "HERALD_MAX_SELECTORS", default_value_t = 64)]
    pub max_selectors: usize,

    /// Most open streams in all (503 above it). 0: derived from the file-descriptor limit.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Most open streams from one client IP address (429 above it).
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    pub max_connections_per_ip: usize,

    /// Most updates waiting for one subscriber; one that falls further behind is cut off and
    /// resumes by replay.
    #[arg(long, env = "HERALD_SUBSCRIBER_QUEUE", default_value_t = 4096)]
    pub subscriber_queue: usize,

    /// Origins allowed to call Herald from a browser on another origin (CORS, with
    /// credentials). Repeat the flag, or separate with commas. None by default.
    #[arg(
        long = "cors-origin",
        env = "HERALD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Most open TCP connections, streams and requests together; when reached, no
    /// connection is accepted until one closes. 0: derived from the file-descriptor limit,
    /// above the most open streams.
    #[arg(long, env = "HERALD_MAX_TCP_CONNECTIONS", default_value_t = 0)]
    pub max_tcp_connections: usize,

    /// Most open TCP connections from one client address (IPv6: one /64); more are closed
    /// as soon as they are accepted. 0: --max-connections-per-ip plus room for requests.
    #[arg(long, env = "HERALD_MAX_TCP_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_tcp_connections_per_ip: usize,

    /// How long a connection's socket may accept no data while there is data to send to
    /// it; the stream or response then ends and its memory is freed. Every protocol alike.
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// How long a request's body may take to arrive, from when it is first read; a slower
    /// one is answered 408 and its connection closed.
    #[arg(long, env = "HERALD_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// Longest time a long-poll (a stream URL asked for with `Accept: application/json`)
    /// waits for an event before answering with none; at most 30 s. Keep it below the idle
    /// timeout of every proxy in front of the server.
    #[arg(long, env = "HERALD_POLL_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub poll_timeout: Duration,

    /// How long a graceful shutdown waits for requests to finish.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Log format: `text` or `json`.
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Redis that makes this node part of a cluster: the event log is then a Redis Stream
    /// shared by every node, instead of SQLite in the data directory. Run Redis with
    /// `appendonly yes` and `appendfsync always` so acknowledged updates survive its restart.
    #[arg(long, env = "HERALD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of the Redis keys, so several clusters can share one Redis.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald")]
    pub redis_prefix: String,

    /// Email of the admin created on first start, when the app has no user yet.
    #[arg(long, env = "HERALD_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of that admin; generated and printed once when not given.
    #[arg(long, env = "HERALD_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Login attempts from one client address (IPv6: one /64), whatever the account, as
    /// BURST/PERIOD: at most BURST at once, refilled evenly over PERIOD (0: no limit).
    #[arg(long, env = "HERALD_LOGIN_IP_RATE", default_value = "20/1m")]
    pub login_ip_rate: Rate,

    /// Failed logins to one account from one client address (BURST/PERIOD; 0: no limit).
    /// Right passwords do not count.
    #[arg(long, env = "HERALD_LOGIN_FAILURE_RATE", default_value = "5/2m30s")]
    pub login_failure_rate: Rate,

    /// Failed logins to one account from all addresses together (BURST/PERIOD; 0: no limit).
    #[arg(long, env = "HERALD_LOGIN_ACCOUNT_RATE", default_value = "20/2m")]
    pub login_account_rate: Rate,

    /// App changes (POST, PATCH, DELETE under /api) by one user (BURST/PERIOD; 0: no limit).
    #[arg(long, env = "HERALD_APP_CHANGE_RATE", default_value = "100/5s")]
    pub app_change_rate: Rate,

    /// App changes in one workspace, by all its members together (BURST/PERIOD; 0: no
    /// limit).
    #[arg(long, env = "HERALD_WORKSPACE_CHANGE_RATE", default_value = "500/5s")]
    pub workspace_change_rate: Rate,

    /// Mercure publishes per publisher: per the JWT's `sub` claim, or per token without one
    /// (BURST/PERIOD; 0: no limit, the default).
    #[arg(long, env = "HERALD_PUBLISH_RATE", default_value = "0")]
    pub publish_rate: Rate,

    /// Announced Mercure subscriptions per client address (IPv6: one /64), one per matcher
    /// of each subscription while `--subscription-events` is on (BURST/PERIOD; 0: no
    /// limit). Each costs the log an event at its start and one at its end; a subscription
    /// over the limit is refused with 429.
    #[arg(
        long,
        env = "HERALD_SUBSCRIPTION_EVENT_RATE",
        default_value = "200/12s"
    )]
    pub subscription_event_rate: Rate,

    /// App presence announcements per user: one per workspace where a stream shows its user
    /// online first (BURST/PERIOD; 0: no limit). A stream over the limit is refused with
    /// 429.
    #[arg(long, env = "HERALD_PRESENCE_RATE", default_value = "200/12s")]
    pub presence_rate: Rate,

    /// Serve HTTPS (and HTTP/2, by ALPN) with this PEM certificate chain, the server's
    /// certificate first. Needs --tls-key. SIGHUP reads both files again.
    #[arg(long, env = "HERALD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// An issuer whose Mercure 1.0 access tokens (and 0.x tokens naming it in `iss`) this
    /// hub trusts: `URI`, verified with the hub's --jwt-key, or `URI=KEYFILE`, verified with
    /// the key in KEYFILE (a PEM public key: RS256/PS256 for RSA, ES256/ES384 for EC, EdDSA
    /// for Ed25519; else an HS256 secret). Repeat the flag, or separate with commas. With
    /// issuers set, a token naming another issuer is refused.
    #[arg(long = "issuer", env = "HERALD_ISSUER", value_delimiter = ',')]
    pub issuers: Vec<String>,

    /// The resource identifier Mercure 1.0 access tokens must name in `aud`, e.g.
    /// `https://hub.example.com/.well-known/mercure`. Without it, the hub URL the request
    /// reached (http or https, the request's Host, /.well-known/mercure).
    #[arg(long, env = "HERALD_RESOURCE")]
    pub resource: Option<String>,
}

/// A trusted token issuer.
#[derive(Clone)]
pub struct Issuer {
    /// Its identifier, as tokens name it in `iss`.
    pub uri: String,
    /// Its own verification key; `None`: the hub's keys.
    pub key: Option<crate::auth::VerifyingKey>,
}

/// Parses an `--issuer` value: `URI` or `URI=KEYFILE`.
fn issuer(spec: &str) -> Result<Issuer, String> {
    let (uri, file) = match spec.split_once('=') {
        Some((uri, file)) => (uri.trim(), Some(file.trim())),
        None => (spec.trim(), None),
    };
    if uri.is_empty() || uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("--issuer {uri:?} is not a URI"));
    }
    let key = match file {
        None => None,
        Some(file) => {
            let bytes = std::fs::read(file)
                .map_err(|error| format!("--issuer {uri}: cannot read {file}: {error}"))?;
            Some(
                crate::auth::VerifyingKey::from_file_bytes(&bytes)
                    .map_err(|why| format!("--issuer {uri}: {file}: {why}"))?,
            )
        }
    };
    Ok(Issuer {
        uri: uri.to_owned(),
        key,
    })
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `serve` needs, checked.
#[derive(Clone)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// The app's database, when not SQLite in `data_dir`. Holds a password: never logged.
    pub database_url: Option<String>,
    /// Key for publisher JWTs.
    pub publisher_key: Vec<u8>,
    /// Key for subscriber JWTs.
    pub subscriber_key: Vec<u8>,
    /// Whether subscribers may connect without a JWT.
    pub anonymous: bool,
    /// Whether Mercure subscriptions are announced and listed (`--subscription-events`).
    pub subscription_events: bool,
    /// The hub's settings.
    pub hub: HubConfig,
    /// Event log durability.
    pub durability: Durability,
    /// Largest request body.
    pub max_body: usize,
    /// Most open streams.
    pub max_connections: usize,
    /// Most open streams per client IP.
    pub max_connections_per_ip: usize,
    /// Most open TCP connections.
    pub max_tcp_connections: usize,
    /// Most open TCP connections from one client address.
    pub max_tcp_connections_per_ip: usize,
    /// Longest time a socket may take no data while some waits for it.
    pub write_timeout: Duration,
    /// Longest time a request body may take to arrive.
    pub body_timeout: Duration,
    /// Longest time a long-poll waits for an event.
    pub poll_timeout: Duration,
    /// Allowed CORS origins.
    pub cors_origins: Vec<String>,
    /// Drain time limit at shutdown.
    pub shutdown_grace: Duration,
    /// The cluster's Redis, if any.
    pub redis_url: Option<String>,
    /// Prefix of the cluster's Redis keys.
    pub redis_prefix: String,
    /// The first admin's email, if chosen.
    pub admin_email: Option<String>,
    /// The first admin's password, if chosen.
    pub admin_password: Option<String>,
    /// Rate limits of logins, app changes and publishes.
    pub rates: Rates,
    /// HTTPS, when a certificate and key were given: their files, checked and loaded.
    pub tls: Option<Tls>,
    /// Trusted token issuers (`--issuer`).
    pub issuers: Vec<Issuer>,
    /// The resource identifier 1.0 tokens must name in `aud` (`--resource`).
    pub resource: Option<String>,
}

/// The rate limits, each off when its rate is `0`.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Login attempts per client address.
    pub login_ip: Rate,
    /// Failed logins per account and client address.
    pub login_failure: Rate,
    /// Failed logins per account.
    pub login_account: Rate,
    /// App changes per user.
    pub app_change: Rate,
    /// App changes per workspace.
    pub workspace_change: Rate,
    /// Publishes per publisher (JWT subject, else token).
    pub publish: Rate,
    /// Announced Mercure subscriptions per client address.
    pub subscription_events: Rate,
    /// App presence announcements per user.
    pub presence: Rate,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are secrets: never print them.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database",
                &self.database_url.as_deref().map(herald_app::describe_url),
            )
            .field("anonymous", &self.anonymous)
            .field("subscription_events", &self.subscription_events)
            .field("hub", &self.hub)
            .field("max_body", &self.max_body)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_tcp_connections", &self.max_tcp_connections)
            .field(
                "max_tcp_connections_per_ip",
                &self.max_tcp_connections_per_ip,
            )
            .field("write_timeout", &self.write_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("poll_timeout", &self.poll_timeout)
            .field("cors_origins", &self.cors_origins)
            .field("rates", &self.rates)
            .field("tls", &self.tls)
            // The issuers' names only: a key file may hold a secret.
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.uri).collect::<Vec<_>>(),
            )
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Longest `--poll-timeout` accepted.
const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest HS256 key accepted: RFC 7518 asks for a key at least as long as the hash (32
/// bytes); a shorter one is guessable.
pub const MIN_KEY_LEN: usize = 32;

/// File descriptors kept for everything that is not a stream (log, listener, publishers).
const FD_RESERVE: usize = 256;

/// File descriptors kept for everything that is not a TCP connection (the log and app
/// database files, the listener, Redis and PostgreSQL connections). Below [`FD_RESERVE`], so
/// that with both limits derived, every stream fits and a few hundred more connections
/// (publishers, `/healthz`, the app) still do.
const TCP_FD_RESERVE: usize = 64;

/// TCP connections one client address may hold beyond its streams, by default: a browser's
/// or a publisher's requests beside the streams it holds.
const TCP_PER_IP_EXTRA: usize = 64;

/// The hub's own URL, which relative URL Patterns and the relative topics they are matched
/// with resolve against, and under whose path no update may be published:
/// the resource identifier (`--resource`) when one is configured, else
/// [`herald_hub::urlpattern::DEFAULT_HUB_URL`].
fn hub_url(args: &ServeArgs) -> url::Url {
    args.resource
        .as_deref()
        .and_then(|resource| url::Url::parse(resource).ok())
        .unwrap_or_else(herald_hub::urlpattern::default_hub_url)
}

impl Config {
    /// Checks the flags. `default_key` is the key to use when none was given (read from or
    /// generated into the data directory by the caller).
    ///
    /// # Errors
    ///
    /// A message that says which flag is wrong and why.
    pub fn from_args(args: &ServeArgs, default_key: Option<String>) -> Result<Self, String> {
        let key = args.jwt_key.clone().or(default_key);
        let publisher_key = args
            .publisher_jwt_key
            .clone()
            .or_else(|| key.clone())
            .ok_or("no JWT key: set --jwt-key (HERALD_JWT_KEY)")?;
        let subscriber_key = args
            .subscriber_jwt_key
            .clone()
            .or(key)
            .ok_or("no JWT key: set --jwt-key (HERALD_JWT_KEY)")?;
        for (name, key) in [
            ("publisher", &publisher_key),
            ("subscriber", &subscriber_key),
        ] {
            if key.len() < MIN_KEY_LEN {
                return Err(format!(
                    "the {name} JWT key is {} bytes; HS256 needs at least {MIN_KEY_LEN}",
                    key.len()
                ));
            }
        }
        for (name, value) in [
            ("--max-body", args.max_body),
            ("--max-topics", args.max_topics),
            ("--max-selectors", args.max_selectors),
            ("--max-connections-per-ip", args.max_connections_per_ip),
            ("--subscriber-queue", args.subscriber_queue),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if let Some(url) = &args.database_url {
            herald_app::Backend::of_url(url)?;
        }
        for origin in &args.cors_origins {
            if origin == "*" {
                return Err(
                    "--cors-origin '*' is not allowed: streams carry credentials, list the origins"
                        .into(),
                );
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/').matches('/').count() > 2
            {
                return Err(format!(
                    "--cors-origin {origin:?} is not an origin like https://app.example.com"
                ));
            }
        }
        if let Some(url) = &args.redis_url
            && !url.starts_with("redis://")
        {
            return Err("--redis-url must start with redis://".into());
        }
        if args.redis_prefix.is_empty() || args.redis_prefix.contains(char::is_whitespace) {
            return Err("--redis-prefix must be a non-empty word".into());
        }
        if args.poll_timeout > MAX_POLL_TIMEOUT {
            return Err(format!(
                "--poll-timeout must be at most {}s: herald.js gives up on a poll after 40 s, \
                 and proxies commonly close requests silent for 30 s",
                MAX_POLL_TIMEOUT.as_secs()
            ));
        }
        for (name, value) in [
            ("--write-timeout", args.write_timeout),
            ("--body-timeout", args.body_timeout),
            ("--poll-timeout", args.poll_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be longer than 0"));
            }
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                let loaded = crate::tls::load(&files)?;
                Some(Tls::new(files, loaded)?)
            }
            (Some(_), None) => return Err("--tls-cert needs --tls-key (HERALD_TLS_KEY)".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert (HERALD_TLS_CERT)".into()),
        };
        let issuers = args
            .issuers
            .iter()
            .map(|spec| issuer(spec))
            .collect::<Result<Vec<_>, _>>()?;
        let resource = match &args.resource {
            Some(resource)
                if !(resource.starts_with("https://") || resource.starts_with("http://"))
                    || resource
                        .chars()
                        .any(|c| c.is_control() || c == ' ' || c == '"') =>
            {
                return Err(format!("--resource {resource:?} is not an http(s) URI"));
            }
            resource => resource.clone(),
        };
        let fd_limit = crate::limits::raise_fd_limit();
        let max_connections = match args.max_connections {
            0 => fd_limit.saturating_sub(FD_RESERVE).max(1),
            n => n,
        };
        let max_tcp_connections = match args.max_tcp_connections {
            0 => fd_limit.saturating_sub(TCP_FD_RESERVE).max(1),
            n => n,
        };
        let max_tcp_connections_per_ip = match args.max_tcp_connections_per_ip {
            0 => args.max_connections_per_ip.saturating_add(TCP_PER_IP_EXTRA),
            n => n,
        };
        let hub = HubConfig {
            history_capacity: args.history_size,
            history_bytes: args.history_bytes,
            retention_count: (args.retention_count > 0).then_some(args.retention_count),
            retention_age: (!args.retention_age.is_zero()).then_some(args.retention_age),
            queue: QueueLimits {
                max_frames: args.subscriber_queue,
                ..QueueLimits::default()
            },
            heartbeat: (!args.heartbeat.is_zero()).then_some(args.heartbeat),
            retry_hint: args.retry,
            limits: UpdateLimits {
                max_topics: args.max_topics,
                ..UpdateLimits::default()
            },
            max_selectors: args.max_selectors,
            base_url: hub_url(args),
            ..HubConfig::default()
        };
        Ok(Self {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
            publisher_key: publisher_key.into_bytes(),
            subscriber_key: subscriber_key.into_bytes(),
            anonymous: args.anonymous,
            subscription_events: args.subscription_events,
            hub,
            durability: args.durability,
            max_body: args.max_body,
            max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            max_tcp_connections,
            max_tcp_connections_per_ip,
            write_timeout: args.write_timeout,
            body_timeout: args.body_timeout,
            poll_timeout: args.poll_timeout,
            cors_origins: args
                .cors_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            shutdown_grace: args.shutdown_grace,
            redis_url: args.redis_url.clone(),
            redis_prefix: args.redis_prefix.clone(),
            admin_email: args.admin_email.clone(),
            admin_password: args.admin_password.clone(),
            rates: Rates {
                login_ip: args.login_ip_rate,
                login_failure: args.login_failure_rate,
                login_account: args.login_account_rate,
                app_change: args.app_change_rate,
                workspace_change: args.workspace_change_rate,
                publish: args.publish_rate,
                subscription_events: args.subscription_event_rate,
                presence: args.presence_rate,
            },
            tls,
            issuers,
            resource,
        })
    }
}
