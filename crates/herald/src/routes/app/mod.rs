//! The app's routes: parsing, authentication and CSRF checks, then a call into the service.

use std::convert::Infallible;

use axum::{
    Json, Router,
    body::Body,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use herald_app::{
    App, ErrorKind,
    accounts::{Credentials, SESSION_COOKIE, SESSION_TTL_SECS, TOKEN_PREFIX},
    model::{
        self, Account, Broadcast, Channel, Login, NewMember, NewToken, NewUser, Note, Notify,
        PasswordChange, Todo, WorkspaceBody,
    },
    policy::{Actor, Kind},
    service::{MAX_PAGE, Resource},
    snapshot::Snapshot,
    streams::StreamRequest,
};

use crate::{
    credentials,
    error::{ApiError, ErrorCode},
    limits::ClientAddr,
    ratelimit::{LoginAttempt, LoginLimit},
    routes::{assets, poll},
    state::{Origins, ServerState},
};

mod extract;

pub(crate) use extract::JsonBody;
use extract::{ItemId, Ws, path_id};

/// Largest JSON body the app accepts.
pub(crate) const MAX_JSON_BODY: usize = 64 * 1024;

/// The app's routes, to merge into the server's router.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .merge(assets::routes())
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/me/password", post(change_password))
        .route("/api/tokens", get(tokens).post(create_token))
        .route("/api/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/api/users", get(users).post(create_user))
        .route("/api/users/{id}/deactivate", post(deactivate_user))
        .route("/api/users/{id}/activate", post(activate_user))
        .route("/api/notify", post(notify))
        .route("/api/events", get(events))
        .route("/api/workspaces", get(workspaces).post(create_workspace))
        .route(
            "/api/workspaces/{ws}",
            get(workspace)
                .patch(rename_workspace)
                .delete(delete_workspace),
        )
        .route("/api/workspaces/{ws}/events", get(workspace_events))
        .route("/api/workspaces/{ws}/broadcast", post(broadcast))
        .route("/api/workspaces/{ws}/presence", get(presence))
        .route(
            "/api/workspaces/{ws}/members",
            get(members).post(add_member),
        )
        .route(
            "/api/workspaces/{ws}/members/{user}",
            axum::routing::delete(remove_member),
        )
        .merge(collection::<Todo>())
        .merge(collection::<Channel>())
        .merge(collection::<Note>())
}

fn collection<R: Resource + Sync>() -> Router<ServerState> {
    let name = R::KIND.as_str();
    Router::new()
        .route(
            &format!("/api/workspaces/{{ws}}/{name}"),
            get(list::<R>).post(create::<R>),
        )
        .route(
            &format!("/api/workspaces/{{ws}}/{name}/{{id}}"),
            get(get_one::<R>).patch(update::<R>).delete(delete::<R>),
        )
}

/// The signed-in user, from the session cookie or a bearer API token.
///
/// A request authenticated by cookie that may change something must not come from another
/// site (CSRF): SameSite=Lax already keeps the cookie off cross-site POSTs in browsers that
/// honour it, and the `Origin` check covers the rest.
impl FromRequestParts<ServerState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ServerState) -> Result<Self, ApiError> {
        let accounts = state.app.accounts();
        let actor = match credentials::app_credentials(&parts.headers) {
            Some(Credentials::Token(token)) => {
                if !token.starts_with(TOKEN_PREFIX) {
                    return Err(ApiError::unauthorized(format!(
                        "the bearer token is not a Herald API token (they start with \
                         {TOKEN_PREFIX})"
                    )));
                }
                accounts.authenticate(Credentials::Token(token)).await?
            }
            Some(session) => {
                if !matches!(parts.method, Method::GET | Method::HEAD) {
                    state.origins.check_cookie_origin(&parts.headers)?;
                }
                accounts.authenticate(session).await?
            }
            None => {
                return Err(ApiError::unauthorized(
                    "sign in first (POST /api/login), or send an API token",
                ));
            }
        };
        charge_change(state, parts, &actor).await?;
        Ok(actor)
    }
}

