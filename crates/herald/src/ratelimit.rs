//! Rate limits: [`RateLimiter`], a keyed token bucket with bounded memory, and [`Rate`], how
//! a flag states one (`10/1m`: a burst of 10, refilled evenly over a minute; `0`: off).
//!
//! # The algorithm
//!
//! Each key has a bucket of `burst` tokens that refills one token every `period / burst`.
//! A request takes one token or is refused with the time until the next one. The bucket is
//! kept as GCRA keeps it: one instant per key, the "theoretical arrival time" (`tat`) at
//! which the bucket is full again. A key whose `tat` has passed holds a full bucket, exactly
//! like a key never seen, so forgetting it loses nothing: that is how memory stays bounded.
//!
//! # Memory
//!
//! A limiter holds at most [`MAX_KEYS`] keys, 16 bytes each (a 64-bit hash of the key and
//! the `tat`). When it is full, keys whose bucket is full again are dropped first (losslessly);
//! if most keys are still active, the half closest to full is dropped too, so a flood of
//! distinct keys (addresses, emails, tokens) costs a bounded amount of memory and, at
//! worst, makes the limiter forget the least-limited keys. Keys are hashed with a random
//! key per process, so nobody can pick keys that collide.
//!
//! # Logins
//!
//! [`LoginLimits`] combines three limiters so that a guesser is slowed down without locking
//! out the account's owner:
//!
//! - **per client address** (`--login-ip-rate`, default `20/1m`): every attempt counts,
//!   whatever the account. IPv6 addresses count per /64, the block one subscriber usually
//!   gets.
//! - **per account and address** (`--login-failure-rate`, default `5/2m30s`): only failed
//!   attempts count (a token is taken before the password is checked and given back when it
//!   was right), so the owner, who types the right password, never runs it down. After 5
//!   failures one more try every 30 s. It limits the guesser's address, not the owner's.
//! - **per account, all addresses** (`--login-account-rate`, default `20/2m`): failures
//!   again, from anywhere: it caps guessing from many addresses at one account to a burst
//!   of 20, then one every 6 s. A single address can never drain it (the limit above stops
//!   it after 5 failures), so a lone attacker locks nobody out; an attacker with many
//!   addresses who keeps it drained makes the owner wait for the next token, seconds
//!   (`Retry-After` says how many), and only while the attack goes on.
//!
//! Tokens are taken *before* the password is hashed, so a refused attempt costs no argon2.
//! A login that succeeds gives back its account tokens; its address token stays taken.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    net::IpAddr,
    str::FromStr,
    sync::Mutex,
    time::Duration,
};

use tokio::time::Instant;

use crate::config::Rates;

/// Keys one limiter remembers at most. 16 bytes each plus the map's overhead: about 2 MiB
/// per limiter when full, whatever a flood of distinct keys does.
pub const MAX_KEYS: usize = 65_536;

/// A rate as flags state it: `BURST/PERIOD`, e.g. `10/1m` or `5/2m30s`: at most `BURST`
/// requests at once, refilled one by one over `PERIOD`. `0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once; 0 means no limit.
    pub burst: u32,
    /// Time to refill a whole burst.
    pub period: Duration,
}

impl Rate {
    /// No limit.
    pub const OFF: Self = Self {
        burst: 0,
        period: Duration::ZERO,
    };

    /// Whether this rate limits anything.
    pub fn is_off(&self) -> bool {
        self.burst == 0
    }

    /// The time between two refilled tokens.
    fn interval(&self) -> Duration {
        self.period / self.burst.max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" || text == "off" {
            return Ok(Self::OFF);
        }
        let usage = || format!("{text:?} is not a rate like 10/1m (BURST/PERIOD) or 0 (off)");
        let (burst, period) = text.split_once('/').ok_or_else(usage)?;
        let burst: u32 = burst.trim().parse().map_err(|_| usage())?;
        let period = humantime::parse_duration(period.trim()).map_err(|_| usage())?;
        if burst == 0 {
            return Ok(Self::OFF);
        }
        if period.is_zero() || period / burst < Duration::from_micros(1) {
            return Err(format!(
                "{text:?}: the period must leave at least 1µs per request"
            ));
        }
        Ok(Self { burst, period })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_off() {
            return f.write_str("0");
        }
        write!(
            f,
            "{}/{}",
            self.burst,
            humantime::format_duration(self.period)
        )
    }
}

