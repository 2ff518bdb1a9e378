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
//! - A lookup that read the database before a `forget_all` does not store what it read
//!   ([`AuthCache::generation`]).
//! - Anything else (a change whose update is late, or lost with a node) counts after at
//!   most [`TTL`]: an entry is reused for that long, and never past the session's or
//!   token's own expiry.
//!
//! Only successful authentications are kept, under the SHA-256 of the secret, and at most
//! [`MAX_ENTRIES`] of them: a full cache first drops what expired, and then everything.

use std::{collections::HashMap, sync::Mutex, time::Duration};

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
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Counts [`AuthCache::forget_all`] calls.
    generation: u64,
    /// Per kind: the secret's hash, its actor, and until when it is reused.
    sessions: HashMap<String, (Actor, Instant)>,
    tokens: HashMap<String, (Actor, Instant)>,
}

impl Inner {
    fn entries(&mut self, kind: Kind) -> &mut HashMap<String, (Actor, Instant)> {
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
    /// The actor `hash` authenticated as within [`TTL`], if it is still valid at `now_secs`
    /// (Unix seconds).
    pub(crate) fn get(&self, kind: Kind, hash: &str, now_secs: i64) -> Option<Actor> {
        let mut inner = self.inner.lock().expect("auth cache poisoned");
        let (actor, until) = inner.entries(kind).get(hash)?;
        let live = Instant::now() < *until && actor.expires_at.is_none_or(|at| at > now_secs);
        live.then(|| actor.clone())
    }

    /// The generation a lookup starts in: pass it to [`Self::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().expect("auth cache poisoned").generation
    }

    /// Keeps what a lookup that began in `generation` read, unless something was forgotten
    /// since.
    pub(crate) fn put(&self, kind: Kind, hash: String, actor: Actor, generation: u64) {
        let mut inner = self.inner.lock().expect("auth cache poisoned");
        if inner.generation != generation {
            return;
        }
        let now = Instant::now();
        if inner.len() >= MAX_ENTRIES {
            inner.sessions.retain(|_, (_, until)| *until > now);
            inner.tokens.retain(|_, (_, until)| *until > now);
            if inner.len() >= MAX_ENTRIES {
                inner.sessions.clear();
                inner.tokens.clear();
            }
        }
        inner.entries(kind).insert(hash, (actor, now + TTL));
    }

    /// Forgets every authentication, and keeps lookups already under way from storing
    /// theirs.
    pub(crate) fn forget_all(&self) {
        let mut inner = self.inner.lock().expect("auth cache poisoned");
        inner.generation += 1;
        inner.sessions.clear();
        inner.tokens.clear();
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
        // A lookup that read the database before the change does not store what it read.
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
        let len = cache.inner.lock().unwrap().len();
        assert!(len <= MAX_ENTRIES, "{len}");
        assert!(
            cache
                .get(Kind::Token, &(MAX_ENTRIES + 4).to_string(), 0)
                .is_some()
        );
    }
}