/// Counts a request that may change something against its user's budget
/// (`--app-change-rate`) and, under `/api/workspaces/{ws}`, its workspace's
/// (`--workspace-change-rate`), before its body is read or anything is changed.
///
/// Reads cost nothing here, and neither does logout, which only ends the caller's own
/// session. A workspace's budget is spent only by those who may read the workspace, so an
/// outsider cannot use it up for its members; who may is read from the database once per
/// [`crate::ratelimit::READER_TTL`], user and workspace (see
/// [`crate::ratelimit::RecentReaders`]).
///
/// # Errors
///
/// 429 with `Retry-After` when a budget is spent.
async fn charge_change(state: &ServerState, parts: &Parts, actor: &Actor) -> Result<(), ApiError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
        || parts.uri.path() == "/api/logout"
    {
        return Ok(());
    }
    let rates = &state.rates;
    rates
        .user_changes
        .take(actor.user.id.as_str())
        .map_err(|limited| {
            state.metrics.rate_limited("app_change");
            ApiError::rate_limited(
                format!(
                    "too many changes by this user; at most {} per {}",
                    rates.user_changes.rate().burst,
                    humantime::format_duration(rates.user_changes.rate().period)
                ),
                limited,
            )
        })?;
    let ws = parts
        .uri
        .path()
        .strip_prefix("/api/workspaces/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|ws| model::id("workspace id", ws).ok());
    let Some(ws) = ws else {
        return Ok(());
    };
    if rates.workspace_changes.rate().is_off() {
        return Ok(());
    }
    let user = actor.user.id.as_str();
    if !rates.workspace_readers.contains(user, ws.as_str()) {
        let stamp = rates.workspace_readers.stamp();
        match state.app.read_access(actor, &ws).await {
            Ok(_) => rates.workspace_readers.insert(user, ws.as_str(), stamp),
            // The handler answers the 404 (or 400) itself.
            Err(error) if error.kind == ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
    rates
        .workspace_changes
        .take(ws.as_str())
        .map_err(|limited| {
            state.metrics.rate_limited("workspace_change");
            ApiError::rate_limited(
                format!(
                    "too many changes in this workspace; at most {} per {}",
                    rates.workspace_changes.rate().burst,
                    humantime::format_duration(rates.workspace_changes.rate().period)
                ),
                limited,
            )
        })
}

fn created(value: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

/// An answer of JSON already serialized: a written resource, as its event carries it.
fn json_answer(status: StatusCode, json: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The response header that carries a read's log position ([`Snapshot::position`]): a
/// client subscribes to `/api/events?after=<position>` to get every change its data lacks.
pub(crate) const POSITION_HEADER: &str = "herald-position";

/// Longest `?after=` accepted: `u64::MAX` has 20 digits.
const MAX_POSITION_DIGITS: usize = 20;

/// A read's data as JSON, with its position in [`POSITION_HEADER`].
fn positioned(snapshot: Snapshot<impl serde::Serialize>) -> Response {
    let mut response = Json(snapshot.data).into_response();
    response
        .headers_mut()
        .insert(POSITION_HEADER, HeaderValue::from(snapshot.position));
    response
}

/// A list read as `{"items": […]}`, with its position.
fn items<T: serde::Serialize>(snapshot: Snapshot<Vec<T>>) -> Response {
    positioned(snapshot.map(|items| json!({ "items": items })))
}

/// The `after` of a stream's URL: a log position as [`POSITION_HEADER`] gives it, in
/// decimal digits.
fn parse_position(value: &str) -> Result<u64, ApiError> {
    let refuse = |why: &str| {
        ApiError::bad_request(format!(
            "after must be a log position, as the Herald-Position header of a read gives it              (a decimal number); {why}"
        ))
    };
    if value.len() > MAX_POSITION_DIGITS {
        return Err(refuse(&format!(
            "this one is longer than {MAX_POSITION_DIGITS} characters"
        )));
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse("this one is not a number"));
    }
    value
        .parse()
        .map_err(|_| refuse("this one is larger than any position"))
}

/// `POST /api/login`. Attempts are limited per client address and failures per account
/// (see `ratelimit::LoginLimits`) before the password is hashed, so a refused attempt costs
/// no argon2.
async fn login(
    State(state): State<ServerState>,
    axum::extract::ConnectInfo(ClientAddr(peer)): axum::extract::ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Login>,
) -> Result<Response, ApiError> {
    state.origins.check_cookie_origin(&headers)?;
    let account = model::normalize_email(&body.email);
    let attempt = admit_login(&state, peer, &account)?;
    let outcome = state.app.accounts().login(&body.email, body.password).await;
    match &outcome {
        // A wrong email or password: the attempt counts as a failure.
        Err(error) if error.kind == ErrorKind::Unauthenticated => attempt.failed(),
        _ => attempt.succeeded(),
    }
    let (user, secret) = outcome?;
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_SECS}{}",
        state.origins.secure()
    );
    let mut response = Json(user).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(internal)?,
    );
    Ok(response)
}

