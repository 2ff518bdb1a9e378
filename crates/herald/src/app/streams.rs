//! The app's event streams.
//!
//! A stream follows a fixed set of hub topics, computed by the policy when it opens. When
//! that set stops being right — the user was removed from a workspace, added to one, logged
//! out — the change that made it wrong carries a closing update (`Update::closes`) for a
//! topic the stream follows: its own user's, its session's, or the admins'. Every node ends
//! such streams right after fanning that update out, so a removed user sees the
//! `members:removed` event that explains why, and nothing after it, wherever their stream
//! is. The browser reconnects with its `Last-Event-ID`, and the new stream follows the new
//! set, replaying what it missed under today's rights.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use herald_hub::{Record, ReplayFilter, SubscribeError, SubscribeRequest};

use crate::{
    app::{
        App, internal,
        policy::{self, Actor, Kind},
    },
    error::ApiError,
};

/// Most workspaces one stream follows. An admin of a larger installation filters with
/// `?workspace=`; each workspace costs two exact topics.
pub const MAX_STREAM_WORKSPACES: usize = 2_000;

/// What a stream asks for.
#[derive(Debug, Default)]
pub(crate) struct StreamRequest {
    /// Only this workspace (`?workspace=`, or the path of a workspace's stream).
    pub(crate) workspace: Option<String>,
    /// Only these kinds (`?types=`).
    pub(crate) types: Option<BTreeSet<Kind>>,
    /// Resume after this event id.
    pub(crate) last_event_id: Option<String>,
}

impl App {
    /// Opens a stream of what `actor` may see: the `connected` event, then what it missed
    /// since `last_event_id` (under today's rights), then live events.
    ///
    /// # Errors
    ///
    /// 404 when the workspace asked for is not readable; 400 for a bad or over-long id, or
    /// too many workspaces; 503 when history cannot be read.
    pub(crate) async fn open_stream(
        &self,
        actor: &Actor,
        request: StreamRequest,
    ) -> Result<BoxStream<'static, Bytes>, ApiError> {
        let workspaces = self.readable(actor, request.workspace.as_deref()).await?;
        if workspaces.len() > MAX_STREAM_WORKSPACES {
            return Err(ApiError::bad_request(format!(
                "this stream would follow {} workspaces (the limit is \
                 {MAX_STREAM_WORKSPACES}); choose one with ?workspace=",
                workspaces.len()
            )));
        }
        let topics = policy::stream_topics(
            actor,
            workspaces.iter().map(String::as_str),
            request.types.as_ref(),
        );
        let replay_filter = match &request.last_event_id {
            Some(_) => self.replay_filter(actor, &workspaces, &topics).await?,
            None => None,
        };
        let subscription = self
            .hub()
            .subscribe(SubscribeRequest {
                claims: Some(topics.clone()),
                max_selectors: Some(topics.len()),
                topics,
                last_event_id: request.last_event_id,
                replay_filter,
            })
            .await
            .map_err(|error| match error {
                SubscribeError::Unavailable(error) => ApiError::unavailable(error.to_string()),
                full @ SubscribeError::SelectorsFull => ApiError::unavailable(full.to_string()),
                invalid => ApiError::bad_request(invalid.to_string()),
            })?;
        // A change of rights between the check above and the registration has had its
        // closing update fanned out before this stream could hear it. Now that it is
        // registered, every later change reaches it; check once more for one in between,
        // and if there was, end at once: the client reconnects under the new rights.
        let unchanged = self.session_alive(actor).await?
            && self
                .readable(actor, request.workspace.as_deref())
                .await
                .is_ok_and(|now| now == workspaces);
        if !unchanged {
            subscription.closer().close();
        }

        let connected = serde_json::json!({
            "userId": actor.user.id,
            "workspaces": workspaces,
        });
        let connected = herald_sse::Event::new(connected.to_string())
            .with_event("connected")
            .encode();
        Ok(futures::stream::once(async move { connected })
            .chain(subscription)
            .boxed())
    }

    /// The workspaces a stream of `actor` follows: `only` (404 unless readable), or every
    /// one it may read.
    async fn readable(
        &self,
        actor: &Actor,
        only: Option<&str>,
    ) -> Result<BTreeSet<String>, ApiError> {
        Ok(match only {
            Some(ws) => {
                self.workspace(actor, ws).await?;
                BTreeSet::from([ws.to_owned()])
            }
            None => self
                .workspaces(actor)
                .await?
                .into_iter()
                .map(|view| view.workspace.id)
                .collect(),
        })
    }

    /// What a resume of `actor`'s stream may replay: a record of a workspace only from
    /// the position where the actor's access to it began (the event that made it a member),
    /// so a new member is not replayed what happened before they could see it. Admins see
    /// everything: no filter. A joining event that retention removed bounds nothing, since
    /// everything before it went too.
    async fn replay_filter(
        &self,
        actor: &Actor,
        workspaces: &BTreeSet<String>,
        topics: &[String],
    ) -> Result<Option<ReplayFilter>, ApiError> {
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
            let position = self
                .hub()
                .position(&event)
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?;
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

    /// Whether the session the actor came with still exists (true for API tokens).
    async fn session_alive(&self, actor: &Actor) -> Result<bool, ApiError> {
        let Some(session) = &actor.session else {
            return Ok(true);
        };
        let found: Option<String> =
            sqlx::query_scalar("SELECT token_hash FROM sessions WHERE token_hash = $1")
                .bind(session)
                .fetch_optional(self.pool())
                .await
                .map_err(internal)?;
        Ok(found.is_some())
    }
}