/// A refusal: how long until the key may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until the next token.
    pub retry_after: Duration,
}

impl Limited {
    /// [`Limited::retry_after`] in whole seconds, rounded up, at least 1: the value of a
    /// `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        };
        rounded.max(1)
    }
}

/// A token bucket per key, with bounded memory (see the module documentation).
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    /// `period / burst`, in nanoseconds.
    interval: u64,
    /// How far ahead of now a bucket's `tat` may be and still allow a request: the time
    /// `burst - 1` refills take.
    tolerance: u64,
    /// Each bucket's `tat`.
    buckets: Stamps,
}

/// Times in nanoseconds by key hash, with the clock they count from and the hasher (a random
/// key per process) of their keys. A std mutex: it is held for one map operation and never
/// across an `.await`.
#[derive(Debug)]
struct Stamps {
    epoch: Instant,
    hasher: RandomState,
    map: Mutex<HashMap<u64, u64>>,
}

impl Stamps {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            map: Mutex::default(),
        }
    }

    fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Nanoseconds since the epoch.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.map.lock().expect("rate limiter poisoned")
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl RateLimiter {
    /// A limiter of `rate`; one that is off allows everything and holds nothing.
    pub fn new(rate: Rate) -> Self {
        let interval = u64::try_from(rate.interval().as_nanos()).unwrap_or(u64::MAX);
        Self {
            rate,
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst.saturating_sub(1))),
            buckets: Stamps::new(),
        }
    }

    /// The rate this limiter enforces.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one token from `key`'s bucket.
    ///
    /// # Errors
    ///
    /// [`Limited`] when the bucket is empty; nothing is taken then.
    pub fn take<K: Hash + ?Sized>(&self, key: &K) -> Result<(), Limited> {
        if self.rate.is_off() {
            return Ok(());
        }
        self.take_at(key, self.buckets.now())
    }

    /// Takes `count` tokens from `key`'s bucket at once, or none. A `count` over the burst
    /// takes the whole burst (a full bucket is the most one request can ever find), so such a
    /// request is admitted at most once per refill.
    ///
    /// # Errors
    ///
    /// [`Limited`] when the bucket holds fewer tokens; nothing is taken then.
    pub fn take_n<K: Hash + ?Sized>(&self, key: &K, count: u32) -> Result<(), Limited> {
        if self.rate.is_off() || count == 0 {
            return Ok(());
        }
        self.take_n_at(key, count.min(self.rate.burst), self.buckets.now())
    }

    /// [`RateLimiter::take`] at `now` (nanoseconds since the limiter's epoch).
    fn take_at<K: Hash + ?Sized>(&self, key: &K, now: u64) -> Result<(), Limited> {
        self.take_n_at(key, 1, now)
    }

    /// [`RateLimiter::take_n`] at `now`; `count` is at least 1 and at most the burst.
    fn take_n_at<K: Hash + ?Sized>(&self, key: &K, count: u32, now: u64) -> Result<(), Limited> {
        let hash = self.buckets.hash(key);
        let mut buckets = self.buckets.lock();
        let tat = buckets.get(&hash).copied().unwrap_or(now).max(now);
        // The last of the `count` tokens must be within the tolerance, as one token must.
        let extra = self.interval.saturating_mul(u64::from(count - 1));
        let last = tat.saturating_add(extra);
        if last - now > self.tolerance {
            return Err(Limited {
                retry_after: Duration::from_nanos(last - now - self.tolerance),
            });
        }
        if !buckets.contains_key(&hash) && buckets.len() >= MAX_KEYS {
            evict(&mut buckets, now);
        }
        buckets.insert(hash, last.saturating_add(self.interval));
        Ok(())
    }

    /// Gives back a token [`RateLimiter::take`] took from `key` (say, for an attempt that
    /// turned out not to count).
    pub fn give_back<K: Hash + ?Sized>(&self, key: &K) {
        if self.rate.is_off() {
            return;
        }
        self.give_back_at(key, self.buckets.now());
    }

    /// [`RateLimiter::give_back`] at `now` (nanoseconds since the limiter's epoch).
    fn give_back_at<K: Hash + ?Sized>(&self, key: &K, now: u64) {
        let hash = self.buckets.hash(key);
        let mut buckets = self.buckets.lock();
        if let Some(tat) = buckets.get_mut(&hash) {
            *tat = tat.saturating_sub(self.interval);
            if *tat <= now {
                // Full again: the same as never seen.
                buckets.remove(&hash);
            }
        }
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room in a full map: drops every full bucket (lossless), then, if more than three
/// quarters of [`MAX_KEYS`] are still active, the half of them closest to full, so the next
/// eviction is many insertions away.
fn evict(buckets: &mut HashMap<u64, u64>, now: u64) {
    buckets.retain(|_, tat| *tat > now);
    if buckets.len() > MAX_KEYS / 4 * 3 {
        let mut tats: Vec<u64> = buckets.values().copied().collect();
        let middle = tats.len() / 2;
        let (_, threshold, _) = tats.select_nth_unstable(middle);
        let threshold = *threshold;
        buckets.retain(|_, tat| *tat > threshold);
    }
}

/// The key that stands for a client address: IPv4 as it is, IPv6 by its /64 (one
/// subscriber's block, which they can fill with addresses at will); IPv4-mapped IPv6 as
/// IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Every rate limit of the server, built from the flags.
#[derive(Debug)]
pub struct RateLimits {
    /// Login attempts.
    pub login: LoginLimits,
    /// App changes per user (`--app-change-rate`).
    pub user_changes: RateLimiter,
    /// App changes per workspace, all members together (`--workspace-change-rate`).
    pub workspace_changes: RateLimiter,
    /// Publishes per publisher: the JWT's subject, else the token (`--publish-rate`).
    pub publishes: RateLimiter,
    /// Announced Mercure subscriptions (one token per matcher) per client address
    /// (`--subscription-event-rate`).
    pub announcements: RateLimiter,
    /// App presence announcements (one token per workspace a stream joins) per user
    /// (`--presence-rate`).
    pub presence: RateLimiter,
    /// Who was lately found able to read a workspace, for `workspace_changes`.
    pub workspace_readers: RecentReaders,
}

impl RateLimits {
    /// The limits `rates` states.
    pub fn new(rates: &Rates) -> Self {
        Self {
            login: LoginLimits::new(rates.login_ip, rates.login_failure, rates.login_account),
            user_changes: RateLimiter::new(rates.app_change),
            workspace_changes: RateLimiter::new(rates.workspace_change),
            publishes: RateLimiter::new(rates.publish),
            announcements: RateLimiter::new(rates.subscription_events),
            presence: RateLimiter::new(rates.presence),
            workspace_readers: RecentReaders::new(READER_TTL),
        }
    }
}

/// When a [`RecentReaders`] entry was seen, from [`RecentReaders::stamp`].
#[derive(Debug, Clone, Copy)]
pub struct Stamp(u64);

/// How long a user found able to read a workspace is taken to still be able to, when
/// charging a change to the workspace's budget.
pub const READER_TTL: Duration = Duration::from_secs(1);

/// The users lately found able to read a workspace, so that charging each change to its
/// workspace's budget (`--workspace-change-rate`, which only those who may read the
/// workspace spend) reads the database once per [`READER_TTL`], user and workspace, not
/// once per change. Only the budget trusts it: every change checks access again, in its own
/// transaction. So for at most the TTL after losing access, a user's refused changes may
/// still spend the workspace's budget.
///
/// Bounded as a [`RateLimiter`] is: at most [`MAX_KEYS`] entries of 16 bytes (a hash of the
/// user and workspace ids, with a random key per process, and when it was seen). When full,
/// the expired go, and if most are still fresh, all of them: they are read again.
#[derive(Debug)]
pub struct RecentReaders {
    /// The TTL, in nanoseconds.
    ttl: u64,
    /// When each reader was seen, by hash of (user, workspace).
    seen: Stamps,
}

impl RecentReaders {
    /// An empty set whose entries last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
            seen: Stamps::new(),
        }
    }

    /// Whether `user` was found able to read `workspace` within the TTL.
    pub fn contains(&self, user: &str, workspace: &str) -> bool {
        let hash = self.seen.hash(&(user, workspace));
        let now = self.seen.now();
        let seen = self.seen.lock();
        // Another thread may have stored a later time since `now` was read.
        seen.get(&hash)
            .is_some_and(|at| now.saturating_sub(*at) < self.ttl)
    }

    /// The time to note a reader at: taken before its access is read, so that an entry
    /// never outlives the TTL counted from the read.
    pub fn stamp(&self) -> Stamp {
        Stamp(self.seen.now())
    }

    /// Notes that `user` was found able to read `workspace` by a read begun at `stamp`.
    pub fn insert(&self, user: &str, workspace: &str, stamp: Stamp) {
        let hash = self.seen.hash(&(user, workspace));
        let now = self.seen.now();
        let mut seen = self.seen.lock();
        if !seen.contains_key(&hash) && seen.len() >= MAX_KEYS {
            seen.retain(|_, at| now.saturating_sub(*at) < self.ttl);
            if seen.len() > MAX_KEYS / 4 * 3 {
                seen.clear();
            }
        }
        let at = seen.entry(hash).or_insert(stamp.0);
        *at = (*at).max(stamp.0);
    }

    /// Entries held now, the expired included until they are made room for.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The three login limits (see the module documentation).
