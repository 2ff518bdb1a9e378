//! The `herald` command: `serve`, `token`, `publish`, `tail`, and `user` administration.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use herald_app::{Accounts, NewUser, UserRole};
use herald_client::{Client, Publication};

use crate::{
    auth::{self, Claims, MercureClaim},
    config::{Config, LogFormat, ServeArgs},
    server,
};

/// Exit status for bad configuration (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// Herald: real-time updates over Server-Sent Events, on the Mercure protocol.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub.
    // Boxed: its flags take several times the room of any other command's.
    Serve(Box<ServeArgs>),
    /// Print a JWT for publishers and subscribers.
    Token(TokenArgs),
    /// Publish one update and print its id.
    Publish(PublishArgs),
    /// Subscribe and print events as they arrive.
    Tail(TailArgs),
    /// Manage the app's users and their API tokens.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user. The password comes from HERALD_USER_PASSWORD, or is generated and
    /// printed once.
    Add(UserAddArgs),
    /// Create a bearer API token for a user and print it (shown only this once).
    Token(UserTokenArgs),
    /// Deactivate a user: no login, sessions deleted, API tokens refused; their streams on
    /// running servers end within a second.
    Deactivate(UserEmailArgs),
    /// Activate a deactivated user again.
    Activate(UserEmailArgs),
}

