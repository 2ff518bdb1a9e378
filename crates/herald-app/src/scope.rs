//! What a change may touch ([`Scope`]): the keys that order it with other changes, and how
//! outbox rows are found by the keys they share ([`shares_keys`]).

/// What a change may touch, for ordering: its events are ordered with those of every
/// other change that shares a key. Declared before the change starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    /// `ws:<id>` and `user:<id>` keys, sorted, without repeats.
    keys: Vec<String>,
}

impl Scope {
    /// A change within workspace `ws`.
    pub(crate) fn workspace(ws: &str) -> Self {
        Self::default().and_workspace(ws)
    }

    /// A change that concerns user `id`'s own topics.
    pub(crate) fn user(id: &str) -> Self {
        Self::default().and_user(id)
    }

    /// This scope and workspace `ws`.
    pub(crate) fn and_workspace(self, ws: &str) -> Self {
        self.and(format!("ws:{ws}"))
    }

    /// This scope and user `id`.
    pub(crate) fn and_user(self, id: &str) -> Self {
        self.and(format!("user:{id}"))
    }

    fn and(mut self, key: String) -> Self {
        if let Err(at) = self.keys.binary_search(&key) {
            self.keys.insert(at, key);
        }
        self
    }

    /// The keys, sorted.
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The scope as the outbox stores it (column `scope`): its keys, each followed and
    /// preceded by a space, so that `scope LIKE '% <key> %'` finds a key; `''` for none.
    /// Keys hold no spaces (they are made of ids).
    pub(crate) fn stored(&self) -> String {
        if self.keys.is_empty() {
            String::new()
        } else {
            format!(" {} ", self.keys.join(" "))
        }
    }

    /// The scope an outbox row stores.
    pub(crate) fn from_stored(stored: &str) -> Self {
        stored
            .split(' ')
            .filter(|key| !key.is_empty())
            .fold(Self::default(), |scope, key| scope.and(key.to_owned()))
    }

    /// This scope and every key of `other`.
    pub(crate) fn union(self, other: &Self) -> Self {
        other
            .keys
            .iter()
            .fold(self, |scope, key| scope.and(key.clone()))
    }
}

/// The SQL condition, on the outbox's `scope` column, of the rows that share a key with
/// `keys`, with the values to bind from `$first` on: those with any of the keys, and those
/// with none (stored by a version that did not record scopes), which go before any change.
/// `everything` (SQLite's one writer) matches every row.
pub(crate) fn shares_keys(
    keys: &[String],
    everything: bool,
    first: usize,
) -> (String, Vec<String>) {
    if everything {
        return ("1 = 1".to_owned(), Vec::new());
    }
    let mut condition = "(scope = ''".to_owned();
    let mut binds = Vec::with_capacity(keys.len());
    for (n, key) in keys.iter().enumerate() {
        use std::fmt::Write as _;
        let _ = write!(condition, " OR scope LIKE ${} ESCAPE '\\'", first + n);
        let escaped = key
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        binds.push(format!("% {escaped} %"));
    }
    condition.push(')');
    (condition, binds)
}
