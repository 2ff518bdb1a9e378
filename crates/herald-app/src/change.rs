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
        let uid = model::new_id();
        let stamped = envelope.stamped(&uid).map_err(internal)?;
        self.record(
            topics,
            closes,
            envelope.event_type,
            uid.clone(),
            stamped.json,
        );
        Ok(uid)
    }

    /// [`Change::emit`], returning the JSON of the envelope's data as the event carries it,
    /// cut from the event's.
    pub(crate) fn emit_returning_data<D: serde::Serialize>(
        &mut self,
        topics: Vec<String>,
        closes: Vec<String>,
        envelope: &envelope::Envelope<'_, D>,
    ) -> Result<String, AppError> {
        let uid = model::new_id();
        let stamped = envelope.stamped(&uid).map_err(internal)?;
        let data = stamped
            .data()
            .ok_or_else(|| internal("the envelope has no data"))?
            .to_owned();
        self.record(topics, closes, envelope.event_type, uid, stamped.json);
        Ok(data)
    }

    fn record(
        &mut self,
        topics: Vec<String>,
        closes: Vec<String>,
        event_type: &str,
        uid: String,
        data: String,
    ) {
        self.events.push(Update {
            topics,
            data,
            private: true,
            id: Some(uid),
            event_type: Some(event_type.to_owned()),
            retry: None,
            closes,
        });
    }
}
