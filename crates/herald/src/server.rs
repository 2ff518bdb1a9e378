//! The HTTP server: the router ([`app`]), start-up ([`serve`]) and graceful shutdown.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use axum::serve::Listener as _;
use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use herald_hub::{EventLog, Hub, RedisLog, SqliteLog};
use hyper_util::server::graceful::GracefulShutdown;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::{
    app::{self, App},
    config::Config,
    connection,
    error::{ApiError, ErrorCode},
    limits::CountingListener,
    mercure, metrics,
    state::AppState,
};

/// The file in the data directory that holds the event log.
pub const LOG_FILE: &str = "herald.db";

/// The file in the data directory that holds the generated JWT key.
pub const KEY_FILE: &str = "jwt.key";

/// The router, without a socket, so tests can call it directly.
pub fn app(state: AppState) -> Router {
    // No CORS headers at all unless origins are configured: secure by default.
    let cors = (!state.cors_origins.is_empty()).then(|| cors_layer(&state.cors_origins));
    Router::new()
        .merge(crate::app::routes())
        .route(mercure::PATH, get(mercure::subscribe).post(mercure::publish))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::handler))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
        })
        .with_state(state)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::LINK,
            HeaderValue::from_static(mercure::LINK),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The path only: query strings may carry tokens.
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .layer(tower::util::option_layer(cors))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(error) = state.hub.check_log().await {
        return ApiError::unavailable(format!("the event log is unavailable: {error}"))
            .into_response();
    }
    if let Err(error) = state.app.check_db().await {
        return ApiError::unavailable(format!("the app's database is unavailable: {error}"))
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::LINK, HeaderName::from_static("last-event-id")])
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
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
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
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let log: Arc<dyn EventLog> = match &config.redis_url {
        Some(url) => {
            let log = RedisLog::connect(url, &config.redis_prefix)
                .await
                .context("cannot reach the cluster's Redis (--redis-url)")?;
            tracing::info!(prefix = %config.redis_prefix, "clustered: the event log is shared in Redis");
            Arc::new(log)
        }
        None => Arc::new(
            SqliteLog::open(&config.data_dir.join(LOG_FILE), config.durability)
                .await
                .context("cannot open the event log")?,
        ),
    };
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let hub = Hub::start(config.hub.clone(), log, &tracker, shutdown.clone())
        .await
        .context("cannot start the hub")?;
    let pool = app::open_db(config.database_url.as_deref(), &config.data_dir)
        .await
        .context("cannot open the app database")?;
    let database = match &config.database_url {
        Some(url) => app::describe_url(url),
        None => format!("SQLite {}", config.data_dir.join(app::APP_FILE).display()),
    };
    tracing::info!(%database, "opened the app database");
    let first_start = app::bootstrap(
        &pool,
        config.admin_email.clone(),
        config.admin_password.clone(),
    )
    .await?;
    let the_app = App::start(pool, hub.clone(), shutdown.clone())
        .await
        .context("cannot start the app")?;
    let state = AppState::new(hub, the_app, &config);
    let listener =
        listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let mut listener = CountingListener::new(listener, state.metrics.connections.clone());
    tracing::info!(%address, max_streams = config.max_connections, "herald is listening");
    println!("Herald hub at http://{address}{}", mercure::PATH);
    println!("Herald app at http://{address}/");
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

    tokio::spawn(signal(shutdown.clone()));
    let shared = connection::Shared {
        router: app(state.clone()),
        state,
        shutdown: shutdown.clone(),
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
    // The sequencer stores what publishers handed over and ends every stream; hyper
    // connections finish their requests; all within the grace period.
    tracker.close();
    connections.close();
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        tokio::join!(graceful.shutdown(), tracker.wait(), connections.wait());
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

async fn signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            let _ = ctrl_c.await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
}