#[derive(Debug)]
pub struct LoginLimits {
    /// Every attempt, per client address.
    pub per_ip: RateLimiter,
    /// Failed attempts, per account and client address.
    pub per_account_ip: RateLimiter,
    /// Failed attempts, per account.
    pub per_account: RateLimiter,
}

/// Which login limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginLimit {
    /// Too many attempts from this address.
    Ip,
    /// Too many failures for this account from this address.
    AccountIp,
    /// Too many failures for this account.
    Account,
}

/// An admitted login attempt: its account tokens, to give back when it succeeds.
#[derive(Debug)]
#[must_use = "say how the attempt ended: LoginAttempt::succeeded or LoginAttempt::failed"]
pub struct LoginAttempt<'a> {
    limits: &'a LoginLimits,
    ip: IpAddr,
    account: String,
}

impl LoginLimits {
    /// Limits of these rates.
    pub fn new(per_ip: Rate, per_account_ip: Rate, per_account: Rate) -> Self {
        Self {
            per_ip: RateLimiter::new(per_ip),
            per_account_ip: RateLimiter::new(per_account_ip),
            per_account: RateLimiter::new(per_account),
        }
    }

    /// Admits one attempt at `account` (the normalized email) from `ip`, counting it as a
    /// failure until [`LoginAttempt::succeeded`] says otherwise.
    ///
    /// # Errors
    ///
    /// The limit that refused it and when to come back. A refused attempt still counts
    /// against its address.
    pub fn admit(
        &self,
        ip: IpAddr,
        account: &str,
    ) -> Result<LoginAttempt<'_>, (LoginLimit, Limited)> {
        let ip = client_key(ip);
        self.per_ip.take(&ip).map_err(|l| (LoginLimit::Ip, l))?;
        self.per_account_ip
            .take(&(account, ip))
            .map_err(|l| (LoginLimit::AccountIp, l))?;
        if let Err(limited) = self.per_account.take(account) {
            self.per_account_ip.give_back(&(account, ip));
            return Err((LoginLimit::Account, limited));
        }
        Ok(LoginAttempt {
            limits: self,
            ip,
            account: account.to_owned(),
        })
    }
}

