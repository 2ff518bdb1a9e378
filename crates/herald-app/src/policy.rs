//! The policy: who may read and change what, and — the same rules applied to events — which
//! hub topics each event is routed to and which topics each user's stream follows.
//!
//! Authorization is decided once per event, when it is routed: a todo's event goes to its
//! workspace's topics, a note's event to its author's note topic and the admins' one. A
//! stream subscribes to exactly the topics its user may read now, so fan-out checks nothing
//! per subscriber, and replay after `Last-Event-ID` applies today's rights, not yesterday's.

use std::collections::BTreeSet;

use crate::{
    error::AppError,
    model::{MemberRole, User, UserRole, Workspace},
};

/// Who is making a request: a signed-in user, through a session or an API token.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The user.
    pub user: User,
    /// The hash of the session that authenticated the request, when it came from a browser;
    /// logout ends the streams opened with it.
    pub session: Option<String>,
    /// An API token made with `--notify`: may send notifications and broadcasts.
    pub can_notify: bool,
    /// The public id of the API token that authenticated the request; revoking it ends the
    /// streams opened with it.
    pub token: Option<String>,
    /// When the session or token expires (Unix seconds); streams opened with it end then.
    pub expires_at: Option<i64>,
}

impl Actor {
    /// Whether the user is a global admin.
    pub fn is_admin(&self) -> bool {
        self.user.role == UserRole::Admin
    }

    /// Whether the actor may read a note written by `author`, in a workspace it may read.
    pub fn may_read_note(&self, author: &str) -> bool {
        self.is_admin() || self.user.id == author
    }
}

/// What an actor may do in one workspace it may read. Only [`Access::check`] makes one, so
/// holding an `Access` is proof of read access.
#[derive(Clone, Debug)]
pub struct Access {
    /// The workspace.
    pub workspace: Workspace,
    /// The actor's membership role; `None` for an admin who is not a member.
    pub role: Option<MemberRole>,
    admin: bool,
}

impl Access {
    /// Read access to `workspace` for an actor with membership `role`: members and admins.
    ///
    /// # Errors
    ///
    /// `NotFound` for anyone else, exactly as if the workspace did not exist.
    pub fn check(
        actor: &Actor,
        workspace: Option<Workspace>,
        role: Option<MemberRole>,
    ) -> Result<Self, AppError> {
        Self::permits(actor, workspace.is_some(), role)?;
        match workspace {
            Some(workspace) => Ok(Self {
                workspace,
                role,
                admin: actor.is_admin(),
            }),
            None => Err(not_found("workspace")),
        }
    }

    /// The rule of [`Access::check`] alone, for a caller that needs no `Access`: whether
    /// an actor with membership `role` may read a workspace, which `exists` or not.
    ///
    /// # Errors
    ///
    /// `NotFound` for anyone but members and admins, or when the workspace does not exist.
    pub fn permits(actor: &Actor, exists: bool, role: Option<MemberRole>) -> Result<(), AppError> {
        if exists && (role.is_some() || actor.is_admin()) {
            Ok(())
        } else {
            Err(not_found("workspace"))
        }
    }

    /// Owners and admins manage the workspace: rename, delete, members, broadcasts.
    ///
    /// # Errors
    ///
    /// `Forbidden`: the actor may see the workspace, so saying why is no leak.
    pub fn require_owner(&self, doing: &str) -> Result<(), AppError> {
        if self.admin || self.role == Some(MemberRole::Owner) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "only the workspace's owners may {doing}"
            )))
        }
    }
}

/// A `NotFound` that says only what was not found.
pub fn not_found(what: &str) -> AppError {
    AppError::not_found(format!("no such {what}"))
}

/// What a workspace event says happened to its resource: the second half of its type
/// (`todos:created`) and its envelope's `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A resource or workspace was made.
    Created,
    /// A resource or workspace was changed.
    Updated,
    /// A resource or workspace was deleted.
    Deleted,
    /// A member joined a workspace.
    Added,
    /// A member left a workspace.
    Removed,
}

impl Action {
    /// The name used in event types and envelopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Added => "added",
            Self::Removed => "removed",
        }
    }
}

/// The kinds of workspace event a stream may filter on (`?types=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `todos:*`.
    Todos,
    /// `channels:*`.
    Channels,
    /// `notes:*`: routed per author, never to the workspace's shared topic.
    Notes,
    /// `members:*`.
    Members,
    /// `workspaces:*`.
    Workspaces,
    /// `announcement`.
    Announcements,
}

impl Kind {
    /// Every kind, in the order `?types=` lists them in errors.
    pub const ALL: [Self; 6] = [
        Self::Todos,
        Self::Channels,
        Self::Notes,
        Self::Members,
        Self::Workspaces,
        Self::Announcements,
    ];

