//! Updates: what a publisher submits ([`Update`]) and what the log stores and fans out
//! ([`Record`]).

use std::sync::Arc;

use bytes::Bytes;

/// Limits on a single update, checked before anything is stored.
#[derive(Clone, Debug)]
pub struct UpdateLimits {
    /// Most topics one update may carry. Each topic is matched against every pattern
    /// subscriber, so this bounds the matching work one publish can cause.
    pub max_topics: usize,
    /// Longest topic, in bytes. Topics are IRIs; anything longer is a mistake or an attack.
    pub max_topic_len: usize,
    /// Longest update id, in bytes. Ids travel in every event and every `Last-Event-ID`.
    pub max_id_len: usize,
    /// Longest event type, in bytes.
    pub max_type_len: usize,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_topics: 64,
            max_topic_len: 2048,
            max_id_len: 256,
            max_type_len: 256,
        }
    }
}

/// An update as a publisher submits it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// The topics the update is about; at least one.
    pub topics: Vec<String>,
    /// The payload, sent as `data:` lines. Line ends are normalized to LF on the wire.
    pub data: String,
    /// A private update reaches only subscribers whose claims match one of its topics.
    pub private: bool,
    /// The publisher's id for the update; a `urn:uuid:` is generated when absent.
    pub id: Option<String>,
    /// The SSE `event:` field.
    pub event_type: Option<String>,
    /// The SSE `retry:` field, in milliseconds.
    pub retry: Option<u64>,
    /// Exact topics whose subscribers are ended right after this update is fanned out live
    /// (replay does not end anything). Not part of the Mercure protocol: a server built on
    /// the hub uses it to revoke access at an exact position in the log, on every node of a
    /// cluster at once. The subscribers see this update if they match it, and nothing after.
    pub closes: Vec<String>,
}

/// Why an update was refused before anything was stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUpdate {
    /// No topic at all.
    #[error("at least one topic is required")]
    NoTopic,
    /// Too many topics.
    #[error("too many topics: {count} (the limit is {limit})")]
    TooManyTopics {
        /// How many were given.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// One field is longer than its limit.
    #[error("invalid {field}: longer than {limit} bytes")]
    TooLong {
        /// The field's name as the publisher sent it.
        field: &'static str,
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// One field is empty or holds a character it cannot carry.
    #[error("invalid {field}: {reason}")]
    Field {
        /// The field's name as the publisher sent it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl InvalidUpdate {
    /// Whether the update is refused for its size (too many topics, a field too long)
    /// rather than for its content: an HTTP server answers 413 for these.
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            InvalidUpdate::TooManyTopics { .. } | InvalidUpdate::TooLong { .. }
        )
    }
}

impl Update {
    /// Checks the update against `limits` and the SSE framing rules.
    ///
    /// # Errors
    ///
    /// Returns the first problem found; a refused update must store nothing.
    pub fn validate(&self, limits: &UpdateLimits) -> Result<(), InvalidUpdate> {
        if self.topics.is_empty() {
            return Err(InvalidUpdate::NoTopic);
        }
        if self.topics.len() > limits.max_topics {
            return Err(InvalidUpdate::TooManyTopics {
                count: self.topics.len(),
                limit: limits.max_topics,
            });
        }
        if self.closes.len() > limits.max_topics {
            return Err(InvalidUpdate::TooManyTopics {
                count: self.closes.len(),
                limit: limits.max_topics,
            });
        }
        for topic in self.topics.iter().chain(&self.closes) {
            if topic.is_empty() {
                return Err(field("topic", "must not be empty"));
            }
            if topic.len() > limits.max_topic_len {
                return Err(InvalidUpdate::TooLong {
                    field: "topic",
                    limit: limits.max_topic_len,
                });
            }
        }
        if let Some(id) = &self.id {
            if id.is_empty() {
                return Err(field("id", "must not be empty"));
            }
            if id.len() > limits.max_id_len {
                return Err(InvalidUpdate::TooLong {
                    field: "id",
                    limit: limits.max_id_len,
                });
            }
            if id.contains(['\r', '\n', '\0']) {
                return Err(field("id", "must not contain CR, LF or NUL"));
            }
            if id == EARLIEST {
                return Err(field("id", "\"earliest\" is reserved"));
            }
        }
        if let Some(ty) = &self.event_type {
            if ty.len() > limits.max_type_len {
                return Err(InvalidUpdate::TooLong {
                    field: "type",
                    limit: limits.max_type_len,
                });
            }
            if ty.contains(['\r', '\n', '\0']) {
                return Err(field("type", "must not contain CR, LF or NUL"));
            }
        }
        Ok(())
    }
}