impl LoginAttempt<'_> {
    /// The password was wrong: the attempt stays counted.
    pub fn failed(self) {}

    /// The password was right (or the attempt failed for another reason than a wrong
    /// password): its account tokens go back.
    pub fn succeeded(self) {
        let account = self.account.as_str();
        self.limits.per_account_ip.give_back(&(account, self.ip));
        self.limits.per_account.give_back(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reader_is_remembered_for_the_ttl_per_user_and_workspace() {
        let readers = RecentReaders::new(Duration::from_secs(1));
        assert!(!readers.contains("u1", "w1"));
        readers.insert("u1", "w1", readers.stamp());
        assert!(readers.contains("u1", "w1"));
        // Neither another user of the workspace nor the user in another workspace.
        assert!(!readers.contains("u2", "w1"));
        assert!(!readers.contains("u1", "w2"));
        // The pair's parts are not run together: ("u1w", "1") is another pair.
        assert!(!readers.contains("u1w", "1"));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(readers.contains("u1", "w1"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!readers.contains("u1", "w1"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_counts_from_the_read_and_an_older_read_does_not_shorten_it() {
        let readers = RecentReaders::new(Duration::from_secs(1));
        let early = readers.stamp();
        // The read took 600 ms: the entry has 400 ms left.
        tokio::time::advance(Duration::from_millis(600)).await;
        readers.insert("u", "w", early);
        let late = readers.stamp();
        readers.insert("u", "w", late);
        // A read begun earlier that ends last keeps the later time.
        readers.insert("u", "w", early);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(readers.contains("u", "w"));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!readers.contains("u", "w"));
    }

    #[tokio::test(start_paused = true)]
    async fn recent_readers_stay_bounded_and_keep_fresh_entries_over_expired_ones() {
        let readers = RecentReaders::new(Duration::from_secs(60));
        for n in 0..MAX_KEYS - 1 {
            readers.insert(&n.to_string(), "w", readers.stamp());
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        readers.insert("fresh", "w", readers.stamp());
        assert_eq!(readers.len(), MAX_KEYS);
        // Full: the expired make room, losslessly; the fresh one stays.
        tokio::time::advance(Duration::from_secs(30)).await;
        readers.insert("new", "w", readers.stamp());
        assert_eq!(readers.len(), 2);
        assert!(readers.contains("fresh", "w") && readers.contains("new", "w"));
        // Full of fresh entries: all go (they are read again), the newest stays.
        for n in 0..MAX_KEYS * 2 {
            readers.insert(&n.to_string(), "w", readers.stamp());
        }
        assert!(readers.len() <= MAX_KEYS, "{} entries", readers.len());
        assert!(readers.contains(&(MAX_KEYS * 2 - 1).to_string(), "w"));
    }

    fn rate(text: &str) -> Rate {
        text.parse().unwrap()
    }

    /// `secs` seconds after a limiter's epoch, as [`RateLimiter::take_at`] counts.
    fn at(secs: f64) -> u64 {
        Duration::from_secs_f64(secs).as_nanos() as u64
    }

    #[test]
    fn rates_parse() {
        let check = |text: &str, expect: Result<(u32, u64), ()>| {
            let got = text
                .parse::<Rate>()
                .map(|r| (r.burst, r.period.as_secs()))
                .map_err(|_| ());
            assert_eq!(got, expect, "{text:?}");
        };
        check("10/1m", Ok((10, 60)));
        check("5/2m30s", Ok((5, 150)));
        check(" 20 / 1s ", Ok((20, 1)));
        check("0", Ok((0, 0)));
        check("off", Ok((0, 0)));
        check("0/1s", Ok((0, 0)));
        check("10", Err(()));
        check("10/", Err(()));
        check("x/1s", Err(()));
        check("-1/1s", Err(()));
        check("10/0s", Err(()));
        check("10/soon", Err(()));
        assert_eq!(rate("5/2m30s").to_string(), "5/2m 30s");
        assert_eq!(Rate::OFF.to_string(), "0");
    }

    #[test]
    fn bursts_then_refills_evenly() {
        let limiter = RateLimiter::new(rate("3/3s"));
        for _ in 0..3 {
            limiter.take_at("a", at(0.0)).unwrap();
        }
        let limited = limiter.take_at("a", at(0.0)).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_secs(1));
        assert_eq!(limited.retry_after_secs(), 1);
        // Another key has its own bucket.
        limiter.take_at("b", at(0.0)).unwrap();
        let limited = limiter.take_at("a", at(0.4)).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_millis(600));
        assert_eq!(limited.retry_after_secs(), 1);
        limiter.take_at("a", at(1.0)).unwrap();
        limiter.take_at("a", at(1.0)).unwrap_err();
        // A long pause refills the whole burst, never more.
        for _ in 0..3 {
            limiter.take_at("a", at(60.0)).unwrap();
        }
        limiter.take_at("a", at(60.0)).unwrap_err();
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_refills_the_bucket() {
        let limiter = RateLimiter::new(rate("2/2s"));
        limiter.take("a").unwrap();
        limiter.take("a").unwrap();
        assert_eq!(
            limiter.take("a").unwrap_err().retry_after,
            Duration::from_secs(1)
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(
            limiter.take("a").unwrap_err().retry_after,
            Duration::from_millis(1)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        limiter.take("a").unwrap();
        limiter.take("a").unwrap_err();
        limiter.give_back("a");
        limiter.take("a").unwrap();
    }

    #[test]
    fn many_tokens_at_once_or_none() {
        let limiter = RateLimiter::new(rate("4/4s"));
        limiter.take_n_at("a", 3, at(0.0)).unwrap();
        // One token left: two at once are refused, and nothing is taken.
        let limited = limiter.take_n_at("a", 2, at(0.0)).unwrap_err();
        assert_eq!(limited.retry_after, Duration::from_secs(1));
        limiter.take_at("a", at(0.0)).unwrap();
        assert!(limiter.take_at("a", at(0.0)).is_err());
        // More than the burst costs the whole burst.
        limiter.take_n("b", 100).unwrap();
        assert!(limiter.take("b").is_err());
    }

    #[test]
    fn given_back_tokens_count_again() {
        let limiter = RateLimiter::new(rate("2/20s"));
        for _ in 0..10 {
            limiter.take_at("a", at(0.0)).unwrap();
            limiter.give_back_at("a", at(0.0));
        }
        assert!(limiter.is_empty(), "a full bucket is forgotten");
        limiter.take_at("a", at(0.0)).unwrap();
        limiter.take_at("a", at(0.0)).unwrap();
        assert_eq!(
            limiter.take_at("a", at(0.0)).unwrap_err().retry_after,
            Duration::from_secs(10)
        );
        limiter.give_back_at("a", at(0.0));
        limiter.take_at("a", at(0.0)).unwrap();
    }

    #[test]
    fn off_allows_everything_and_keeps_nothing() {
        let limiter = RateLimiter::new(Rate::OFF);
        for i in 0..1000 {
            limiter.take(&i).unwrap();
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_keys() {
        let limiter = RateLimiter::new(rate("1/1h"));
        let keys = MAX_KEYS as u64 * 3;
        for key in 0..keys {
            // Keys arrive over time (a millisecond per thousand): the newest are the
            // furthest from full.
            limiter.take_at(&key, key / 1000 * 1_000_000).unwrap();
        }
        assert!(limiter.len() <= MAX_KEYS, "{} keys", limiter.len());
        // The newest keys are still limited.
        limiter
            .take_at(&(keys - 1), keys / 1000 * 1_000_000)
            .unwrap_err();

        // Idle keys go first, and losslessly.
        let limiter = RateLimiter::new(rate("1/1s"));
        for key in 0..(MAX_KEYS as u64) {
            limiter.take_at(&key, at(0.0)).unwrap();
        }
        limiter.take_at(&u64::MAX, at(2.0)).unwrap();
        assert_eq!(limiter.len(), 1, "every full bucket was dropped");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let key = |ip: &str| client_key(ip.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn logins_count_failures_per_account_and_address() {
        let limits = LoginLimits::new(rate("100/1s"), rate("2/200s"), rate("3/300s"));
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        // Successes never count.
        for _ in 0..10 {
            limits.admit(a, "x@example.com").unwrap().succeeded();
        }
        // Two failures from `a`: `a` must wait, `b` may still try.
        limits.admit(a, "x@example.com").unwrap().failed();
        limits.admit(a, "x@example.com").unwrap().failed();
        let (which, limited) = limits.admit(a, "x@example.com").unwrap_err();
        assert_eq!(which, LoginLimit::AccountIp);
        assert_eq!(limited.retry_after_secs(), 100);
        // Another account from `a` is not affected.
        limits.admit(a, "y@example.com").unwrap().succeeded();
        // One failure from `b` drains the account's 3; `c` now waits for the next token.
        limits.admit(b, "x@example.com").unwrap().failed();
        let (which, limited) = limits.admit(c, "x@example.com").unwrap_err();
        assert_eq!(which, LoginLimit::Account);
        assert_eq!(limited.retry_after_secs(), 100);
        // A refusal by the account limit takes nothing from the address's own budget: once
        // the account has a token again, `c` may fail twice.
        limits.per_account.give_back("x@example.com");
        limits.per_account.give_back("x@example.com");
        limits.admit(c, "x@example.com").unwrap().failed();
        limits.admit(c, "x@example.com").unwrap().failed();
    }

    #[test]
    fn logins_count_every_attempt_per_address() {
        let limits = LoginLimits::new(rate("3/300s"), Rate::OFF, Rate::OFF);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..3 {
            limits
                .admit(a, &format!("{i}@example.com"))
                .unwrap()
                .succeeded();
        }
        let (which, _) = limits.admit(a, "z@example.com").unwrap_err();
        assert_eq!(which, LoginLimit::Ip);
        limits
            .admit("10.0.0.2".parse().unwrap(), "z@example.com")
            .unwrap()
            .succeeded();
    }
}
