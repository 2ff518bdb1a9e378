//! The recent history: the last few thousand records, encoded, in memory.
//!
//! Most reconnecting subscribers missed only a handful of updates. Serving those from memory
//! spares the log a query per reconnect, which matters when thousands reconnect at once.
//! Anything older is read from the [`EventLog`](crate::EventLog).
//!
//! The history is bounded twice: by a number of records and by their bytes
//! ([`Record::size`]), so that large updates cannot make it hold more memory than
//! configured. Either bound evicts the oldest records, so the history stays contiguous.

use std::{collections::VecDeque, sync::Arc};

use crate::update::Record;

/// A ring of the newest records. Their `seq`s are contiguous: the sequencer pushes every
/// committed record, in order, and only the oldest ever leave.
#[derive(Debug)]
pub(crate) struct History {
    records: VecDeque<Arc<Record>>,
    /// How many records to keep. Bounds memory: frames are small, but not free.
    capacity: usize,
    /// How many bytes of records to keep: a count alone lets large updates hold up to
    /// `capacity` times the largest body.
    max_bytes: usize,
    /// The sum of [`Record::size`] over `records`.
    bytes: usize,
}

impl History {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            records: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            max_bytes,
            bytes: 0,
        }
    }

    pub(crate) fn push(&mut self, record: Arc<Record>) {
        debug_assert!(
            self.records
                .back()
                .is_none_or(|last| last.seq + 1 == record.seq),
            "history must stay contiguous"
        );
        let size = record.size();
        if self.capacity == 0 || size > self.max_bytes {
            // It cannot be kept; neither can anything before it, or the history would not
            // be contiguous.
            self.clear();
            return;
        }
        while self.records.len() >= self.capacity || self.bytes + size > self.max_bytes {
            self.pop_front();
        }
        self.bytes += size;
        self.records.push_back(record);
    }

    /// The `seq` the next push must have, if the history holds anything.
    pub(crate) fn next_seq(&self) -> Option<u64> {
        self.records.back().map(|r| r.seq + 1)
    }

    fn pop_front(&mut self) {
        if let Some(oldest) = self.records.pop_front() {
            self.bytes -= oldest.size();
        }
    }

    /// Forgets everything; the next push starts a new contiguous run.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// Records with `after < seq <= up_to`: at most `limit` of them, and no more after the
    /// frames of those already taken reach `max_bytes` (the first is always taken). `None`
    /// when the oldest of them has already left memory (read the log instead).
    pub(crate) fn range(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Option<Vec<Arc<Record>>> {
        let first = self.records.front()?.seq;
        if after + 1 < first {
            return None;
        }
        let start = usize::try_from(after + 1 - first).ok()?;
        let mut bytes = 0;
        Some(
            self.records
                .iter()
                .skip(start)
                .take_while(|r| r.seq <= up_to)
                .take(limit)
                .take_while(|r| {
                    let under = bytes < max_bytes.max(1);
                    bytes += r.frame.len();
                    under
                })
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
            self.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Update;

    fn record(seq: u64) -> Arc<Record> {
        sized(seq, 1)
    }

    /// A record whose data is `data_len` bytes.
    fn sized(seq: u64, data_len: usize) -> Arc<Record> {
        let update = Update {
            topics: vec!["t".into()],
            data: "x".repeat(data_len),
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
        let mut history = History::new(3, usize::MAX);
        assert_eq!(seqs(history.range(0, 10, 10, usize::MAX)), None);
        for seq in 1..=5 {
            history.push(record(seq));
        }
        // Holds 3, 4, 5.
        assert_eq!(
            seqs(history.range(2, 5, 10, usize::MAX)),
            Some(vec![3, 4, 5])
        );
        assert_eq!(seqs(history.range(3, 4, 10, usize::MAX)), Some(vec![4]));
        assert_eq!(seqs(history.range(3, 5, 1, usize::MAX)), Some(vec![4]));
        assert_eq!(seqs(history.range(5, 5, 10, usize::MAX)), Some(vec![]));
        assert_eq!(
            seqs(history.range(1, 5, 10, usize::MAX)),
            None,
            "seq 2 is gone"
        );
        assert_eq!(history.latest_seq_of("id-4"), Some(4));
        assert_eq!(history.latest_seq_of("id-1"), None);
        assert_eq!(history.id_at(5).as_deref(), Some("id-5"));
        assert_eq!(history.id_at(2), None);
        history.prune(3, Some(5));
        assert_eq!(seqs(history.range(4, 5, 10, usize::MAX)), Some(vec![5]));
    }

    #[test]
    fn bytes_bound_the_history_and_its_pages() {
        let size = sized(1, 1000).size();
        // Room for three records of this size, whatever the count allows.
        let mut history = History::new(100, 3 * size + size / 2);
        for seq in 1..=5 {
            history.push(sized(seq, 1000));
        }
        assert_eq!(history.bytes, 3 * size);
        assert_eq!(
            seqs(history.range(2, 5, 10, usize::MAX)),
            Some(vec![3, 4, 5])
        );
        assert_eq!(
            seqs(history.range(1, 5, 10, usize::MAX)),
            None,
            "seq 2 is gone"
        );
        // A larger record evicts as many of the oldest as it needs.
        history.push(sized(6, 2000));
        assert_eq!(seqs(history.range(4, 6, 10, usize::MAX)), Some(vec![5, 6]));
        // One that cannot fit at all empties the history, which stays contiguous.
        history.push(sized(7, 4 * size));
        assert_eq!(history.bytes, 0);
        assert_eq!(seqs(history.range(6, 7, 10, usize::MAX)), None);
        history.push(sized(8, 10));
        assert_eq!(seqs(history.range(7, 8, 10, usize::MAX)), Some(vec![8]));

        // Pages stop once their frames reach the byte bound; the first is always taken.
        let mut history = History::new(100, usize::MAX);
        for seq in 1..=10 {
            history.push(sized(seq, 1000));
        }
        let frame = history.records[0].frame.len();
        assert_eq!(seqs(history.range(0, 10, 10, 1)), Some(vec![1]));
        assert_eq!(
            seqs(history.range(0, 10, 10, 3 * frame)),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            seqs(history.range(0, 10, 10, 3 * frame + 1)),
            Some(vec![1, 2, 3, 4])
        );
        assert_eq!(seqs(history.range(0, 10, 2, 3 * frame)), Some(vec![1, 2]));
    }
}
