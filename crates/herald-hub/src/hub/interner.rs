//! Interning subscribers' selectors and claim sets, within the selector budgets.
//!
//! Equal selectors share one [`Compiled`] (one regex, one memo slot during fan-out) and equal
//! claim sets one [`ClaimSet`]. Each distinct template is charged once to the hub's total
//! ([`HubConfig::selector_budget_total`](super::HubConfig::selector_budget_total)) while any
//! subscriber holds it, and every subscription pays for all of its own
//! ([`HubConfig::selector_budget`](super::HubConfig::selector_budget)). Templates are priced
//! before they are compiled, and compiled outside every lock.

use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicUsize, Ordering},
    },
};

use super::{Hub, Shared, SubscribeError};
use crate::{
    matcher::{MatchKind, Matcher},
    selector::Selector,
    subscriber::ClaimSet,
};

#[derive(Debug, Default)]
pub(super) struct Interner {
    selectors: HashMap<Key, Weak<Compiled>>,
    claims: HashMap<Box<[Key]>, Weak<ClaimSet>>,
}

/// A selector as the hub holds it: interned, with its compiled cost charged to the hub's
/// budget for as long as any subscriber holds it.
/// What a compiled selector is interned by: its kind and its text.
type Key = (MatchKind, Box<str>);

fn key_of(matcher: &Matcher) -> Key {
    (matcher.kind, matcher.source.as_str().into())
}

#[derive(Debug)]
pub(crate) struct Compiled {
    selector: Selector,
    /// What it was charged ([`Selector::cost`]); given back when the last holder drops it.
    charged: usize,
    budget: Arc<AtomicUsize>,
}

impl std::ops::Deref for Compiled {
    type Target = Selector;

    fn deref(&self) -> &Selector {
        &self.selector
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.charged, Ordering::Relaxed);
    }
}

/// Templates compiled at the same time, by all subscribers together. Compiling is CPU work
/// that subscribers cause; one at a time leaves the runtime's workers the other cores.
pub(super) const COMPILE_CONCURRENCY: usize = 1;

/// Interned entries are weak; sweep the dead ones when the map doubles past this.
const INTERNER_SWEEP_MIN: usize = 1024;

impl Hub {
    /// Interns `sources`, compiling those not interned yet outside every lock, and adds
    /// their cost to `spent`, which must stay within [`HubConfig::selector_budget`].
    pub(super) async fn intern_all(
        &self,
        sources: &[Matcher],
        spent: &mut usize,
    ) -> Result<Box<[Arc<Compiled>]>, SubscribeError> {
        let config = &self.shared.config;
        let mut found: Vec<Option<Arc<Compiled>>> = {
            let interner = self.shared.interner.lock().expect("interner poisoned");
            sources
                .iter()
                .map(|source| {
                    interner
                        .selectors
                        .get(&key_of(source))
                        .and_then(Weak::upgrade)
                })
                .collect()
        };
        for compiled in found.iter().flatten() {
            *spent += compiled.charged;
        }
        if *spent > config.selector_budget {
            return Err(SubscribeError::OverBudget {
                limit: config.selector_budget,
            });
        }
        // What is missing is priced first, which costs microseconds, so a subscription over
        // its budget is refused before anything is compiled.
        let mut first_of: HashMap<&Matcher, usize> = HashMap::new();
        for (index, source) in sources.iter().enumerate() {
            if found[index].is_some() || first_of.contains_key(source) {
                continue;
            }
            first_of.insert(source, index);
            *spent += source.cost_in(&config.base_url).map_err(|error| {
                SubscribeError::InvalidSelector {
                    selector: source.source.clone(),
                    error,
                }
            })?;
            // Stop at the first matcher over the budget: pricing the rest is work for a
            // request that is refused anyway.
            if *spent > config.selector_budget {
                break;
            }
        }
        if *spent > config.selector_budget {
            return Err(SubscribeError::OverBudget {
                limit: config.selector_budget,
            });
        }
        let mut fresh = Vec::with_capacity(first_of.len());
        for &index in first_of.values() {
            let source = &sources[index];
            let parsed = if source.needs_compiling() {
                // A template: compiling one can take tens of milliseconds. It runs on the
                // blocking pool, so no runtime worker waits for it, one at a time, so that
                // however many subscribers compile at once the workers keep a core. The
                // compile holds the permit itself: a client that gives up while it runs
                // cannot start another beside it.
                let permit = self
                    .shared
                    .compile_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the compile semaphore is never closed");
                let owned = source.clone();
                let hub_url = config.base_url.clone();
                tokio::task::spawn_blocking(move || {
                    let parsed = owned.compile_in(&hub_url);
                    drop(permit);
                    parsed
                })
                .await
                .expect("compiling a selector does not panic")
            } else {
                source.compile_in(&config.base_url)
            };
            let selector = parsed.map_err(|error| SubscribeError::InvalidSelector {
                selector: source.source.clone(),
                error,
            })?;
            fresh.push((index, selector));
        }
        if !fresh.is_empty() {
            let mut interner = self.shared.interner.lock().expect("interner poisoned");
            for (index, selector) in fresh {
                found[index] =
                    Some(interner.insert(selector, sources[index].kind, &self.shared)?);
            }
        }
        Ok((0..sources.len())
            .map(|index| {
                let first = first_of.get(&sources[index]).copied();
                found[index]
                    .clone()
                    .or_else(|| first.and_then(|first| found[first].clone()))
                    .expect("every distinct source was interned")
            })
            .collect())
    }

