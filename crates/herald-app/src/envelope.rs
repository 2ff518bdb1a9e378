//! The data of the events the app emits (`docs/app-api.md`), serialized once per event,
//! inside its change, straight from borrowed fields: no `serde_json::Value` tree of owned
//! strings is built and dropped for each change.

use serde::Serialize;

use crate::{model, policy::Actor};

/// An event's envelope, but for its `id`, which [`Envelope::stamped`] writes first. Fields
/// left `None` are not written.
#[derive(Debug)]
pub(crate) struct Envelope<'a, D: Serialize = ()> {
    /// The event's type, as in its SSE `event:` field.
    pub(crate) event_type: &'a str,
    pub(crate) action: Option<&'a str>,
    pub(crate) resource_type: Option<&'a str>,
    pub(crate) workspace_id: Option<&'a str>,
    /// Whom a notification is for.
    pub(crate) user_id: Option<&'a str>,
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

    /// The JSON of the event `id` with this envelope, in the documented order: `id`,
    /// `type`, `action`, `resourceType`, `workspaceId`, `userId`, `data`, `user`,
    /// `timestamp`. Written in one buffer, piece by piece, so that the data's JSON can be
    /// cut from it ([`Stamped::data`]) instead of serialized again.
    pub(crate) fn stamped(&self, id: &str) -> serde_json::Result<Stamped> {
        let mut out = Vec::with_capacity(1024);
        serde_json::to_writer(
            &mut out,
            &Head {
                id,
                event_type: self.event_type,
                action: self.action,
                resource_type: self.resource_type,
                workspace_id: self.workspace_id,
                user_id: self.user_id,
            },
        )?;
        // The head's closing brace: the object goes on.
        out.pop();
        let mut data = None;
        if let Some(value) = self.data {
            out.extend_from_slice(b",\"data\":");
            let start = out.len();
            serde_json::to_writer(&mut out, value)?;
            data = Some(start..out.len());
        }
        out.extend_from_slice(b",\"user\":");
        serde_json::to_writer(&mut out, &self.user)?;
        out.extend_from_slice(b",\"timestamp\":");
        serde_json::to_writer(&mut out, &self.timestamp)?;
        out.push(b'}');
        let json = String::from_utf8(out).map_err(serde::ser::Error::custom)?;
        Ok(Stamped { json, data })
    }
}

/// The fields an envelope's JSON begins with.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Head<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// The `user` of an envelope: who made the change.
#[derive(Debug, Serialize)]
pub(crate) struct By<'a> {
    id: &'a str,
    name: &'a str,
}

/// An event's JSON ([`Envelope::stamped`]).
#[derive(Debug)]
pub(crate) struct Stamped {
    pub(crate) json: String,
    /// Where the envelope's data is in `json`, when it has some.
    pub(crate) data: Option<std::ops::Range<usize>>,
}

impl Stamped {
    /// The JSON of the envelope's data, as the event carries it.
    pub(crate) fn data(&self) -> Option<&str> {
        self.data.clone().and_then(|range| self.json.get(range))
    }
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
        let stamped = envelope.stamped("e1").unwrap();
        let json = &stamped.json;
        assert_eq!(
            *json,
            r#"{"id":"e1","type":"todos:created","action":"created","resourceType":"todos","#
                .to_owned()
                + r#""workspaceId":"w1","data":{"title":"milk"},"#
                + r#""user":{"id":"u1","name":"Ada \"A\""},"timestamp":"T"}"#
        );
        assert_eq!(stamped.data(), Some(r#"{"title":"milk"}"#));
        let mut notice: Envelope<'_> = Envelope::new("notification", &actor);
        notice.user_id = Some("u2");
        notice.timestamp = "T".into();
        assert_eq!(
            notice.stamped("e3").unwrap().json,
            r#"{"id":"e3","type":"notification","userId":"u2","#.to_owned()
                + r#""user":{"id":"u1","name":"Ada \"A\""},"timestamp":"T"}"#
        );
        let bare: Envelope<'_> = Envelope::new("sessions:ended", &actor);
        let stamped = bare.stamped("e2").unwrap();
        assert_eq!(stamped.data(), None, "no data was written");
        let json: serde_json::Value = serde_json::from_str(&stamped.json).unwrap();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 4, "{json}");
        for key in ["id", "type", "user", "timestamp"] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }
}
