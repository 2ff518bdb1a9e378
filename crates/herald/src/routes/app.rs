//! The app's routes: parsing, authentication and CSRF checks, then a call into the service.

use std::{collections::HashMap, convert::Infallible};

use axum::{
    Json, Router,
    body::Body,
    extract::{FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt as _;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use herald_app::{
    ErrorKind,
    accounts::{self, Credentials, SESSION_COOKIE, SESSION_TTL_SECS, TOKEN_PREFIX},
    model::{
        self, Account, Broadcast, Channel, Login, NewMember, NewToken, NewUser, Note, Notify,
        PasswordChange, Todo, WorkspaceBody,
    },
    policy::{Actor, Kind},
    service::{MAX_PAGE, Resource},
    streams::StreamRequest,
};

use crate::{
    error::{ApiError, ErrorCode},
    limits::ClientAddr,
    ratelimit::{LoginAttempt, LoginLimit},
    routes::assets,
    state::AppState,
};

/// Largest JSON body the app accepts.
pub(crate) const MAX_JSON_BODY: usize = 64 * 1024;

/// The app's routes, to merge into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/herald.js", get(assets::client))
        .route("/assets/{file}", get(assets::file))
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

fn collection<R: Resource + Sync>() -> Router<AppState> {
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
impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(&parts.headers) {
            if !token.starts_with(TOKEN_PREFIX) {
                return Err(ApiError::unauthorized(format!(
                    "the bearer token is not a Herald API token (they start with {TOKEN_PREFIX})"
                )));
            }
            let actor = state
                .app
                .accounts()
                .authenticate(Credentials::Token(token))
                .await?;
            charge_change(state, parts, &actor).await?;
            return Ok(actor);
        }
        let Some(session) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthorized(
                "sign in first (POST /api/login), or send an API token",
            ));
        };
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            state.check_cookie_origin(&parts.headers)?;
        }
        let actor = state
            .app
            .accounts()
            .authenticate(Credentials::Session(session))
            .await?;
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
/// outsider cannot use it up for its members.
///
/// # Errors
///
/// 429 with `Retry-After` when a budget is spent.
async fn charge_change(state: &AppState, parts: &Parts, actor: &Actor) -> Result<(), ApiError> {
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
    match state.app.read_access(actor, &ws).await {
        Ok(_) => {}
        // The handler answers the 404 (or 400) itself.
        Err(error) if error.kind == ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A JSON body: `application/json`, at most [`MAX_JSON_BODY`] bytes, no unknown fields,
/// arriving within `--body-timeout` (408 otherwise).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = state
            .read_body_within(axum::body::to_bytes(request.into_body(), MAX_JSON_BODY))
            .await?
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body is larger than {MAX_JSON_BODY} bytes"),
                )
            })?;
        // serde would read a struct from a JSON array too; every body here is an object.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::bad_request("the JSON body must be an object"));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
    }
}

/// The path parameter `key`, which must be an id (a UUID): 400 otherwise, naming `what`.
async fn path_id(
    parts: &mut Parts,
    state: &AppState,
    key: &str,
    what: &str,
) -> Result<String, ApiError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let value = params.get(key).map_or("", String::as_str);
    Ok(model::id(what, value)?)
}

/// The `{ws}` of a workspace path.
struct Ws(String);

impl FromRequestParts<AppState> for Ws {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        path_id(parts, state, "ws", "workspace id").await.map(Self)
    }
}

/// The `{id}` of a resource path.
struct ItemId(String);

impl FromRequestParts<AppState> for ItemId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        path_id(parts, state, "id", "id").await.map(Self)
    }
}

fn created(value: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn items<T: serde::Serialize>(items: Vec<T>) -> Json<serde_json::Value> {
    Json(json!({ "items": items }))
}

/// `POST /api/login`. Attempts are limited per client address and failures per account
/// (see `ratelimit::LoginLimits`) before the password is hashed, so a refused attempt costs
/// no argon2.
async fn login(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(ClientAddr(peer)): axum::extract::ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Login>,
) -> Result<Response, ApiError> {
    state.check_cookie_origin(&headers)?;
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
        secure(&state)
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
    state: &'a AppState,
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

async fn logout(State(state): State<AppState>, actor: Actor) -> Result<Response, ApiError> {
    state.app.logout(&actor).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(&state)
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(internal)?,
    );
    Ok(response)
}

/// The session cookie's `Secure` attribute, over HTTPS: a browser then never sends the
/// cookie over plain HTTP, where anyone on the path could read it.
fn secure(state: &AppState) -> &'static str {
    if state.https { "; Secure" } else { "" }
}

async fn me(actor: Actor) -> Json<model::User> {
    Json(actor.user)
}

async fn users(State(state): State<AppState>, _: Actor) -> Result<impl IntoResponse, ApiError> {
    Ok(items(state.app.accounts().users().await?))
}

/// The `{id}` of a user's path.
struct UserId(String);

impl FromRequestParts<AppState> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        path_id(parts, state, "id", "user id").await.map(Self)
    }
}

async fn deactivate_user(
    State(state): State<AppState>,
    actor: Actor,
    UserId(id): UserId,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(state.app.set_active(&actor, &id, false).await?))
}

async fn activate_user(
    State(state): State<AppState>,
    actor: Actor,
    UserId(id): UserId,
) -> Result<Json<Account>, ApiError> {
    Ok(Json(state.app.set_active(&actor, &id, true).await?))
}

