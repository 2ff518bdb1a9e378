//! The app's event streams, and [`Streams`]: the registry that ends them when their user's
//! access changes.
//!
//! A stream follows a fixed set of hub topics, computed by the policy when it opens. When
//! that set stops being right — the user was removed from a workspace, added to one, logged
//! out — the stream is ended after what is already queued for it (so a removed user still
//! sees the `members:removed` event that explains why). The browser reconnects with its
//! `Last-Event-ID`, and the new stream follows the new set, replaying what it missed under
//! today's rights.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use herald_hub::{Closer, SubscribeError, SubscribeRequest};

use crate::{
    app::{
        App,
        policy::{self, Actor, Kind},
    },
    error::ApiError,
};

/// Most workspaces one stream follows. An admin of a larger installation filters with
/// `?workspace=`; each workspace costs two exact topics.
pub const MAX_STREAM_WORKSPACES: usize = 2_000;

/// Open app streams, by id.
#[derive(Debug, Default)]
pub struct Streams {
    next: AtomicU64,
    /// Bumped by every revocation, so a stream that computed its topics while one ran can
    /// tell, and end itself rather than keep following what it may no longer see.
    epoch: AtomicU64,
    open: Mutex<HashMap<u64, Registered>>,
}

#[derive(Debug)]
struct Registered {
    user: String,
    admin: bool,
    session: Option<String>,
    /// The workspaces it follows.
    workspaces: BTreeSet<String>,
    /// Whether it follows every workspace its user may read (`/api/events` without
    /// `?workspace=`), and so must be renewed when that set grows.
    all: bool,
    closer: Closer,
}

impl Streams {
    fn close_where(&self, mut matches: impl FnMut(&Registered) -> bool) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let open = self.open.lock().expect("streams poisoned");
        for stream in open.values().filter(|s| matches(s)) {
            stream.closer.close();
        }
    }

    /// Ends `user`'s streams that follow `ws`: they were removed from it.
    pub fn revoke(&self, user: &str, ws: &str) {
        self.close_where(|s| s.user == user && s.workspaces.contains(ws));
    }

    /// Ends every stream that follows `ws`: it was deleted.
    pub fn revoke_workspace(&self, ws: &str) {
        self.close_where(|s| s.workspaces.contains(ws));
    }

    /// Ends `user`'s streams that follow all their workspaces: the set grew.
    pub fn refresh(&self, user: &str) {
        self.close_where(|s| s.user == user && s.all);
    }

    /// Ends admins' streams that follow all workspaces: a workspace was created.
    pub fn refresh_admins(&self) {
        self.close_where(|s| s.admin && s.all);
    }

    /// Ends the streams a session opened: it logged out.
    pub fn end_session(&self, session: &str) {
        self.close_where(|s| s.session.as_deref() == Some(session));
    }

    /// How many app streams are open.
    pub fn len(&self) -> usize {
        self.open.lock().expect("streams poisoned").len()
    }

    /// Whether no app stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a stream from the registry when its body is dropped.
struct Deregister {
    app: App,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.app
            .streams()
            .open
            .lock()
            .expect("streams poisoned")
            .remove(&self.id);
    }
}

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
        let epoch = self.streams().epoch.load(Ordering::SeqCst);
        let all = request.workspace.is_none();
        let workspaces: BTreeSet<String> = match &request.workspace {
            Some(ws) => {
                self.workspace(actor, ws).await?;
                BTreeSet::from([ws.clone()])
            }
            None => self
                .workspaces(actor)
                .await?
                .into_iter()
                .map(|view| view.workspace.id)
                .collect(),
        };
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
        let subscription = self
            .hub()
            .subscribe(SubscribeRequest {
                claims: Some(topics.clone()),
                max_selectors: Some(topics.len()),
                topics,
                last_event_id: request.last_event_id,
            })
            .await
            .map_err(|error| match error {
                SubscribeError::Unavailable(error) => ApiError::unavailable(error.to_string()),
                invalid => ApiError::bad_request(invalid.to_string()),
            })?;

        let id = self.streams().next.fetch_add(1, Ordering::Relaxed);
        let connected = serde_json::json!({
            "userId": actor.user.id,
            "workspaces": workspaces,
        });
        let connected = herald_sse::Event::new(connected.to_string())
            .with_event("connected")
            .encode();
        {
            let mut open = self.streams().open.lock().expect("streams poisoned");
            open.insert(
                id,
                Registered {
                    user: actor.user.id.clone(),
                    admin: actor.is_admin(),
                    session: actor.session.clone(),
                    workspaces,
                    all,
                    closer: subscription.closer(),
                },
            );
            if self.streams().epoch.load(Ordering::SeqCst) != epoch {
                // Access changed while the topics were computed: start over.
                subscription.closer().close();
            }
        }
        let deregister = Deregister {
            app: self.clone(),
            id,
        };
        Ok(futures::stream::once(async move { connected })
            .chain(subscription)
            .map(move |frames| {
                let _ = &deregister;
                frames
            })
            .boxed())
    }
}