    pub(super) async fn intern_claims(
        &self,
        sources: Vec<Matcher>,
        spent: &mut usize,
    ) -> Result<Arc<ClaimSet>, SubscribeError> {
        let key: Box<[Key]> = sources.iter().map(key_of).collect();
        let existing = self
            .shared
            .interner
            .lock()
            .expect("interner poisoned")
            .claims
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(set) = existing {
            *spent += set.selectors.iter().map(|c| c.charged).sum::<usize>();
            if *spent > self.shared.config.selector_budget {
                return Err(SubscribeError::OverBudget {
                    limit: self.shared.config.selector_budget,
                });
            }
            return Ok(set);
        }
        let selectors = self.intern_all(&sources, spent).await?;
        let set = Arc::new(ClaimSet { selectors });
        let mut interner = self.shared.interner.lock().expect("interner poisoned");
        if let Some(set) = interner.claims.get(&key).and_then(Weak::upgrade) {
            return Ok(set);
        }
        if interner.claims.len() >= INTERNER_SWEEP_MIN {
            interner.claims.retain(|_, weak| weak.strong_count() > 0);
        }
        interner.claims.insert(key, Arc::downgrade(&set));
        Ok(set)
    }
}

impl Interner {
    /// Interns a freshly compiled selector, unless an equal one was interned meanwhile (then
    /// that one is shared and this one dropped), charging its cost to the hub's budget.
    fn insert(
        &mut self,
        selector: Selector,
        kind: MatchKind,
        shared: &Shared,
    ) -> Result<Arc<Compiled>, SubscribeError> {
        if let Some(compiled) = self
            .selectors
            .get(&(kind, selector.as_str().into()))
            .and_then(Weak::upgrade)
        {
            return Ok(compiled);
        }
        let cost = selector.cost();
        let budget = &shared.selector_bytes;
        // Under the interner's lock, the only place that adds: no charge can race this one.
        if budget.load(Ordering::Relaxed) + cost > shared.config.selector_budget_total {
            return Err(SubscribeError::SelectorsFull);
        }
        budget.fetch_add(cost, Ordering::Relaxed);
        let compiled = Arc::new(Compiled {
            selector,
            charged: cost,
            budget: budget.clone(),
        });
        if self.selectors.len() >= INTERNER_SWEEP_MIN && self.selectors.len().is_power_of_two() {
            self.selectors.retain(|_, weak| weak.strong_count() > 0);
        }
        self.selectors
            .insert((kind, compiled.as_str().into()), Arc::downgrade(&compiled));
        Ok(compiled)
    }
}
