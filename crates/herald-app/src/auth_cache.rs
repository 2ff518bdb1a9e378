//! The authentications [`crate::Accounts::authenticate`] made lately, reused for a second.
//!
//! Reading a session or token costs a database round trip per request, about as much CPU
//! as the rest of a small change. A burst of requests with one credential reads it once.
//!
//! What bounds a stale answer:
//! - Every change that can end an authentication (logout, a password change,
//!   deactivation, revocation) emits an update that ends the streams opened with it. The
//!   hub runs [`AuthCache::forget_all`] before fanning such an update out, whichever node
//!   or process made the change (`herald_hub::Hub::before_closing`), and the change's
//!   own node also runs it as soon as the change committed. So an ended credential is
//!   refused on the node that ended it once the change is answered, and on any node once
//!   the streams it opened there have ended.
//! - What a lookup read from the database before a `forget_all` is never used
//!   ([`AuthCache::generation`]).
//! - Anything else (a change whose update is late, or lost with a node) counts after at
//!   most [`TTL`]: an entry is reused for that long, and never past the session's or
//!   token's own expiry.
//! - What makes or replaces a credential (an API token, a password) does not rely on a
//!   reused answer: it reads the credential afresh (`App::require_alive`).
//!
//! Only successful authentications are kept, under the SHA-256 of the secret, and at most
//! [`MAX_ENTRIES`] of them: a full cache starts over.

use std::{
    collections::HashMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::policy::Actor;

/// How long an authentication is reused without reading the database again.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// The most authentications kept.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// What a credential was: sessions and API tokens are looked up in different tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Session,
    Token,
}

#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    /// Counts [`AuthCache::forget_all`] calls. An entry stored in an older generation is
    /// forgotten: forgetting is one increment, which the fan-out task can afford, and it
    /// never waits for the lock.
    generation: AtomicU64,
    entries: Mutex<Entries>,
}

/// Per kind: the secret's hash, its actor, the generation it was stored in, and until
/// when it is reused.
#[derive(Debug, Default)]
struct Entries {
    sessions: HashMap<String, Entry>,
    tokens: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    actor: Actor,
    generation: u64,
    until: Instant,
}

impl Entries {
    fn of(&mut self, kind: Kind) -> &mut HashMap<String, Entry> {
        match kind {
            Kind::Session => &mut self.sessions,
            Kind::Token => &mut self.tokens,
        }
    }

    fn len(&self) -> usize {
        self.sessions.len() + self.tokens.len()
    }
}

impl AuthCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The maps stay consistent whatever a panicking holder did: each change is one
        // insert or clear.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The actor `hash` authenticated as within [`TTL`] and since the last
    /// [`Self::forget_all`], if it is still valid at `now_secs` (Unix seconds).
    pub(crate) fn get(&self, kind: Kind, hash: &str, now_secs: i64) -> Option<Actor> {
        let generation = self.generation();
        let mut entries = self.entries();
        let entry = entries.of(kind).get(hash)?;
        let live = entry.generation == generation
            && Instant::now() < entry.until
            && entry.actor.expires_at.is_none_or(|at| at > now_secs);
        live.then(|| entry.actor.clone())
    }

    /// The generation a lookup starts in: pass it to [`Self::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps what a lookup that began in `generation` read. Had anything been forgotten
    /// since, the entry is never used ([`Self::get`] checks its generation).
    pub(crate) fn put(&self, kind: Kind, hash: String, actor: Actor, generation: u64) {
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        // Full: start over. Clearing costs one pass per `MAX_ENTRIES` stores, so a caller
        // with many credentials cannot make every store scan the cache.
        if entries.len() >= MAX_ENTRIES {
            entries.sessions.clear();
            entries.tokens.clear();
        }
        entries.of(kind).insert(
            hash,
            Entry {
                actor,
                generation,
                until: Instant::now() + TTL,
            },
        );
    }

    /// Forgets every authentication, including what lookups already under way will store.
    pub(crate) fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{User, UserRole};

    fn actor(expires_at: Option<i64>) -> Actor {
        Actor {
            user: User {
                id: "u".into(),
                email: "u@example.com".into(),
                name: "U".into(),
                role: UserRole::Member,
            },
            session: Some("h".into()),
            can_notify: false,
            token: None,
            expires_at,
        }
    }

    #[test]
    fn an_entry_is_reused_until_its_credential_expires() {
        let cache = AuthCache::default();
        let generation = cache.generation();
        cache.put(Kind::Session, "h".into(), actor(Some(100)), generation);
        assert!(cache.get(Kind::Session, "h", 99).is_some());
        assert!(cache.get(Kind::Session, "h", 100).is_none(), "expired");
        assert!(cache.get(Kind::Token, "h", 99).is_none(), "another table");
        assert!(cache.get(Kind::Session, "x", 99).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_is_reused_for_a_second_only() {
        let cache = AuthCache::default();
        cache.put(Kind::Token, "h".into(), actor(None), cache.generation());
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert!(cache.get(Kind::Token, "h", 0).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(cache.get(Kind::Token, "h", 0).is_none());
    }

    #[test]
    fn forgetting_drops_entries_and_lookups_under_way() {
        let cache = AuthCache::default();
        let before = cache.generation();
        cache.put(Kind::Session, "h".into(), actor(None), before);
        cache.forget_all();
        assert!(cache.get(Kind::Session, "h", 0).is_none());
        // What a lookup read from the database before the change is never used.
        cache.put(Kind::Session, "h".into(), actor(None), before);
        assert!(cache.get(Kind::Session, "h", 0).is_none());
        cache.put(Kind::Session, "h".into(), actor(None), cache.generation());
        assert!(cache.get(Kind::Session, "h", 0).is_some());
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let cache = AuthCache::default();
        for i in 0..MAX_ENTRIES + 5 {
            cache.put(Kind::Token, i.to_string(), actor(None), cache.generation());
        }
        let len = cache.entries().len();
        assert!(len <= MAX_ENTRIES, "{len}");
        assert!(
            cache
                .get(Kind::Token, &(MAX_ENTRIES + 4).to_string(), 0)
                .is_some()
        );
    }
}