/// A password change checks the current password like a login does, under the same limits:
/// a stolen session cannot guess it faster than a login could.
async fn change_password(
    State(state): State<AppState>,
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
    State(state): State<AppState>,
    actor: Actor,
    query: Result<Query<TokensQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let user = match query.user {
        Some(user) => {
            let user = model::id("user", &user)?;
            if user != actor.user.id && !actor.is_admin() {
                return Err(ApiError::forbidden("only admins may list others' tokens"));
            }
            user
        }
        None => actor.user.id.clone(),
    };
    Ok(items(state.app.accounts().list_tokens(&user).await?))
}

async fn create_token(
    State(state): State<AppState>,
    actor: Actor,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    // A token that could make tokens would outlive its own revocation or expiry.
    if actor.session.is_none() {
        return Err(ApiError::forbidden(
            "API tokens are made from a signed-in session, or with `herald user token`",
        ));
    }
    if body.notify && !actor.is_admin() {
        return Err(ApiError::forbidden(
            "only admins may make tokens that notify",
        ));
    }
    let ttl = body.ttl.as_deref().map(accounts::parse_ttl).transpose()?;
    let spec = accounts::TokenSpec {
        name: body.name,
        can_notify: body.notify,
        ttl,
    };
    Ok(created(
        state.app.accounts().add_token(&actor.user.id, spec).await?,
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    actor: Actor,
    ItemId(id): ItemId,
) -> Result<StatusCode, ApiError> {
    state.app.revoke_token(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_user(
    State(state): State<AppState>,
    actor: Actor,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    if !actor.is_admin() {
        return Err(ApiError::forbidden("only admins may create users"));
    }
    Ok(created(state.app.accounts().add_user(body).await?))
}

async fn workspaces(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<impl IntoResponse, ApiError> {
    Ok(items(state.app.workspaces(&actor).await?))
}

async fn create_workspace(
    State(state): State<AppState>,
    actor: Actor,
    JsonBody(body): JsonBody<WorkspaceBody>,
) -> Result<Response, ApiError> {
    Ok(created(
        state.app.create_workspace(&actor, body.name).await?,
    ))
}

async fn workspace(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.workspace(&actor, &ws).await?))
}

async fn rename_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<WorkspaceBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        state.app.rename_workspace(&actor, &ws, body.name).await?,
    ))
}

async fn delete_workspace(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<StatusCode, ApiError> {
    state.app.delete_workspace(&actor, &ws).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
) -> Result<impl IntoResponse, ApiError> {
    Ok(items(state.app.members(&actor, &ws).await?))
}

async fn add_member(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<NewMember>,
) -> Result<Response, ApiError> {
    Ok(created(state.app.add_member(&actor, &ws, body).await?))
}

async fn remove_member(
    State(state): State<AppState>,
    actor: Actor,
    Path((ws, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = model::id("workspace id", &ws)?;
    state.app.remove_member(&actor, &ws, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<u32>,
    after: Option<String>,
}

async fn list<R: Resource>(
    State(state): State<AppState>,
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
    Ok(Json(
        state
            .app
            .list::<R>(&actor, &ws, after.as_deref(), limit)
            .await?,
    ))
}

async fn get_one<R: Resource>(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    ItemId(id): ItemId,
) -> Result<Json<R>, ApiError> {
    Ok(Json(state.app.get::<R>(&actor, &ws, &id).await?))
}

async fn create<R: Resource>(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<R::Create>,
) -> Result<Response, ApiError> {
    Ok(created(state.app.create::<R>(&actor, &ws, body).await?))
}

async fn update<R: Resource>(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    ItemId(id): ItemId,
    JsonBody(patch): JsonBody<R::Patch>,
) -> Result<Json<R>, ApiError> {
    Ok(Json(state.app.update::<R>(&actor, &ws, &id, patch).await?))
}

async fn delete<R: Resource>(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    ItemId(id): ItemId,
) -> Result<StatusCode, ApiError> {
    state.app.delete::<R>(&actor, &ws, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn notify(
    State(state): State<AppState>,
    actor: Actor,
    JsonBody(body): JsonBody<Notify>,
) -> Result<Response, ApiError> {
    let id = state.app.notify(&actor, &body.user_id, body.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

async fn broadcast(
    State(state): State<AppState>,
    actor: Actor,
    Ws(ws): Ws,
    JsonBody(body): JsonBody<Broadcast>,
) -> Result<Response, ApiError> {
    let id = state.app.broadcast(&actor, &ws, body.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    workspace: Option<String>,
    types: Option<String>,
    last_event_id: Option<String>,
}

async fn events(
    State(state): State<AppState>,
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
    State(state): State<AppState>,
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
    state: &AppState,
    peer: std::net::IpAddr,
    actor: &Actor,
    headers: &HeaderMap,
    query: StreamQuery,
    workspace: Option<String>,
) -> Result<Response, ApiError> {
    let types = query.types.as_deref().map(Kind::parse_list).transpose()?;
    let last_event_id = state.last_event_id(headers, query.last_event_id)?;
    let resumed = last_event_id.is_some();
    let poll = crate::poll::wants_poll(headers);
    let permit = state.admit_stream(peer)?;
    let opened = state
        .app
        .open_stream(
            actor,
            StreamRequest {
                workspace,
                types,
                last_event_id,
                track_passed: poll,
            },
        )
        .await?;
    let frames = opened
        .frames
        .map(move |frames| {
            // The permit lives as long as the stream.
            let _ = &permit;
            frames
        })
        .boxed();
    if poll {
        let cursor = crate::poll::Cursor {
            resumed,
            resume_id: opened.resume_id,
            passed: opened.passed,
        };
        return Ok(crate::poll::answer(frames, cursor, state.poll_timeout, state.max_body).await);
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
