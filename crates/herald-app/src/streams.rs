//! The app's event streams.
//!
//! A stream follows a fixed set of hub topics, computed by the policy when it opens. When
//! that set stops being right — the user was removed from a workspace, added to one, logged
//! out, deactivated, changed their password, revoked the token the stream was opened with —
//! the change that made it wrong carries a closing update (`Update::closes`) for a topic the
//! stream follows: its own user's, its session's, its token's, or the admins'. Every node ends
//! such streams right after fanning that update out, so a removed user sees the
//! `members:removed` event that explains why, and nothing after it, wherever their stream
//! is. The browser reconnects with its `Last-Event-ID`, and the new stream follows the new
//! set, replaying what it missed under today's rights. A stream opened with a session or a
//! token that expires ends when it does.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use bytes::Bytes;
use futures::{FutureExt as _, StreamExt, stream::BoxStream};
use herald_hub::{Matcher, Record, ReplayFilter, SubscribeError, SubscribeRequest};

use crate::{
    App,
    error::{AppError, internal},
    policy::{self, Actor, Kind},
};

/// Most workspaces one stream follows. An admin of a larger installation filters with
/// `?workspace=`; each workspace costs three exact topics.
pub const MAX_STREAM_WORKSPACES: usize = 2_000;

/// The replay floor of a workspace whose joining event is not in the log yet: beyond every
/// position, so that none of the workspace's history is replayed.
const NOT_LOGGED_YET: u64 = u64::MAX;

/// What a stream asks for.
#[derive(Debug, Default)]
pub struct StreamRequest {
    /// Only this workspace (`?workspace=`, or the path of a workspace's stream).
    pub workspace: Option<String>,
    /// Only these kinds (`?types=`).
    pub types: Option<BTreeSet<Kind>>,
    /// Resume after this event id. It wins over `after`: a browser's `EventSource` sends
    /// it on every reconnection, while the URL keeps the `after` it first opened with.
    pub last_event_id: Option<String>,
    /// Start after this log position: the `position` of a [`Snapshot`](crate::snapshot::Snapshot)
    /// the client loaded, so that it gets every change its data does not hold.
    pub after: Option<u64>,
    /// Whether to track the newest record the replay passes (a long-poll's cursor).
    pub track_passed: bool,
    /// Whether the stream shows its user online in its workspaces and follows who else is
    /// (`?presence=true`, without `types`).
    pub presence: bool,
}

/// An open stream of the app.
pub struct AppStream {
    /// The SSE bytes.
    pub frames: BoxStream<'static, Bytes>,
    /// Where a client resumes if no event with an id reaches it: the id it resumed from,
    /// else the log's newest when it subscribed.
    pub resume_id: Option<String>,
    /// The newest event in the log when the stream subscribed.
    pub head_id: Option<String>,
    /// Whether the stream resumes from an id or a position (and so replays).
    pub resumed: bool,
    /// The newest record the replay passed, when asked for.
    pub passed: Option<herald_hub::Passed>,
    /// Where the stream shows its user as online while it is open, when it asked for
    /// presence: the workspaces it follows that its user is a member of (an admin reads
    /// the others' presence without showing in it).
    pub present_in: Vec<String>,
}

