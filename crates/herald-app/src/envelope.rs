//! The data of the events the app emits (`docs/app-api.md`), serialized once per event,
//! inside its change, straight from borrowed fields: no `serde_json::Value` tree of owned
//! strings is built and dropped for each change.

use serde::Serialize;

use crate::{model, policy::Actor};

/// An event's envelope, but for its `id`: [`Change::emit`](crate::Change::emit) puts the
/// event's id first. Fields left `None` are not written.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope<'a, D: Serialize = ()> {
    /// The event's type, as in its SSE `event:` field.
    #[serde(rename = "type")]
    pub(crate) event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resource_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) workspace_id: Option<&'a str>,
    /// Whom a notification is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<&'a D>,
    /// Who made the change.
    pub(crate) user: By<'a>,
    pub(crate) timestamp: String,
}

impl<'a, D: Serialize> Envelope<'a, D> {
    /// An envelope of `event_type` by `actor`, stamped now, with nothing else set.
    pub(crate) fn new(event_type: &'a str, actor: &'a Actor) -> Self {
        Self {
            event_type,
            action: None,
            resource_type: None,
            workspace_id: None,
            user_id: None,
            data: None,
            user: By {
                id: &actor.user.id,
                name: &actor.user.name,
            },
            timestamp: model::now(),
        }
    }
}

/// The `user` of an envelope: who made the change.
#[derive(Debug, Serialize)]
pub(crate) struct By<'a> {
    id: &'a str,
    name: &'a str,
}

/// An envelope with its event's id, written first.
#[derive(Serialize)]
pub(crate) struct Stamped<'a, D: Serialize> {
    pub(crate) id: &'a str,
    #[serde(flatten)]
    pub(crate) envelope: &'a Envelope<'a, D>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{User, UserRole};

    fn actor() -> Actor {
        Actor {
            user: User {
                id: "u1".into(),
                email: "ada@example.com".into(),
                name: "Ada \"A\"".into(),
                role: UserRole::Member,
            },
            session: None,
            can_notify: false,
            token: None,
            expires_at: None,
        }
    }

    /// The documented order and fields, with nothing unset written and text escaped.
    #[test]
    fn an_envelope_is_written_in_the_documented_order_with_its_id_first() {
        let actor = actor();
        let data = serde_json::json!({ "title": "milk" });
        let mut envelope = Envelope::new("todos:created", &actor);
        envelope.action = Some("created");
        envelope.resource_type = Some("todos");
        envelope.workspace_id = Some("w1");
        envelope.data = Some(&data);
        envelope.timestamp = "T".into();
        let json = serde_json::to_string(&Stamped {
            id: "e1",
            envelope: &envelope,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"id":"e1","type":"todos:created","action":"created","resourceType":"todos","#
                .to_owned()
                + r#""workspaceId":"w1","data":{"title":"milk"},"#
                + r#""user":{"id":"u1","name":"Ada \"A\""},"timestamp":"T"}"#
        );
        let bare: Envelope<'_> = Envelope::new("sessions:ended", &actor);
        let json = serde_json::to_value(Stamped {
            id: "e2",
            envelope: &bare,
        })
        .unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 4, "{json}");
        for key in ["id", "type", "user", "timestamp"] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }
}
