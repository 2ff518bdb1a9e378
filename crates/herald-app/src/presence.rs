//! Who is online in a workspace: the users whose app streams are open, registered in the
//! hub's presence registry (`herald_hub::presence`) in each workspace they are a member of,
//! with the user's id and name as the payload. All the streams of one user on one node share
//! one subscriber id ([`Registry::shared_subscriber`]), so the registry holds them as one
//! entry per workspace: a user is announced when their first stream there opens and ended
//! when their last one closes, however many tabs they open and close in between.
//!
//! A stream's presence entries go to the workspace's presence topic
//! ([`policy::presence_topic`]): a reserved topic, so only the streams of the workspace's
//! readers receive their `presence` events, never a Mercure subscriber. The read
//! ([`App::presence`]) takes its log position before it reads the registry, and the
//! registry changes before its event is published: a client that loads the list, then
//! streams after its position, misses no arrival or departure.

use std::collections::BTreeMap;

use herald_hub::presence::{Entry, Presence, Registry};
use serde::Serialize;
use serde_json::json;

use crate::{
    App,
    error::{AppError, internal},
    policy::{self, Actor},
    snapshot::Snapshot,
};

/// A user who is online in a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Online {
    /// The user's id.
    pub user_id: String,
    /// Their display name.
    pub name: String,
    /// Their subscriber ids: one per node that holds streams of theirs.
    pub subscribers: Vec<String>,
}

/// The users online in a workspace, as [`App::presence`] reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnlineUsers {
    /// One per user, ordered by name.
    pub items: Vec<Online>,
    /// Present, and true, when the registry held more entries than one read returns
    /// (`herald_hub::presence::MAX_LISTED`): the list is cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The presence entries of one stream of `actor` in `workspaces` (those it is a member of),
/// under the user's subscriber id on this node.
pub fn entries<'a>(
    registry: &Registry,
    actor: &Actor,
    workspaces: impl IntoIterator<Item = &'a str>,
) -> Vec<Entry> {
    let subscriber = registry.shared_subscriber(&actor.user.id);
    let payload = json!({ "userId": actor.user.id, "name": actor.user.name });
    workspaces
        .into_iter()
        .map(|ws| {
            let topic = policy::presence_topic(ws);
            Entry {
                subscriber: subscriber.clone(),
                match_type: "exact".to_owned(),
                matcher: topic.clone(),
                payload: Some(payload.clone()),
                node: String::new(),
                topic,
            }
        })
        .collect()
}

/// Shows `actor` online in `workspaces` (those it is a member of) while the returned guard
/// lives, after `charge` agreed to the number of workspaces where the user was not online
/// yet on this node (each costs the log a join and a leave).
///
/// # Errors
///
/// `charge`'s: nothing is registered or announced then.
pub async fn join<E>(
    registry: &Registry,
    actor: &Actor,
    workspaces: &[String],
    charge: impl FnOnce(u32) -> Result<(), E>,
) -> Result<Presence, E> {
    let entries = entries(registry, actor, workspaces.iter().map(String::as_str));
    let charge = |count: usize| charge(u32::try_from(count).unwrap_or(u32::MAX));
    registry.join_charged(entries, charge).await
}

impl App {
    /// The users online in workspace `ws`, one entry per user, ordered by name, and whether
    /// the read was cut.
    ///
    /// # Errors
    ///
    /// `NotFound` when `actor` may not read the workspace; `Unavailable` when the
    /// registry cannot be read.
    pub async fn presence(
        &self,
        actor: &Actor,
        ws: &str,
        registry: &Registry,
    ) -> Result<Snapshot<OnlineUsers>, AppError> {
        // The position first (in `read_snapshot`), the registry after it.
        let mut read = self.read_snapshot().await?;
        crate::service::check_access(read.conn(), actor, ws).await?;
        let listing = registry
            .list(&policy::presence_topic(ws))
            .await
            .map_err(|error| AppError::unavailable(error.to_string()))?;
        let topic = policy::presence_topic(ws);
        let mut users: BTreeMap<String, Online> = BTreeMap::new();
        for entry in listing.entries.iter().filter(|e| e.topic == topic) {
            let Some(payload) = &entry.payload else {
                continue;
            };
            let text = |name: &str| payload.get(name).and_then(|v| v.as_str());
            let (Some(user_id), Some(name)) = (text("userId"), text("name")) else {
                return Err(internal("a presence entry without its user"));
            };
            users
                .entry(user_id.to_owned())
                .or_insert_with(|| Online {
                    user_id: user_id.to_owned(),
                    name: name.to_owned(),
                    subscribers: Vec::new(),
                })
                .subscribers
                .push(entry.subscriber.clone());
        }
        let mut online: Vec<Online> = users.into_values().collect();
        online.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.user_id.cmp(&b.user_id)));
        read.finish(OnlineUsers {
            items: online,
            truncated: listing.truncated,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_list_says_so_and_a_whole_one_says_nothing() {
        let mut users = OnlineUsers {
            items: Vec::new(),
            truncated: false,
        };
        assert_eq!(serde_json::to_value(&users).unwrap(), json!({"items": []}));
        users.truncated = true;
        assert_eq!(
            serde_json::to_value(&users).unwrap(),
            json!({"items": [], "truncated": true})
        );
    }
}