impl App {
    /// Opens a stream of what `actor` may see: the `connected` event, then what it missed
    /// since `last_event_id` or, without one, since the position `after` (under today's
    /// rights), then live events.
    ///
    /// # Errors
    ///
    /// `NotFound` when the workspace asked for is not readable; `Invalid` for a bad or
    /// over-long id, a position beyond the log's head, or too many workspaces;
    /// `Unavailable` when history cannot be read.
    pub async fn open_stream(
        &self,
        actor: &Actor,
        request: StreamRequest,
    ) -> Result<AppStream, AppError> {
        let (workspaces, memberships) = self.readable(actor, request.workspace.as_deref()).await?;
        if workspaces.len() > MAX_STREAM_WORKSPACES {
            return Err(AppError::invalid(format!(
                "this stream would follow {} workspaces (the limit is \
                 {MAX_STREAM_WORKSPACES}); choose one with ?workspace=",
                workspaces.len()
            )));
        }
        let mut topics = policy::stream_topics(
            actor,
            workspaces.iter().map(String::as_str),
            request.types.as_ref(),
        );
        let follows_presence = request.presence && request.types.is_none();
        if follows_presence {
            topics.extend(workspaces.iter().map(|ws| policy::presence_topic(ws)));
        }
        let present_in: Vec<String> = match follows_presence {
            true => memberships.into_iter().collect(),
            false => Vec::new(),
        };
        let resume_from = request.last_event_id.clone();
        let after = request.after.filter(|_| resume_from.is_none());
        let resumed = resume_from.is_some() || after.is_some();
        let replay_filter = match resumed {
            true => self.replay_filter(actor, &workspaces, &topics).await?,
            false => None,
        };
        let mut subscription = self
            .hub()
            .subscribe(SubscribeRequest {
                claims: Some(topics.iter().cloned().map(Matcher::exact).collect()),
                max_selectors: Some(topics.len()),
                topics: topics.into_iter().map(Matcher::exact).collect(),
                last_event_id: request.last_event_id,
                after,
                replay_filter,
                reserved: true,
            })
            .await
            .map_err(|error| match error {
                SubscribeError::Unavailable(error) => AppError::unavailable(error.to_string()),
                full @ SubscribeError::SelectorsFull => AppError::unavailable(full.to_string()),
                future @ SubscribeError::FuturePosition { .. } => {
                    AppError::invalid_field("after", future.to_string())
                }
                invalid => AppError::invalid(invalid.to_string()),
            })?;
        // A change of rights between the check above and the registration has had its
        // closing update fanned out before this stream could hear it. Now that it is
        // registered, every later change reaches it; check once more for one in between,
        // and if there was, end at once: the client reconnects under the new rights.
        let unchanged = self.credentials_alive(actor).await?
            && self
                .readable(actor, request.workspace.as_deref())
                .await
                .is_ok_and(|(now, _)| now == workspaces);
        if !unchanged {
            subscription.closer().close();
        }

        let head_id = subscription.head_id().map(str::to_owned);
        // From a position, the head's id is where to resume only if the position is the
        // head; otherwise the replay moves the cursor (`passed`), or nothing does.
        let from_head = after.is_none_or(|after| after == subscription.head());
        let resume_id = resume_from.or_else(|| head_id.clone().filter(|_| from_head));
        let passed = request.track_passed.then(|| subscription.passed());
        let connected = serde_json::json!({
            "userId": actor.user.id,
            "workspaces": workspaces,
        });
        let connected = herald_sse::Event::new(connected.to_string())
            .with_event("connected")
            .encode();
        let expiry = match actor.expires_at {
            Some(at) => {
                let left = u64::try_from(at - super::unix_ms() / 1000).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_secs(left)).boxed()
            }
            None => futures::future::pending().boxed(),
        };
        Ok(AppStream {
            frames: futures::stream::once(async move { connected })
                .chain(subscription)
                .take_until(expiry)
                .boxed(),
            resume_id,
            head_id,
            resumed,
            passed,
            present_in,
        })
    }

    /// The workspaces a stream of `actor` follows: `only` (`NotFound` unless readable), or every
    /// one it may read.
    /// With them, those `actor` is a member of.
    async fn readable(
        &self,
        actor: &Actor,
        only: Option<&str>,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>), AppError> {
        let views = match only {
            Some(ws) => vec![self.workspace(actor, ws).await?.data],
            None => self.workspaces(actor).await?.data,
        };
        let members = views
            .iter()
            .filter(|view| view.role.is_some())
            .map(|view| view.workspace.id.clone())
            .collect();
        let readable = views.into_iter().map(|view| view.workspace.id).collect();
        Ok((readable, members))
    }

    /// What a resume of `actor`'s stream may replay: a record of a workspace only from
    /// the position where the actor's access to it began (the event that made it a member),
    /// so a new member is not replayed what happened before they could see it. Admins see
    /// everything: no filter.
    ///
    /// A joining event the log does not hold is one of two things. Still in the outbox, it
    /// is not logged yet (its change is being published): its position is unknown, so
    /// nothing of that workspace is replayed — the member gets its events live. Gone from
    /// the outbox too, it was logged and retention removed it since: it bounds nothing,
    /// since everything before it went too. (The outbox row goes only once the log holds
    /// the event, and the log is asked again after the outbox, so an event logged in
    /// between is found.)
    async fn replay_filter(
        &self,
        actor: &Actor,
        workspaces: &BTreeSet<String>,
        topics: &[String],
    ) -> Result<Option<ReplayFilter>, AppError> {
        if actor.is_admin() {
            return Ok(None);
        }
        let joined: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT workspace_id, joined_event FROM members WHERE user_id = $1")
                .bind(&actor.user.id)
                .fetch_all(self.pool())
                .await
                .map_err(internal)?;
        let mut floors = HashMap::new();
        for (ws, event) in joined {
            let Some(event) = event.filter(|_| workspaces.contains(&ws)) else {
                continue;
            };
            let position = match self.position(&event).await? {
                Some(position) => Some(position),
                None if self.in_outbox(&event).await? => Some(NOT_LOGGED_YET),
                None => self.position(&event).await?,
            };
            if let Some(position) = position {
                floors.insert(ws, position);
            }
        }
        if floors.is_empty() {
            return Ok(None);
        }
        let follows: HashSet<String> = topics.iter().cloned().collect();
        Ok(Some(ReplayFilter(Arc::new(move |record: &Record| {
            // Replayed when a topic it reached the stream through was visible then.
            record.topics.iter().any(|topic| {
                follows.contains(&**topic)
                    && policy::workspace_of(topic)
                        .and_then(|ws| floors.get(ws))
                        .is_none_or(|&floor| record.seq >= floor)
            })
        }))))
    }

    /// The log position of event `id`, if the log holds it.
    async fn position(&self, id: &str) -> Result<Option<u64>, AppError> {
        self.hub()
            .position(id)
            .await
            .map_err(|e| AppError::unavailable(e.to_string()))
    }

    /// Whether event `id` waits in the outbox: its change committed, and the log does not
    /// hold it yet (or has just taken it).
    async fn in_outbox(&self, id: &str) -> Result<bool, AppError> {
        let found: Option<String> = sqlx::query_scalar("SELECT uid FROM outbox WHERE uid = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(internal)?;
        Ok(found.is_some())
    }

    /// Whether the session or token the actor came with still exists, and its user is
    /// still active.
    pub(crate) async fn credentials_alive(&self, actor: &Actor) -> Result<bool, AppError> {
        let found: Option<String> = match (&actor.session, &actor.token) {
            (Some(session), _) => sqlx::query_scalar(
                "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND u.active",
            )
            .bind(session),
            (None, Some(token)) => sqlx::query_scalar(
                "SELECT t.user_id FROM api_tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.id = $1 AND u.active",
            )
            .bind(token),
            (None, None) => return Ok(true),
        }
        .fetch_optional(self.pool())
        .await
        .map_err(internal)?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_hub::{Hub, HubConfig, SqliteLog, Update};
    use tokio_util::{sync::CancellationToken, task::TaskTracker};

    use super::*;
    use crate::{
        Inner,
        model::{self, User, UserRole},
        open_db,
    };

    /// An app on a fresh SQLite log and database, without the outbox relay, so that an
    /// outbox row stays unpublished for as long as a test needs.
    async fn app(dir: &std::path::Path) -> (App, CancellationToken) {
        let log = SqliteLog::open(&dir.join("log.db"), herald_hub::Durability::Normal)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let hub = Hub::start(
            HubConfig::default(),
            Arc::new(log),
            &TaskTracker::new(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let pool = open_db(None, dir).await.unwrap();
        let app = App {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                hub,
                locks: crate::db::Locks::default(),
                inflight: std::sync::Mutex::default(),
                tasks: TaskTracker::new(),
                accounts: crate::Accounts::new(pool, TaskTracker::new()),
                commits: crate::Commits::Outbox,
            }),
        };
        (app, shutdown)
    }

    async fn sql(app: &App, statement: &str, binds: &[&str]) {
        let mut query = sqlx::query(statement);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(app.pool()).await.unwrap();
    }

    /// Publishes `data` to workspace `ws`'s topic with id `id`.
    async fn publish(app: &App, ws: &str, id: &str, data: &str) {
        app.hub()
            .publish(Update {
                topics: vec![format!("herald:ws/{ws}")],
                data: data.into(),
                private: true,
                id: Some(id.into()),
                ..Update::default()
            })
            .await
            .unwrap();
    }

    /// The text a stream of `actor` resumed from the earliest event yields until `until`
    /// appears in it.
    async fn resumed_until(app: &App, actor: &Actor, until: &str) -> String {
        let mut stream = app
            .open_stream(
                actor,
                StreamRequest {
                    last_event_id: Some("earliest".into()),
                    ..StreamRequest::default()
                },
            )
            .await
            .unwrap()
            .frames;
        let mut text = String::new();
        while !text.contains(until) {
            let frames = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap_or_else(|_| panic!("no {until:?} within 10 s; got {text}"))
                .unwrap_or_else(|| panic!("the stream ended before {until:?}; got {text}"));
            text.push_str(std::str::from_utf8(&frames).unwrap());
        }
        text
    }

    /// A member whose joining event is committed (in the outbox) but not in the log yet has
    /// no known replay floor: nothing of the workspace is replayed, live events still come.
    /// Once the outbox row is gone without the log holding the event (retention removed it),
    /// the floor bounds nothing; once the log holds it, it is the floor.
    #[tokio::test]
    async fn an_unknown_replay_floor_replays_nothing_of_its_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let (app, shutdown) = app(dir.path()).await;
        let (ws, user, join) = (model::new_id(), model::new_id(), model::new_id());
        let now = model::now();
        sql(
            &app,
            "INSERT INTO users (id, email, name, role, password_hash, created_at) \
             VALUES ($1, 'm@example.com', 'M', 'member', 'x', $2)",
            &[&user, &now],
        )
        .await;
        sql(
            &app,
            "INSERT INTO workspaces (id, name, created_by, created_at, updated_at) \
             VALUES ($1, 'W', $2, $3, $3)",
            &[&ws, &user, &now],
        )
        .await;
        sql(
            &app,
            "INSERT INTO members (workspace_id, user_id, role, added_at, joined_event) \
             VALUES ($1, $2, 'member', $3, $4)",
            &[&ws, &user, &now, &join],
        )
        .await;
        sql(
            &app,
            "INSERT INTO outbox (uid, topics, type, data, closes, created_at) \
             VALUES ($1, '[]', 'members:added', '{}', '', 0)",
            &[&join],
        )
        .await;
        let actor = Actor {
            user: User {
                id: user.clone(),
                email: "m@example.com".into(),
                name: "M".into(),
                role: UserRole::Member,
            },
            session: None,
            can_notify: false,
            token: None,
            expires_at: None,
        };
        publish(&app, &ws, &model::new_id(), "before the join").await;

        // Not logged yet: the history is not replayed, a live event is delivered.
        let live = tokio::spawn({
            let (app, ws) = (app.clone(), ws.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                publish(&app, &ws, &model::new_id(), "live").await;
            }
        });
        let text = resumed_until(&app, &actor, "data: live").await;
        live.await.unwrap();
        assert!(!text.contains("before the join"), "replayed: {text}");

        // Pruned: the outbox row went, the log does not hold it. Everything is replayed.
        sql(&app, "DELETE FROM outbox WHERE uid = $1", &[&join]).await;
        let text = resumed_until(&app, &actor, "data: live").await;
        assert!(text.contains("before the join"), "not replayed: {text}");

        // Logged: the floor is the joining event.
        publish(&app, &ws, &join, "joined").await;
        let text = resumed_until(&app, &actor, "data: joined").await;
        assert!(!text.contains("before the join"), "replayed: {text}");
        assert!(!text.contains("data: live"), "replayed: {text}");
        shutdown.cancel();
    }
}