    /// The name used in event types, topics and `?types=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Todos => "todos",
            Self::Channels => "channels",
            Self::Notes => "notes",
            Self::Members => "members",
            Self::Workspaces => "workspaces",
            Self::Announcements => "announcements",
        }
    }

    /// Parses a `?types=` list.
    ///
    /// # Errors
    ///
    /// `Invalid` naming the unknown type.
    pub fn parse_list(list: &str) -> Result<BTreeSet<Self>, AppError> {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|name| {
                Self::ALL
                    .into_iter()
                    .find(|kind| kind.as_str() == name)
                    .ok_or_else(|| {
                        let known: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                        AppError::invalid(format!(
                            "unknown event type {name:?} (known: {})",
                            known.join(", ")
                        ))
                    })
            })
            .collect()
    }
}

/// The workspace a topic belongs to, if it is one of a workspace's.
pub fn workspace_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("herald:ws/")?;
    Some(rest.split_once('/').map_or(rest, |(ws, _)| ws))
}

/// Every event about workspace `ws` goes to this topic, except notes.
fn workspace_topic(ws: &str) -> String {
    format!("herald:ws/{ws}")
}

/// Events of one kind in `ws`; for notes, every note (the admins' topic).
fn kind_topic(ws: &str, kind: Kind) -> String {
    format!("herald:ws/{ws}/{}", kind.as_str())
}

/// Who is online in `ws`: the `presence` events of its readers' streams, which the streams
/// that ask for presence follow.
pub fn presence_topic(ws: &str) -> String {
    format!("herald:ws/{ws}/presence")
}

/// The notes `author` wrote in `ws`.
fn author_notes_topic(ws: &str, author: &str) -> String {
    format!("herald:ws/{ws}/notes/{author}")
}

/// One user's own events: notifications, and changes to their memberships. Closing it ends
/// every stream of the user (a deactivation, a new password).
pub fn user_topic(user: &str) -> String {
    format!("herald:user/{user}")
}

/// Every admin's streams follow this topic, so that the creation of a workspace, which they
/// may all read, can end them (they come back following it too).
const ADMINS_TOPIC: &str = "herald:admins";

/// The topic of control events, which carry only revocations and reach no stream.
pub const CONTROL_TOPIC: &str = "herald:control";

/// The topic every stream opened with session `session_hash` follows, so logging out ends
/// them on every node. Derived by hashing again: the topic never carries what is stored.
pub fn session_topic(session_hash: &str) -> String {
    let hashed = crate::passwords::secret_hash(session_hash);
    format!("herald:session/{}", &hashed[..32])
}

/// The topic every stream opened with the API token `token_id` (its public id) follows, so
/// revoking the token ends them on every node.
pub fn token_topic(token_id: &str) -> String {
    format!("herald:token/{token_id}")
}

/// The streams an event ends, after delivering it: those whose topics it makes wrong.
/// A membership change ends the streams of the user it concerns (they reconnect following
/// the new set of workspaces); a new workspace also ends admins' streams; a deleted one
/// ends every stream that follows it.
pub fn closes(kind: Kind, action: Action, ws: &str, concerns: Option<&str>) -> Vec<String> {
    let mut topics: Vec<String> = concerns.map(user_topic).into_iter().collect();
    match (kind, action) {
        (Kind::Workspaces, Action::Created) => topics.push(ADMINS_TOPIC.to_owned()),
        (Kind::Workspaces, Action::Deleted) => {
            topics.push(workspace_topic(ws));
            topics.extend(Kind::ALL.iter().map(|&k| kind_topic(ws, k)));
        }
        _ => {}
    }
    topics
}

/// The topics of an event of `kind` in workspace `ws`. `author` is the note's author (for
/// notes); `concerns` the user whose membership changed (for `members:*` and
/// `workspaces:created`), who must hear of it even when they can no longer read `ws`.
pub fn route(kind: Kind, ws: &str, author: &str, concerns: Option<&str>) -> Vec<String> {
    let mut topics = match kind {
        Kind::Notes => vec![kind_topic(ws, kind), author_notes_topic(ws, author)],
        _ => vec![workspace_topic(ws), kind_topic(ws, kind)],
    };
    topics.extend(concerns.map(user_topic));
    topics
}

/// The topics of a notification to `user`.
pub fn route_notification(user: &str) -> Vec<String> {
    vec![user_topic(user)]
}