#[derive(Debug, clap::Args)]
struct UserEmailArgs {
    /// The user's email.
    email: String,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
struct UserAddArgs {
    /// The user's email (unique).
    #[arg(long)]
    email: String,
    /// The user's display name.
    #[arg(long)]
    name: String,
    /// `admin` or `member`.
    #[arg(long, default_value = "member", value_parser = parse_role)]
    role: UserRole,
    /// The initial password. Prefer the environment variable: command lines are visible to
    /// other users of the machine.
    #[arg(long, env = "HERALD_USER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
struct UserTokenArgs {
    /// Email of the user the token acts as.
    email: String,
    /// A label for the token, to recognize it later.
    #[arg(long, default_value = "cli")]
    name: String,
    /// Also allow sending notifications and broadcasts.
    #[arg(long)]
    notify: bool,
    /// Lifetime of the token, such as 30d or 12h (default: until revoked).
    #[arg(long, value_parser = parse_token_ttl)]
    ttl: Option<Duration>,
    #[command(flatten)]
    db: DbArgs,
}

fn parse_token_ttl(ttl: &str) -> Result<Duration, String> {
    herald_app::accounts::parse_ttl(ttl).map_err(|e| e.message)
}

/// Where a command finds the app's database: as `herald serve` does.
#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The app's database URL (`postgres://…` or `sqlite://…`), as given to `herald serve`.
    #[arg(long, env = "HERALD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Data directory holding the app database (in herald.db) when no --database-url is given.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
}

fn parse_role(role: &str) -> Result<UserRole, String> {
    role.parse()
}

/// Where a command finds the key to mint tokens with.
#[derive(Debug, clap::Args)]
struct KeyArgs {
    /// HS256 key (default: the key generated in --data-dir).
    #[arg(long, env = "HERALD_JWT_KEY", hide_env_values = true)]
    jwt_key: Option<String>,
    /// Data directory holding the generated key.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
}

impl KeyArgs {
    fn key(&self) -> anyhow::Result<String> {
        if let Some(key) = &self.jwt_key {
            return Ok(key.clone());
        }
        let path = self.data_dir.join(server::KEY_FILE);
        std::fs::read_to_string(&path)
            .map(|k| k.trim().to_owned())
            .with_context(|| format!("no --jwt-key given and no key in {}", path.display()))
    }
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// Topic selector the token may publish to (repeatable; `*` for all).
    #[arg(long)]
    publish: Vec<String>,
    /// Topic selector of private updates the token may receive (repeatable).
    #[arg(long)]
    subscribe: Vec<String>,
    /// Lifetime of the token (0: no expiry; a 1.0 token must expire).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Mint a Mercure 1.0 access token (`typ: at+jwt`, `authorization_details`) instead of
    /// a 0.x token; needs --issuer and --audience.
    #[arg(long)]
    v1: bool,
    /// The 1.0 token's issuer (`iss`), one of the hub's --issuer.
    #[arg(long, requires = "v1")]
    issuer: Option<String>,
    /// The 1.0 token's audience (`aud`): the hub's resource identifier, e.g.
    /// https://hub.example.com/.well-known/mercure.
    #[arg(long, requires = "v1")]
    audience: Option<String>,
    /// The 1.0 token's subject (`sub`).
    #[arg(long, requires = "v1")]
    subject: Option<String>,
    /// A URL Pattern the 1.0 token may publish to (repeatable; --publish gives exact topics).
    #[arg(long, requires = "v1")]
    publish_urlpattern: Vec<String>,
    /// A URL Pattern of private updates the 1.0 token may receive (repeatable).
    #[arg(long, requires = "v1")]
    subscribe_urlpattern: Vec<String>,
    #[command(flatten)]
    key: KeyArgs,
}

/// How to reach the hub and authenticate.
#[derive(Debug, clap::Args)]
struct HubArgs {
    /// The hub: its origin or its full URL.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A JWT to send; by default one is minted from the key.
    #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// Topic of the update (repeatable).
    #[arg(long, required = true)]
    topic: Vec<String>,
    /// The payload; `-` reads it from standard input.
    #[arg(long, default_value = "")]
    data: String,
    /// Only authorized subscribers receive it.
    #[arg(long)]
    private: bool,
    /// The update's id (default: generated by the hub).
    #[arg(long)]
    id: Option<String>,
    /// The SSE event type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The SSE retry value, in milliseconds.
    #[arg(long)]
    retry: Option<u64>,
    #[command(flatten)]
    hub: HubArgs,
}

#[derive(Debug, clap::Args)]
struct TailArgs {
    /// Topic selector (repeatable).
    #[arg(long, required = true)]
    topic: Vec<String>,
    /// Resume after this id (`earliest` for all retained updates).
    #[arg(long)]
    last_event_id: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<usize>,
    /// Print one JSON object per event instead of SSE-like text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hub: HubArgs,
}

/// Runs the command line; returns the process's exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    init_tracing(log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => return serve(*args).await,
            Command::Token(args) => token(&args),
            Command::Publish(args) => publish(args).await,
            Command::Tail(args) => tail(args).await,
            Command::User(UserCommand::Add(args)) => user_add(args).await,
            Command::User(UserCommand::Token(args)) => user_token(args).await,
            Command::User(UserCommand::Deactivate(args)) => user_set_active(args, false).await,
            Command::User(UserCommand::Activate(args)) => user_set_active(args, true).await,
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        // PostgreSQL's notices (such as "relation already exists, skipping" from the
        // migrations at every start) are not news.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Held until the server has stopped: one server per data directory.
    let _lock = match server::lock_data_dir(&args.data_dir) {
        Ok(lock) => lock,
        Err(server::LockError::Held(pid)) => {
            let holder = pid.map_or_else(
                || "another herald".to_owned(),
                |pid| format!("another herald (pid {pid})"),
            );
            eprintln!(
                "error: {holder} is serving from the data directory {}; stop it, or give \
                 this one another --data-dir",
                args.data_dir.display()
            );
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(server::LockError::Io(error)) => return Err(error),
    };
    let needs_key = args.jwt_key.is_none()
        && (args.publisher_jwt_key.is_none() || args.subscriber_jwt_key.is_none());
    let default_key = if needs_key {
        Some(server::data_dir_key(&args.data_dir)?)
    } else {
        None
    };
    let config = match Config::from_args(&args, default_key) {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("error: {problem}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    server::serve(config).await?;
    Ok(ExitCode::SUCCESS)
}

fn mint(
    key: &KeyArgs,
    publish: Vec<String>,
    subscribe: Vec<String>,
    ttl: Duration,
) -> anyhow::Result<String> {
    let exp = (!ttl.is_zero()).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (now + ttl).as_secs()
    });
    let claims = Claims {
        mercure: Some(MercureClaim {
            publish: (!publish.is_empty()).then_some(publish),
            subscribe: (!subscribe.is_empty()).then_some(subscribe),
        }),
        exp,
        sub: None,
    };
    auth::mint(key.key()?.as_bytes(), &claims).context("cannot sign the token")
}

/// A 1.0 access token of `args`: --publish/--subscribe as exact topics, the
/// `--*-urlpattern` flags as URL Patterns.
fn mint_v1(args: &TokenArgs) -> anyhow::Result<String> {
    use herald_hub::Matcher;
    let (Some(issuer), Some(audience)) = (&args.issuer, &args.audience) else {
        anyhow::bail!("a 1.0 token needs --issuer and --audience");
    };
    if args.ttl.is_zero() {
        anyhow::bail!("a 1.0 token must expire: give --ttl longer than 0");
    }
    let matchers = |exact: &[String], patterns: &[String]| -> Vec<Matcher> {
        exact
            .iter()
            .map(Matcher::exact)
            .chain(patterns.iter().map(Matcher::url_pattern))
            .collect()
    };
    let mut details = Vec::new();
    for (action, topics) in [
        ("publish", matchers(&args.publish, &args.publish_urlpattern)),
        (
            "subscribe",
            matchers(&args.subscribe, &args.subscribe_urlpattern),
        ),
    ] {
        if !topics.is_empty() {
            details.push(auth::Detail {
                actions: vec![action],
                topics,
                payload: None,
            });
        }
    }
    if details.is_empty() {
        anyhow::bail!("give at least one --publish, --subscribe or --*-urlpattern topic");
    }
    auth::mint_v1(
        args.key.key()?.as_bytes(),
        issuer,
        audience,
        args.subject.as_deref(),
        auth::unix_now() + args.ttl.as_secs(),
        &details,
    )
    .context("cannot sign the token")
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    if args.v1 {
        println!("{}", mint_v1(args)?);
        return Ok(());
    }
    if args.publish.is_empty() && args.subscribe.is_empty() {
        anyhow::bail!("give at least one --publish or --subscribe selector");
    }
    println!(
        "{}",
        mint(
            &args.key,
            args.publish.clone(),
            args.subscribe.clone(),
            args.ttl
        )?
    );
    Ok(())
}

/// A client with `--token`, or with a token minted from the key for exactly what the command
/// does: publishing to `topics`, or subscribing to them.
fn client(hub: &HubArgs, topics: &[String], publish: bool) -> anyhow::Result<Client> {
    let token = match &hub.token {
        Some(token) => token.clone(),
        None if publish => mint(&hub.key, topics.to_vec(), vec![], Duration::from_secs(300))?,
        None => mint(
            &hub.key,
            vec![],
            topics.to_vec(),
            Duration::from_secs(24 * 3600),
        )?,
    };
    Ok(Client::new(&hub.url).with_token(token))
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let data = if args.data == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        args.data
    };
    let client = client(&args.hub, &args.topic, true)?;
    let update = Publication {
        topics: args.topic,
        data,
        private: args.private,
        id: args.id,
        event_type: args.event_type,
        retry: args.retry,
    };
    let id = client.publish(&update).await?;
    println!("{id}");
    Ok(())
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let mut subscribe = client(&args.hub, &args.topic, false)?.subscribe(args.topic);
    if let Some(id) = args.last_event_id {
        subscribe = subscribe.last_event_id(id);
    }
    let mut events = subscribe.stream();
    let mut seen = 0;
    while args.count.is_none_or(|count| seen < count) {
        let Some(event) = events.next().await else {
            break;
        };
        match event {
            Ok(event) => {
                seen += 1;
                if args.json {
                    let line = serde_json::json!({
                        "id": event.last_event_id, "type": event.event, "data": event.data,
                    });
                    println!("{line}");
                } else {
                    println!("id: {}\nevent: {}", event.last_event_id, event.event);
                    for line in event.data.split('\n') {
                        println!("data: {line}");
                    }
                    println!();
                }
            }
            Err(error) if error.status().is_some() => return Err(error.into()),
            Err(error) => eprintln!("warning: {error}; reconnecting"),
        }
    }
    Ok(())
}

