//! A change in progress: the connection its statements run on, and the events it emits,
//! each written once as JSON.

use herald_hub::Update;

use crate::{AppError, conn::Conn, envelope, error::internal, model};

/// One change in progress: its transaction's connection, and the events it emits.
pub(crate) struct Change<'c> {
    /// The connection, inside the change's transaction; the body runs its statements on
    /// it.
    pub(crate) tx: Conn<'c>,
    pub(crate) events: Vec<Update>,
}

/// An event [`Change::emit_event`] recorded.
pub(crate) struct Emitted {
    /// The event's id.
    pub(crate) id: String,
    /// The JSON of its envelope's data, as the event carries it, when asked for.
    pub(crate) data: Option<String>,
}

impl Change<'_> {
    /// Records an event of `event_type` (the SSE `event:` field) for `topics`, stored with
    /// the change; once it is fanned out, the streams following `closes` end (a
    /// revocation). Its `data` is `envelope` after the event's id, which it returns.
    pub(crate) fn emit<D: serde::Serialize>(
        &mut self,
        topics: Vec<String>,
        closes: Vec<String>,
        envelope: &envelope::Envelope<'_, D>,
    ) -> Result<String, AppError> {
        Ok(self.emit_event(topics, closes, envelope, false)?.id)
    }

    /// [`Change::emit`], with, when `keep_data`, a copy of the JSON of the envelope's data
    /// cut from the event's instead of serialized again.
    pub(crate) fn emit_event<D: serde::Serialize>(
        &mut self,
        topics: Vec<String>,
        closes: Vec<String>,
        envelope: &envelope::Envelope<'_, D>,
        keep_data: bool,
    ) -> Result<Emitted, AppError> {
        let uid = model::new_id();
        let stamped = envelope.stamped(&uid).map_err(internal)?;
        let data = keep_data
            .then(|| stamped.data().map(str::to_owned))
            .flatten();
        self.events.push(Update {
            topics,
            data: stamped.json,
            private: true,
            id: Some(uid.clone()),
            event_type: Some(envelope.event_type.to_owned()),
            retry: None,
            closes,
        });
        Ok(Emitted { id: uid, data })
    }
}
