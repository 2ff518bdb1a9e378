//! The HTTP server: the router ([`router()`]), start-up ([`serve`]) and graceful shutdown.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use axum::serve::Listener as _;
use axum::{
    Router,
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
    routing::get,
};
use herald_app::{Accounts, App, Commits};
use herald_hub::{EventLog, Hub, RedisLog, SqliteLog, presence::Registry};
use hyper_util::server::graceful::GracefulShutdown;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::{
    config::Config,
    connection,
    error::{ApiError, ErrorCode},
    limits::CountingListener,
    routes::{self, mercure},
    state::ServerState,
    tls::Reloadable,
};

pub use herald_app::data_dir::{KEY_FILE, LOCK_FILE, LOG_FILE, create_data_dir, private_db_file};

/// The data directory's lock, held by a running `herald serve` until it exits.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Why the data directory could not be locked.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: the process id it wrote, if readable.
    Held(Option<u32>),
    /// The lock file could not be opened or locked.
    Io(anyhow::Error),
}

/// Takes the exclusive lock of `data_dir` (creating the directory if needed), and writes
/// this process's id into the lock file. The lock ends with the process, however it ends.
///
/// # Errors
///
/// [`LockError::Held`] when another process holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, LockError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    create_data_dir(data_dir).map_err(LockError::Io)?;
    let path = data_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
        .map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            return Err(LockError::Held(pid));
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(LockError::Io(
                anyhow::Error::new(error).context(format!("cannot lock {}", path.display())),
            ));
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    if let Err(error) = written {
        // The lock holds without the id; only the message of a second server misses it.
        tracing::warn!(%error, path = %path.display(), "cannot write the process id");
    }
    Ok(DataDirLock { _file: file })
}

/// The router, without a socket, so tests can call it directly.
pub fn router(state: ServerState) -> Router {
    // No CORS headers at all unless origins are configured: secure by default.
    let cors = (!state.origins.allowed.is_empty()).then(|| cors_layer(&state.origins.allowed));
    Router::new()
        .merge(routes::app::routes())
        .route(
            mercure::PATH,
            get(mercure::subscribe)
                .post(mercure::publish)
                // `QUERY`, which the method filters do not name, and 405 for the rest.
                .fallback(mercure::subscribe_query),
        )
        .route(
            herald_hub::presence::SUBSCRIPTIONS_PATH,
            get(mercure::subscriptions),
        )
        .route(
            "/.well-known/mercure/subscriptions/{*rest}",
            get(mercure::subscriptions),
        )
        .merge(routes::ops::routes())
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
        })
        .with_state(state.clone())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::LINK,
            HeaderValue::from_static(mercure::LINK),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The path only: query strings may carry tokens.
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .layer(tower::util::option_layer(cors))
        // Public and readable from any origin, so outside the credentialed CORS layer.
        .merge(
            Router::new()
                .route(mercure::metadata::PATH, get(mercure::metadata::metadata))
                .with_state(state),
        )
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            // Mercure 1.0 subscribes with QUERY too: a form body instead of a query string.
            Method::from_bytes(b"QUERY").expect("a method name"),
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::LINK,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("mercure-last-event-id"),
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
            HeaderName::from_static("accept-query"),
            HeaderName::from_static(crate::routes::app::POSITION_HEADER),
        ])
}

/// Reads the JWT key kept in `data_dir`, generating it on first start.
///
/// # Errors
///
/// When the directory or the file cannot be read or written.
pub fn data_dir_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(KEY_FILE);
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_owned());
    }
    create_data_dir(data_dir)?;
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a JWT key; `herald token` reads it from there");
    Ok(key)
}