fn field(field: &'static str, reason: impl Into<String>) -> InvalidUpdate {
    InvalidUpdate::Field {
        field,
        reason: reason.into(),
    }
}

/// The `Last-Event-ID` value that asks for every retained update.
pub const EARLIEST: &str = "earliest";

/// Topics that begin with this are reserved for the server the hub runs in (Herald's app
/// puts its workspaces, users and sessions there).
///
/// An update on a reserved topic reaches only subscriptions made with
/// [`SubscribeRequest::reserved`](crate::SubscribeRequest::reserved), which a server sets
/// for the streams it builds itself, never for a client's own selectors: a `*` or URI
/// template selector, or a `mercure.subscribe` claim, however broad, never matches one. A
/// server must refuse client publishes to reserved topics; the hub stores whatever it is
/// given.
pub const RESERVED_PREFIX: &str = "herald:";

/// Whether `topic` is in the reserved namespace ([`RESERVED_PREFIX`]).
pub fn is_reserved(topic: &str) -> bool {
    topic.starts_with(RESERVED_PREFIX)
}

/// One update in the log: sequenced, encoded once, shared by every subscriber.
#[derive(Debug)]
pub struct Record {
    /// Position in the log; strictly increasing in publish order.
    pub seq: u64,
    /// The id subscribers see (`id:` field).
    pub id: Arc<str>,
    /// The update's topics.
    pub topics: Box<[Box<str>]>,
    /// Whether only authorized subscribers may receive it.
    pub private: bool,
    /// Whether a topic is reserved ([`is_reserved`]): then only reserved subscriptions may
    /// receive it, whatever their selectors.
    pub reserved: bool,
    /// Topics whose subscribers end after this update ([`Update::closes`]).
    pub closes: Box<[Box<str>]>,
    /// Unix time of the publish, in milliseconds.
    pub created_at_ms: i64,
    /// The complete SSE frame, encoded once.
    pub frame: Bytes,
}

impl Record {
    /// Builds a record, encoding its frame.
    pub fn new(seq: u64, id: Arc<str>, update: &Update, created_at_ms: i64) -> Self {
        let event = herald_sse::Event {
            id: Some(id.to_string()),
            event: update.event_type.clone(),
            data: update.data.clone(),
            retry: update.retry,
        };
        Self {
            seq,
            id,
            topics: update.topics.iter().map(|t| t.as_str().into()).collect(),
            private: update.private,
            reserved: update.topics.iter().any(|t| is_reserved(t)),
            closes: update.closes.iter().map(|t| t.as_str().into()).collect(),
            created_at_ms,
            frame: event.encode(),
        }
    }

    /// About how many bytes of memory the record holds: its frame, id and topics. What the
    /// history's byte bound counts.
    pub fn size(&self) -> usize {
        let topics: usize = self
            .topics
            .iter()
            .chain(&self.closes)
            .map(|t| t.len() + size_of::<Box<str>>())
            .sum();
        size_of::<Self>() + self.frame.len() + self.id.len() + topics
    }
}

/// Milliseconds since the Unix epoch, for `created_at`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> Update {
        Update {
            topics: vec!["a".into()],
            data: "x".into(),
            ..Update::default()
        }
    }

    #[test]
    fn validation_table() {
        let limits = UpdateLimits {
            max_topics: 2,
            ..UpdateLimits::default()
        };
        let cases: Vec<(Update, Option<&str>)> = vec![
            (update(), None),
            (
                Update {
                    topics: vec![],
                    ..update()
                },
                Some("at least one topic is required"),
            ),
            (
                Update {
                    topics: vec!["a".into(), "b".into(), "c".into()],
                    ..update()
                },
                Some("too many topics: 3 (the limit is 2)"),
            ),
            (
                Update {
                    topics: vec!["".into()],
                    ..update()
                },
                Some("invalid topic: must not be empty"),
            ),
            (
                Update {
                    id: Some("a\nb".into()),
                    ..update()
                },
                Some("invalid id: must not contain CR, LF or NUL"),
            ),
            (
                Update {
                    id: Some("earliest".into()),
                    ..update()
                },
                Some("invalid id: \"earliest\" is reserved"),
            ),
            (
                Update {
                    event_type: Some("a\rb".into()),
                    ..update()
                },
                Some("invalid type: must not contain CR, LF or NUL"),
            ),
            (
                Update {
                    id: Some("x".repeat(257)),
                    ..update()
                },
                Some("invalid id: longer than 256 bytes"),
            ),
        ];
        for (update, want) in cases {
            let got = update.validate(&limits).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), want, "{update:?}");
        }
    }
}