/// Takes the tokens of one attempt at `account`'s password from `peer` (see
/// `ratelimit::LoginLimits`), before any hashing: a refused attempt costs no argon2.
///
/// # Errors
///
/// 429 with `Retry-After` when a login limit is reached.
fn admit_login<'a>(
    state: &'a ServerState,
    peer: std::net::SocketAddr,
    account: &str,
) -> Result<LoginAttempt<'a>, ApiError> {
    state
        .rates
        .login
        .admit(peer.ip(), account)
        .map_err(|(limit, limited)| {
            let (name, message) = match limit {
                LoginLimit::Ip => ("login_ip", "too many login attempts from this address"),
                LoginLimit::AccountIp => (
                    "login_failure",
                    "too many failed logins to this account from this address",
                ),
                LoginLimit::Account => ("login_account", "too many failed logins to this account"),
            };
            state.metrics.rate_limited(name);
            ApiError::rate_limited(
                format!("{message}; retry in {} s", limited.retry_after_secs()),
                limited,
            )
        })
}

async fn logout(
    State(app): State<App>,
    State(origins): State<Origins>,
    actor: Actor,
) -> Result<Response, ApiError> {
    app.logout(&actor).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        origins.secure()
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(internal)?,
    );
    Ok(response)
}

async fn me(State(app): State<App>, actor: Actor) -> Result<Response, ApiError> {
    Ok(positioned(app.me(&actor).await?))
}

async fn users(State(app): State<App>, actor: Actor) -> Result<impl IntoResponse, ApiError> {
    Ok(items(app.users(&actor).await?))
}

/// The `{id}` of a user's path.
struct UserId(String);

impl<S: Send + Sync> FromRequestParts<S> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_id(parts, state, "id", "user id").await.map(Self)
    }
}

async fn deactivate_user(
    State(app): State<App>,
    actor: Actor,
    UserId(id): UserId,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(app.set_active(&actor, &id, false).await?))
}

async fn activate_user(
    State(app): State<App>,
    actor: Actor,
    UserId(id): UserId,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(app.set_active(&actor, &id, true).await?))
}