/// The topics a stream of `actor` follows: for each workspace it may read, the kinds asked
/// for (all when `types` is `None`), with notes narrowed to the actor's own unless it is an
/// admin; and always the actor's own topic, its session's or token's, and the admins' for
/// admins — those carry revocations.
pub fn stream_topics<'a>(
    actor: &Actor,
    workspaces: impl IntoIterator<Item = &'a str>,
    types: Option<&BTreeSet<Kind>>,
) -> Vec<String> {
    let notes = |ws: &str| {
        if actor.is_admin() {
            kind_topic(ws, Kind::Notes)
        } else {
            author_notes_topic(ws, &actor.user.id)
        }
    };
    let mut topics = vec![user_topic(&actor.user.id)];
    topics.extend(actor.session.as_deref().map(session_topic));
    topics.extend(actor.token.as_deref().map(token_topic));
    if actor.is_admin() {
        topics.push(ADMINS_TOPIC.to_owned());
    }
    for ws in workspaces {
        match types {
            None => {
                topics.push(workspace_topic(ws));
                topics.push(notes(ws));
            }
            Some(kinds) => topics.extend(kinds.iter().map(|&kind| match kind {
                Kind::Notes => notes(ws),
                kind => kind_topic(ws, kind),
            })),
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(id: &str, role: UserRole) -> Actor {
        Actor {
            user: User {
                id: id.into(),
                email: format!("{id}@example.com"),
                name: id.into(),
                role,
            },
            session: None,
            can_notify: false,
            token: None,
            expires_at: None,
        }
    }

    /// Whether a stream of `reader` (no type filter) receives an event routed to `topics`.
    fn receives(reader: &Actor, topics: &[String]) -> bool {
        let follows = stream_topics(reader, ["w"], None);
        topics.iter().any(|t| follows.contains(t))
    }

    /// `permits` and `check` say the same for every actor, membership and existence:
    /// members and admins read an existing workspace, nobody reads a missing one.
    #[test]
    fn the_access_rule_is_the_same_with_or_without_the_workspace() {
        let member = actor("m", UserRole::Member);
        let admin = actor("root", UserRole::Admin);
        let workspace = Workspace {
            id: "w".into(),
            name: "W".into(),
            created_by: "m".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
        };
        for who in [&member, &admin] {
            for role in [None, Some(MemberRole::Member), Some(MemberRole::Owner)] {
                for exists in [false, true] {
                    let permitted = Access::permits(who, exists, role).is_ok();
                    let checked = Access::check(who, exists.then(|| workspace.clone()), role);
                    assert_eq!(
                        permitted,
                        checked.is_ok(),
                        "{} {role:?} {exists}",
                        who.user.id
                    );
                    assert_eq!(permitted, exists && (role.is_some() || who.is_admin()));
                }
            }
        }
    }

    #[test]
    fn routing_agrees_with_the_read_policy() {
        let author = actor("a", UserRole::Member);
        let other = actor("b", UserRole::Member);
        let admin = actor("root", UserRole::Admin);
        let todo = route(Kind::Todos, "w", "a", None);
        let note = route(Kind::Notes, "w", "a", None);
        for reader in [&author, &other, &admin] {
            assert!(receives(reader, &todo), "{} sees todos", reader.user.id);
            assert_eq!(
                receives(reader, &note),
                reader.may_read_note("a"),
                "{} and a's note",
                reader.user.id
            );
        }
        // A member's removal reaches them through their own topic, whatever they follow.
        let removed = route(Kind::Members, "w", "root", Some("b"));
        let b_elsewhere = stream_topics(&other, ["x"], None);
        assert!(removed.iter().any(|t| b_elsewhere.contains(t)));
        // Another workspace's stream hears nothing of `w`.
        assert!(!todo.iter().any(|t| b_elsewhere.contains(t)));
    }

    #[test]
    fn topics_name_their_workspace() {
        for topic in route(Kind::Notes, "w1", "a", Some("u"))
            .iter()
            .chain(&route(Kind::Todos, "w1", "a", None))
            .filter(|t| t.starts_with("herald:ws/"))
        {
            assert_eq!(workspace_of(topic), Some("w1"), "{topic}");
        }
        assert_eq!(workspace_of(&user_topic("u")), None);
    }

    #[test]
    fn type_filters() {
        let member = actor("m", UserRole::Member);
        let kinds = Kind::parse_list("todos,notes").unwrap();
        let follows = stream_topics(&member, ["w"], Some(&kinds));
        let sees = |topics: Vec<String>| topics.iter().any(|t| follows.contains(t));
        assert!(sees(route(Kind::Todos, "w", "x", None)));
        assert!(!sees(route(Kind::Channels, "w", "x", None)));
        assert!(sees(route(Kind::Notes, "w", "m", None)));
        assert!(!sees(route(Kind::Notes, "w", "x", None)));
        assert!(sees(route_notification("m")));
        assert_eq!(
            Kind::parse_list("todos,nope").unwrap_err().message,
            "unknown event type \"nope\" (known: todos, channels, notes, members, workspaces, announcements)"
        );
    }
}