fn write_private(path: &PathBuf, contents: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Runs the server until SIGTERM or Ctrl-C, then shuts down gracefully: stops accepting,
/// stores what publishers already submitted, ends every stream (clients reconnect and resume
/// by id), and waits at most `shutdown_grace` for the rest.
///
/// # Errors
///
/// When the data directory, the log or the listening socket cannot be set up.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    create_data_dir(&config.data_dir)?;
    let log: Arc<dyn EventLog> = match &config.redis_url {
        Some(url) => {
            let log = RedisLog::connect(url, &config.redis_prefix)
                .await
                .context("cannot reach the cluster's Redis (--redis-url)")?;
            tracing::info!(prefix = %config.redis_prefix, "clustered: the event log is shared in Redis");
            Arc::new(log)
        }
        None => {
            let path = config.data_dir.join(LOG_FILE);
            private_db_file(&path)?;
            Arc::new(
                SqliteLog::open(&path, config.durability)
                    .await
                    .context("cannot open the event log")?,
            )
        }
    };
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    // The hub and the registry of subscriptions stop later than the rest: once the
    // registry has announced the end of every local subscription (or at any early return).
    let hub_shutdown = CancellationToken::new();
    let _stop_hub = hub_shutdown.clone().drop_guard();
    let hub = Hub::start(
        config.hub.clone(),
        log.clone(),
        &tracker,
        hub_shutdown.clone(),
    )
    .await
    .context("cannot start the hub")?;
    let pool = herald_app::open_db(config.database_url.as_deref(), &config.data_dir)
        .await
        .context("cannot open the app database")?;
    let database = match &config.database_url {
        Some(url) => herald_app::describe_url(url),
        None => format!("SQLite {}", config.data_dir.join(LOG_FILE).display()),
    };
    // In the log's own file, a change commits with its events; elsewhere through the outbox.
    let commits = if config.database_url.is_none() && config.redis_url.is_none() {
        Commits::WithLog
    } else {
        Commits::Outbox
    };
    tracing::info!(%database, ?commits, "opened the app database");
    let first_start = Accounts::new(pool.clone(), tracker.clone())
        .bootstrap(config.admin_email.clone(), config.admin_password.clone())
        .await?;
    let the_app = App::start(pool, hub.clone(), commits, &tracker, shutdown.clone())
        .await
        .context("cannot start the app")?;
    let redis = config
        .redis_url
        .as_deref()
        .map(|url| (url, config.redis_prefix.as_str()));
    let presence = Registry::start(hub.clone(), redis, &tracker, hub_shutdown.clone())
        .await
        .context("cannot start the registry of subscriptions")?;
    let mut state =
        ServerState::new(hub, the_app, &config, shutdown.clone()).with_presence(presence.clone());
    if config.subscription_events {
        state = state.with_subscriptions(presence.clone());
    }
    let listener =
        listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let mut listener = CountingListener::new(
        listener,
        state.metrics.connections.clone(),
        config.max_tcp_connections,
        config.max_tcp_connections_per_ip,
        config.write_timeout,
    );
    tracing::info!(
        %address,
        max_streams = config.max_connections,
        max_tcp_connections = config.max_tcp_connections,
        "herald is listening"
    );
    if let Some(tls) = &config.tls {
        let certificate = &tls.reloadable;
        tracing::info!(
            cert = %certificate.files().cert.display(),
            not_after = certificate.not_after().as_deref().unwrap_or("unknown"),
            "serving HTTPS and HTTP/2"
        );
    }
    // Before the address is printed: whoever waits for it may send SIGHUP at once. Without
    // TLS, SIGHUP reloads nothing, but it must not end the server as its default action
    // would (a renewal hook left in place after TLS moved to a proxy).
    reload_on_hangup(
        config.tls.as_ref().map(|tls| tls.reloadable.clone()),
        &tracker,
        shutdown.clone(),
    )?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("Herald hub at {scheme}://{address}{}", mercure::PATH);
    println!("Herald app at {scheme}://{address}/");
    if let Some(first) = first_start {
        // Printed once, on stdout only: the log never carries credentials.
        match first.generated_password {
            Some(password) => println!(
                "First start: sign in as {} with password {password} (shown only now)",
                first.email
            ),
            None => println!(
                "First start: sign in as {} with the password from HERALD_ADMIN_PASSWORD",
                first.email
            ),
        }
    }

    tracker.spawn(signal(shutdown.clone()));
    let shared = connection::Shared {
        router: router(state.clone()),
        state,
        shutdown: shutdown.clone(),
        tls: config.tls.as_ref().map(|tls| tls.acceptor.clone()),
        write_timeout: config.write_timeout,
    };
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        connections.spawn(connection::serve(
            shared.clone(),
            graceful.watcher(),
            io,
            peer,
        ));
    }
    drop(listener);
    tracing::info!("shutting down");
    // Subscribers leave with this node: their ends go to the log while the sequencer still
    // runs, so a client that resumes after a restart does not keep them online.
    if tokio::time::timeout(config.shutdown_grace, presence.depart())
        .await
        .is_err()
    {
        tracing::warn!("the ends of this node's subscriptions were not all announced in time");
    }
    hub_shutdown.cancel();
    // The sequencer stores what publishers handed over and ends every stream; hyper
    // connections finish their requests; then the log's background work ends; all within
    // the grace period. A request still running may add a task to the tracker after it
    // first emptied (a token's use, a write lock's release): the second wait, once no
    // connection is left, sees those finish before the log closes.
    tracker.close();
    connections.close();
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        tokio::join!(graceful.shutdown(), tracker.wait(), connections.wait());
        tracker.wait().await;
        log.close().await;
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("shut down cleanly"),
        Err(_) => {
            tracing::warn!(grace = ?config.shutdown_grace, "shutdown grace period elapsed; closing anyway")
        }
    }
    Ok(())
}

/// Pending connections the kernel may queue before `accept`. Reconnect storms arrive all at
/// once; the default of 128 makes the kernel drop SYNs and clients wait a second to retry.
/// The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Reads the certificate and key again on every SIGHUP, in a task of its own. New
/// handshakes get the new certificate; open connections keep theirs. A reload that fails
/// keeps the certificate in use, and says why. Without a certificate, SIGHUP is logged and
/// otherwise ignored. The task runs on `tracker` and ends when `shutdown` is cancelled
/// (after a reload under way).
///
/// # Errors
///
/// When SIGHUP cannot be listened for.
fn reload_on_hangup(
    certificate: Option<Arc<Reloadable>>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                hangup = hangups.recv() => if hangup.is_none() { return },
            }
            let Some(certificate) = &certificate else {
                tracing::warn!("SIGHUP: nothing to reload (no --tls-cert)");
                continue;
            };
            let files = certificate.files();
            let reloading = certificate.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(())) => tracing::info!(
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    not_after = certificate.not_after().as_deref().unwrap_or("unknown"),
                    "reloaded the TLS certificate"
                ),
                Ok(Err(reason)) => tracing::error!(
                    %reason,
                    "cannot reload the TLS certificate; still serving the previous one"
                ),
                Err(error) => tracing::error!(%error, "the TLS certificate reload failed"),
            }
        }
    });
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C; returns once shutdown has begun, whatever began
/// it.
async fn signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = ctrl_c => shutdown.cancel(),
            }
            return;
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = ctrl_c => shutdown.cancel(),
        _ = term.recv() => shutdown.cancel(),
    }
}