/// A password change checks the current password like a login does, under the same limits:
/// a stolen session cannot guess it faster than a login could.
async fn change_password(
    State(state): State<ServerState>,
    axum::extract::ConnectInfo(ClientAddr(peer)): axum::extract::ConnectInfo<ClientAddr>,
    actor: Actor,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let attempt = admit_login(&state, peer, &actor.user.email)?;
    let outcome = state
        .app
        .change_password(&actor, body.current, body.new)
        .await;
    match &outcome {
        // The current password was wrong.
        Err(error) if error.kind == ErrorKind::Forbidden => attempt.failed(),
        _ => attempt.succeeded(),
    }
    outcome?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensQuery {
    /// Whose tokens (admins only); the caller's by default.
    user: Option<String>,
}

async fn tokens(
    State(app): State<App>,
    actor: Actor,
    query: Result<Query<TokensQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(items(app.tokens(&actor, query.user.as_deref()).await?))
}

async fn create_token(
    State(app): State<App>,
    actor: Actor,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    Ok(created(app.create_token(&actor, body).await?))
}

async fn revoke_token(
    State(app): State<App>,
    actor: Actor,
    ItemId(id): ItemId,
) -> Result<StatusCode, ApiError> {
    app.revoke_token(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_user(
    State(app): State<App>,
    actor: Actor,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    Ok(created(app.create_user(&actor, body).await?))
}

async fn workspaces(State(app): State<App>, actor: Actor) -> Result<impl IntoResponse, ApiError> {
    Ok(items(app.workspaces(&actor).await?))
}

async fn create_workspace(
    State(app): State<App>,
    actor: Actor,
    JsonBody(body): JsonBody<WorkspaceBody>,
) -> Result<Response, ApiError> {
    Ok(created(app.create_workspace(&actor, body.name).await?))
}

async fn workspace(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<impl IntoResponse, ApiError> {
    Ok(positioned(app.workspace(&actor, &ws).await?))
}

/// Who is online in the workspace: `{"items": [{userId, name, subscribers}]}`, one item
/// per user, with its position.
async fn presence(
    State(state): State<ServerState>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<Response, ApiError> {
    let Some(registry) = &state.presence else {
        return Err(ApiError::unavailable("presence is not running"));
    };
    Ok(positioned(state.app.presence(&actor, &ws, registry).await?))
}

async fn rename_workspace(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<WorkspaceBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(app.rename_workspace(&actor, &ws, body.name).await?))
}

async fn delete_workspace(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<StatusCode, ApiError> {
    app.delete_workspace(&actor, &ws).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<impl IntoResponse, ApiError> {
    Ok(items(app.members(&actor, &ws).await?))
}

async fn add_member(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<NewMember>,
) -> Result<Response, ApiError> {
    Ok(created(app.add_member(&actor, &ws, body).await?))
}

async fn remove_member(
    State(app): State<App>,
    actor: Actor,
    Path((ws, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = model::id("workspace id", &ws)?;
    app.remove_member(&actor, &ws, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u32>,
    after: Option<String>,
}

async fn list<R: Resource>(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1–{MAX_PAGE}")));
    }
    let after = query
        .after
        .as_deref()
        .map(|a| model::id("after", a))
        .transpose()?;
    Ok(positioned(
        app.list::<R>(&actor, &ws, after.as_deref(), limit).await?,
    ))
}

async fn get_one<R: Resource>(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    ItemId(id): ItemId,
) -> Result<Response, ApiError> {
    Ok(positioned(app.get::<R>(&actor, &ws, &id).await?))
}

async fn create<R: Resource>(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<R::Create>,
) -> Result<Response, ApiError> {
    let written = app.create_written::<R>(&actor, &ws, body).await?;
    Ok(json_answer(StatusCode::CREATED, written.json))
}

async fn update<R: Resource>(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    ItemId(id): ItemId,
    JsonBody(patch): JsonBody<R::Patch>,
) -> Result<Response, ApiError> {
    let written = app.update_written::<R>(&actor, &ws, &id, patch).await?;
    Ok(json_answer(StatusCode::OK, written.json))
}

async fn delete<R: Resource>(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    ItemId(id): ItemId,
) -> Result<StatusCode, ApiError> {
    app.delete::<R>(&actor, &ws, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn notify(
    State(app): State<App>,
    actor: Actor,
    JsonBody(body): JsonBody<Notify>,
) -> Result<Response, ApiError> {
    let id = app.notify(&actor, &body.user_id, body.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

async fn broadcast(
    State(app): State<App>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<Broadcast>,
) -> Result<Response, ApiError> {
    let id = app.broadcast(&actor, &ws, body.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    workspace: Option<String>,
    types: Option<String>,
    last_event_id: Option<String>,
    /// A read's position ([`POSITION_HEADER`]): start right after it. `Last-Event-ID` (the
    /// header or `lastEventId`) wins when both are given.
    after: Option<String>,
    /// `true`: show the user online in the stream's workspaces, and follow who else is.
    #[serde(default)]
    presence: bool,
}

async fn events(
    State(state): State<ServerState>,
    axum::extract::ConnectInfo(ClientAddr(peer)): axum::extract::ConnectInfo<ClientAddr>,
    actor: Actor,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let workspace = query
        .workspace
        .as_deref()
        .map(|ws| model::id("workspace", ws))
        .transpose()?;
    stream(&state, peer.ip(), &actor, &headers, query, workspace).await
}

async fn workspace_events(
    State(state): State<ServerState>,
    axum::extract::ConnectInfo(ClientAddr(peer)): axum::extract::ConnectInfo<ClientAddr>,
    actor: Actor,
    Ws(ws): Ws,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    stream(&state, peer.ip(), &actor, &headers, query, Some(ws)).await
}

async fn stream(
    state: &ServerState,
    peer: std::net::IpAddr,
    actor: &Actor,
    headers: &HeaderMap,
    query: StreamQuery,
    workspace: Option<String>,
) -> Result<Response, ApiError> {
    let types = query.types.as_deref().map(Kind::parse_list).transpose()?;
    let last_event_id = state.streams.last_event_id(headers, query.last_event_id)?;
    let after = query.after.as_deref().map(parse_position).transpose()?;
    let poll = poll::wants_poll(headers);
    let permit = state.streams.admit(peer)?;
    let opened = state
        .app
        .open_stream(
            actor,
            StreamRequest {
                workspace,
                types,
                last_event_id,
                after,
                track_passed: poll,
                presence: query.presence && !poll,
            },
        )
        .await?;
    // A stream shows its user as online in its workspaces while it lasts; a long-poll is
    // no presence. Each announcement costs the log two events: the user pays for them.
    let presence = match &state.presence {
        Some(registry) if !poll && !opened.present_in.is_empty() => {
            let charge = |count| {
                let limited = "this user's streams announced their presence too often lately";
                (state.rates.presence.take_n(actor.user.id.as_str(), count)).map_err(|limit| {
                    state.metrics.rate_limited("presence");
                    ApiError::rate_limited(limited, limit)
                })
            };
            Some(herald_app::presence::join(registry, actor, &opened.present_in, charge).await?)
        }
        _ => None,
    };
    let frames = opened
        .frames
        .map(move |frames| {
            // The permit and the presence live as long as the stream.
            let _ = (&permit, &presence);
            frames
        })
        .boxed();
    if poll {
        let cursor = poll::Cursor {
            resumed: opened.resumed,
            resume_id: opened.resume_id,
            passed: opened.passed,
        };
        return Ok(poll::answer(
            frames,
            cursor,
            state.streams.poll_timeout,
            state.bodies.max_body,
        )
        .await);
    }
    let frames = frames.map(Ok::<_, Infallible>);
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache, no-transform")
        .header("x-accel-buffering", "no")
        // The same URL answers a long-poll to `Accept: application/json`.
        .header(header::VARY, "accept");
    // The newest event when the stream began, as a Mercure stream says it: where a client
    // that saw no event yet resumes from.
    if let Some(head) = opened
        .head_id
        .as_deref()
        .and_then(|id| axum::http::HeaderValue::from_str(id).ok())
    {
        response = response.header("last-event-id", head);
    }
    response.body(Body::from_stream(frames)).map_err(internal)
}

/// A failure the app did not see: logged in full, shown to the client as a plain 500.
fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, error.to_string())
}
