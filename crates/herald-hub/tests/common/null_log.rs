//! `NullLog`, an event log that keeps nothing, shared by the hub's tests and benchmarks:
//! the benchmarks measure fan-out rather than fsync, and the tests run a hub's timers on
//! paused time, which the SQLite log (it answers from threads of its own) does not allow.

use std::sync::Mutex;

use futures::{FutureExt, future::BoxFuture};
use herald_hub::{Entry, EventLog, LogError, Record};

/// A log that keeps nothing but its head.
#[derive(Debug, Default)]
pub(crate) struct NullLog {
    head: Mutex<u64>,
}

impl EventLog for NullLog {
    fn append(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<Vec<u64>, LogError>> {
        if let Some(last) = entries.last() {
            *self.head.lock().unwrap() = last.seq;
        }
        let seqs = entries.iter().map(|e| e.seq).collect();
        async { Ok(seqs) }.boxed()
    }
    fn read(
        &self,
        _: u64,
        _: u64,
        _: usize,
        _: usize,
    ) -> BoxFuture<'_, Result<Vec<Record>, LogError>> {
        async { Ok(Vec::new()) }.boxed()
    }
    fn latest_seq_of<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<u64>, LogError>> {
        async { Ok(None) }.boxed()
    }
    fn head(&self) -> BoxFuture<'_, Result<u64, LogError>> {
        let head = *self.head.lock().unwrap();
        async move { Ok(head) }.boxed()
    }
    fn prune(&self, _: u64, _: Option<i64>) -> BoxFuture<'_, Result<u64, LogError>> {
        async { Ok(0) }.boxed()
    }
}
