//! Invalidations: the queue of the last `invalidation-queue-size` committed
//! transactions `(tid, oids)` that `getInvalidations` answers from (ZEO's `invq`),
//! and the broadcasts — `invalidateTransaction(tid, oids)` to every connection
//! registered on the storage except the committer, `info({'length','size'})` to all
//! after a pack.

use std::collections::{BTreeSet, VecDeque};

use tracing::info;
use zeoraid_storage::{Oid, Tid};
use zeoraid_wire::Value;

/// The invalidation queue of one storage, newest first.
#[derive(Debug)]
pub struct InvalidationQueue {
    bound: usize,
    /// `(tid, oids)`; `None` oids mark the starting point (the last tid when the
    /// queue was built), which is never read, exactly as in ZEO.
    entries: VecDeque<(Tid, Option<Vec<Oid>>)>,
}

/// What the queue can say about a client's last tid.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The latest tid and every oid changed after the client's tid.
    Found(Tid, Vec<Oid>),
    /// The queue does not reach back that far.
    TooOld,
    /// The queue is empty.
    Empty,
}

impl InvalidationQueue {
    /// A queue that starts at `last_tid`.
    pub fn new(bound: usize, last_tid: Tid) -> Self {
        let mut entries = VecDeque::new();
        entries.push_front((last_tid, None));
        InvalidationQueue { bound, entries }
    }

    /// Forget everything and start again at `last_tid`.
    pub fn reset(&mut self, last_tid: Tid) {
        *self = InvalidationQueue::new(self.bound, last_tid);
    }

    /// Record a committed transaction.
    pub fn push(&mut self, tid: Tid, oids: Vec<Oid>) {
        if self.entries.len() >= self.bound {
            self.entries.pop_back();
        }
        self.entries.push_front((tid, Some(oids)));
    }

    /// The oids changed after `tid` (ZEO's `get_invalidations`, queue part).
    pub fn lookup(&self, tid: Tid) -> Lookup {
        let Some((oldest, _)) = self.entries.back() else {
            return Lookup::Empty;
        };
        if *oldest > tid {
            return Lookup::TooOld;
        }
        let mut oids = BTreeSet::new();
        for (t, list) in &self.entries {
            if *t <= tid {
                break;
            }
            if let Some(list) = list {
                oids.extend(list.iter().copied());
            }
        }
        let latest = self.entries.front().map(|(t, _)| *t).unwrap_or(tid);
        Lookup::Found(latest, oids.into_iter().collect())
    }

    /// The newest tid whose invalidations were queued (or the starting point):
    /// what `register` and `lastTransaction` answer, so a client is never told of
    /// a transaction before its invalidations are on their way to it.
    pub fn latest(&self) -> Option<Tid> {
        self.entries.front().map(|(t, _)| *t)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The arguments of `invalidateTransaction(tid, oids)`.
pub fn invalidate_args(tid: Tid, oids: &[Oid]) -> Vec<Value> {
    vec![
        Value::from(tid.0),
        Value::List(oids.iter().map(|o| Value::from(o.0)).collect()),
    ]
}

/// The argument of `info({'length': n, 'size': bytes})`.
pub fn info_args(length: u64, size: u64) -> Vec<Value> {
    vec![Value::dict_from_pairs([
        ("length", Value::from(length)),
        ("size", Value::from(size)),
    ])]
}

/// Log the answer to a `getInvalidations`.
pub fn log_answer(conn: &str, count: usize, tid: Tid) {
    info!(conn = %conn, "Return {count} invalidations up to tid {:x}", tid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> Tid {
        Tid::from_u64(n)
    }
    fn o(n: u64) -> Oid {
        Oid::from_u64(n)
    }

    #[test]
    fn lookup_within_and_beyond_the_queue() {
        let mut q = InvalidationQueue::new(3, t(10));
        assert_eq!(q.lookup(t(10)), Lookup::Found(t(10), vec![]));
        assert_eq!(q.lookup(t(9)), Lookup::TooOld);
        q.push(t(11), vec![o(1)]);
        q.push(t(12), vec![o(2), o(1)]);
        assert_eq!(q.lookup(t(10)), Lookup::Found(t(12), vec![o(1), o(2)]));
        assert_eq!(
            q.lookup(t(11)),
            Lookup::Found(
                t(12),
                vec![o(2), o(1)]
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            )
        );
        q.push(t(13), vec![o(3)]);
        // The starting point was dropped: tid 10 is now too old.
        assert_eq!(q.lookup(t(10)), Lookup::TooOld);
        assert_eq!(
            q.lookup(t(11)),
            Lookup::Found(t(13), vec![o(1), o(2), o(3)])
        );
        assert_eq!(q.lookup(t(13)), Lookup::Found(t(13), vec![]));
        assert_eq!(q.latest(), Some(t(13)));
    }
}