/// The accounts of the app database `args` name. A write lock this process leaves behind
/// ends with its connection when the process exits.
async fn app_accounts(args: &DbArgs) -> anyhow::Result<Accounts> {
    if let Some(url) = &args.database_url {
        herald_app::Backend::of_url(url).map_err(anyhow::Error::msg)?;
    }
    let pool = herald_app::open_db(args.database_url.as_deref(), &args.data_dir)
        .await
        .context("cannot open the app database")?;
    Ok(Accounts::new(pool, tokio_util::task::TaskTracker::new()))
}

async fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let accounts = app_accounts(&args.db).await?;
    let generated = args.password.is_none();
    let password = args
        .password
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let user = accounts
        .add_user(NewUser {
            email: args.email,
            name: args.name,
            password: password.clone(),
            role: args.role,
        })
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!("{}", serde_json::to_string(&user)?);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

async fn user_token(args: UserTokenArgs) -> anyhow::Result<()> {
    let accounts = app_accounts(&args.db).await?;
    let spec = herald_app::TokenSpec {
        name: args.name,
        can_notify: args.notify,
        ttl: args.ttl,
    };
    let made = accounts
        .create_token(&args.email, spec)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!("{}", made.token);
    Ok(())
}

async fn user_set_active(args: UserEmailArgs, active: bool) -> anyhow::Result<()> {
    let accounts = app_accounts(&args.db).await?;
    let account = accounts
        .set_active_by_email(&args.email, active)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!("{}", serde_json::to_string(&account)?);
    Ok(())
}
