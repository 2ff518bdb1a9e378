//! The recent history: the last few thousand records, encoded, in memory.
//!
//! Most reconnecting subscribers missed only a handful of updates. Serving those from memory
//! spares the log a query per reconnect, which matters when thousands reconnect at once.
//! Anything older is read from the [`EventLog`](crate::EventLog).

use std::{collections::VecDeque, sync::Arc};

use crate::update::Record;

/// A ring of the newest records. Their `seq`s are contiguous: the sequencer pushes every
/// committed record, in order, and only the oldest ever leave.
#[derive(Debug)]
pub(crate) struct History {
    records: VecDeque<Arc<Record>>,
    /// How many records to keep. Bounds memory: frames are small, but not free.
    capacity: usize,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, record: Arc<Record>) {
        debug_assert!(
            self.records
                .back()
                .is_none_or(|last| last.seq + 1 == record.seq),
            "history must stay contiguous"
        );
        if self.capacity == 0 {
            return;
        }
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Forgets everything; the next push starts a new contiguous run.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }

    /// Up to `limit` records with `after < seq <= up_to`, or `None` when the oldest of them
    /// has already left memory (read the log instead).
    pub(crate) fn range(&self, after: u64, up_to: u64, limit: usize) -> Option<Vec<Arc<Record>>> {
        let first = self.records.front()?.seq;
        if after + 1 < first {
            return None;
        }
        let start = usize::try_from(after + 1 - first).ok()?;
        Some(
            self.records
                .iter()
                .skip(start)
                .take_while(|r| r.seq <= up_to)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// The position of the newest record carrying `id`, if it is still in memory.
    pub(crate) fn latest_seq_of(&self, id: &str) -> Option<u64> {
        self.records
            .iter()
            .rev()
            .find(|r| &*r.id == id)
            .map(|r| r.seq)
    }

    /// The id of the record at `seq`, if in memory.
    pub(crate) fn id_at(&self, seq: u64) -> Option<Arc<str>> {
        let first = self.records.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.records.get(index).map(|r| r.id.clone())
    }

    /// Forgets records with `seq <= below_seq` or created before `before_ms`, so that memory
    /// never serves what the log's retention has removed.
    pub(crate) fn prune(&mut self, below_seq: u64, before_ms: Option<i64>) {
        while self.records.front().is_some_and(|r| {
            r.seq <= below_seq || before_ms.is_some_and(|cut| r.created_at_ms < cut)
        }) {
            self.records.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Update;

    fn record(seq: u64) -> Arc<Record> {
        let update = Update {
            topics: vec!["t".into()],
            data: seq.to_string(),
            ..Update::default()
        };
        Arc::new(Record::new(
            seq,
            format!("id-{seq}").into(),
            &update,
            seq as i64,
        ))
    }

    fn seqs(records: Option<Vec<Arc<Record>>>) -> Option<Vec<u64>> {
        records.map(|r| r.iter().map(|r| r.seq).collect())
    }

    #[test]
    fn ring_keeps_newest_and_answers_ranges() {
        let mut history = History::new(3);
        assert_eq!(seqs(history.range(0, 10, 10)), None);
        for seq in 1..=5 {
            history.push(record(seq));
        }
        // Holds 3, 4, 5.
        assert_eq!(seqs(history.range(2, 5, 10)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(history.range(3, 4, 10)), Some(vec![4]));
        assert_eq!(seqs(history.range(3, 5, 1)), Some(vec![4]));
        assert_eq!(seqs(history.range(5, 5, 10)), Some(vec![]));
        assert_eq!(seqs(history.range(1, 5, 10)), None, "seq 2 is gone");
        assert_eq!(history.latest_seq_of("id-4"), Some(4));
        assert_eq!(history.latest_seq_of("id-1"), None);
        assert_eq!(history.id_at(5).as_deref(), Some("id-5"));
        assert_eq!(history.id_at(2), None);
        history.prune(3, Some(5));
        assert_eq!(seqs(history.range(4, 5, 10)), Some(vec![5]));
    }
}
