//! The object cache (`cache-size`): object revisions loaded from the server, kept
//! in memory so that repeated loads are answered without a round trip — the
//! in-memory counterpart of ZEO's `ClientCache` (`ZEO/cache.py`).
//!
//! Per oid it holds the current revision (start tid and data; its end is not
//! known) and non-current revisions (start, end, data). `load_before(oid, before)`
//! is a hit when a non-current revision has `start < before <= end` (a fact of
//! history, true whenever it is asked), or when the current revision has
//! `start < before` and `before <= last + 1`, `last` being the newest commit the
//! cache has heard of (invalidations, our own commits, `register`) — ZEO's
//! `cache.getLastTid()`: "cache correctness is guaranteed only for
//! `tid <= _cache.getLastTid()`" (`ClientStorage.loadBefore`). A later `before`
//! (`Tid::MAX`, or a commit heard of through another backend of a RAID) asks
//! about commits whose invalidation may still be on its way, so it goes to the
//! server. Revisions are evicted least recently used first once their bytes
//! (data plus [`ENTRY_OVERHEAD`] each) pass the capacity.
//!
//! The server's replies and its `invalidateTransaction` callbacks come in one
//! ordered stream, so the cache is changed only from a session's read loop, in
//! wire order: stores of `loadBefore` replies, invalidations, and the oids of our
//! own commits when the `tpc_finish` reply is read. Every change names the session
//! (its generation) it comes from; changes from a session other than the current
//! one are ignored, so a reply read just before a reconnect cannot land in the
//! cache after it was cleared. Without a current session nothing is served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tracing::debug;
use zeoraid_storage::{LoadedRecord, Oid, Tid};

/// What one cached revision costs beyond its data, in bytes: the slot, the
/// per-oid index and the hash map entries that find it (an estimate of the heap
/// they take, so that many small objects cannot outgrow `cache-size` much).
pub const ENTRY_OVERHEAD: u64 = 128;

/// The cache's counters and size, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectCacheStats {
    /// Loads answered from the cache (both the async and the inline path).
    pub hits: u64,
    /// Loads that went to the server while the cache was enabled.
    pub misses: u64,
    /// Revisions held.
    pub entries: u64,
    /// Bytes held: data plus [`ENTRY_OVERHEAD`] per revision.
    pub bytes: u64,
    /// `cache-size`; 0: the cache is disabled.
    pub capacity: u64,
    /// The newest commit the cache has heard of: current revisions answer
    /// `before <= last_tid + 1` only.
    pub last_tid: Tid,
}

/// "No slot" in the recency list.
const NIL: usize = usize::MAX;

struct Slot {
    oid: Oid,
    start: Tid,
    /// None: the current revision.
    end: Option<Tid>,
    data: Bytes,
    /// Neighbour used more recently (NIL: this is the newest).
    newer: usize,
    /// Neighbour used less recently (NIL: this is the oldest).
    older: usize,
}

impl Slot {
    fn cost(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Revisions in a slab, threaded on a recency list: use, insert and evict are
/// O(1) without any allocation beyond the slab's growth.
struct Revisions {
    slots: Vec<Slot>,
    free: Vec<usize>,
    newest: usize,
    oldest: usize,
    bytes: u64,
    len: usize,
}

impl Revisions {
    fn new() -> Self {
        Revisions {
            slots: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            bytes: 0,
            len: 0,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.slots[i].newer, self.slots[i].older);
        match newer {
            NIL => self.newest = older,
            n => self.slots[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o].newer = newer,
        }
    }

    fn link_newest(&mut self, i: usize) {
        self.slots[i].newer = NIL;
        self.slots[i].older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.slots[n].newer = i,
        }
        self.newest = i;
    }

    /// Marks slot `i` as just used.
    fn touch(&mut self, i: usize) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    fn insert(&mut self, oid: Oid, start: Tid, end: Option<Tid>, data: Bytes) -> usize {
        let slot = Slot {
            oid,
            start,
            end,
            data,
            newer: NIL,
            older: NIL,
        };
        self.bytes += slot.cost();
        self.len += 1;
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.link_newest(i);
        i
    }

    fn remove(&mut self, i: usize) {
        self.unlink(i);
        self.bytes -= self.slots[i].cost();
        self.len -= 1;
        // Release the data now; the slot is reused by a later insert.
        self.slots[i].data = Bytes::new();
        self.free.push(i);
    }
}

/// Where the revisions of one oid are.
#[derive(Default)]
struct OidRevisions {
    current: Option<usize>,
    /// Non-current revisions; their `start..end` ranges do not overlap.
    noncurrent: Vec<usize>,
}

impl OidRevisions {
    fn is_empty(&self) -> bool {
        self.current.is_none() && self.noncurrent.is_empty()
    }
}

struct State {
    /// The session whose changes are applied; 0: none (disconnected), nothing is
    /// stored or served.
    generation: u64,
    /// The newest commit heard of in this session (its `register` answer, then
    /// invalidations and our own commits, applied in wire order).
    last_tid: Tid,
    revisions: Revisions,
    by_oid: HashMap<Oid, OidRevisions>,
    /// Oids of our transactions whose `tpc_finish` is on its way (count of such
    /// finishes): the commit may already have ended their current revision, so a
    /// current revision is not served for them until the reply is read (a load
    /// sent meanwhile reaches the server after the `tpc_finish`).
    finishing: HashMap<Oid, u32>,
}

impl State {
    fn clear_revisions(&mut self) {
        self.revisions = Revisions::new();
        self.by_oid.clear();
    }

    /// Drops slot `i` (of `oid`) from the index and the slab.
    fn drop_slot(&mut self, oid: Oid, i: usize) {
        if let Some(revs) = self.by_oid.get_mut(&oid) {
            if revs.current == Some(i) {
                revs.current = None;
            }
            revs.noncurrent.retain(|&n| n != i);
            if revs.is_empty() {
                self.by_oid.remove(&oid);
            }
        }
        self.revisions.remove(i);
    }

    /// Evicts the least recently used revisions until the bytes fit `capacity`.
    fn evict_to(&mut self, capacity: u64) {
        while self.revisions.bytes > capacity {
            let i = self.revisions.oldest;
            if i == NIL {
                break;
            }
            let oid = self.revisions.slots[i].oid;
            self.drop_slot(oid, i);
        }
    }

    /// Ends the current revision of `oid` at `tid` (a commit at `tid` changed it).
    /// A current revision written by `tid` or later stays (ZEO: "Ignoring
    /// invalidation with same tid as current").
    fn end_current(&mut self, oid: Oid, tid: Tid) {
        let Some(revs) = self.by_oid.get_mut(&oid) else {
            return;
        };
        let Some(i) = revs.current else {
            return;
        };
        let start = self.revisions.slots[i].start;
        if start >= tid {
            return;
        }
        revs.current = None;
        let duplicate = revs
            .noncurrent
            .iter()
            .any(|&n| self.revisions.slots[n].start == start);
        if duplicate {
            self.drop_slot(oid, i);
        } else {
            self.revisions.slots[i].end = Some(tid);
            revs.noncurrent.push(i);
        }
    }

    fn store(&mut self, oid: Oid, record: &LoadedRecord) {
        let slots = &self.revisions.slots;
        let (current, same_noncurrent) = match self.by_oid.get(&oid) {
            Some(revs) => (
                revs.current.map(|i| (i, slots[i].start)),
                revs.noncurrent
                    .iter()
                    .copied()
                    .find(|&n| slots[n].start == record.start),
            ),
            None => (None, None),
        };
        match record.end {
            None => {
                if same_noncurrent.is_some() {
                    // Already known to have ended: a reply out of order.
                    debug!(%oid, start = ?record.start, "current revision already ended in the cache; not stored");
                    return;
                }
                if let Some((i, cached)) = current {
                    if cached == record.start {
                        self.revisions.touch(i);
                        return;
                    }
                    // Two different current revisions. A newer one was read after
                    // a commit whose invalidation is still on its way: it wins.
                    // An older one contradicts what the server said before: keep
                    // neither.
                    debug!(%oid, ?cached, new = ?record.start, "conflicting current revisions in the cache");
                    self.drop_slot(oid, i);
                    if record.start < cached {
                        return;
                    }
                }
            }
            Some(end) => {
                if end <= record.start {
                    debug!(%oid, "loadBefore reply whose end is not after its start; not cached");
                    return;
                }
                if let Some(n) = same_noncurrent {
                    self.revisions.touch(n);
                    return;
                }
                if let Some((i, cached)) = current {
                    if cached == record.start {
                        // The reply knows the end before the invalidation arrived
                        // (no non-current twin exists, so the slot is kept).
                        self.end_current(oid, end);
                        self.revisions.touch(i);
                        return;
                    }
                    if cached < end {
                        // The cached current revision ended at or before `end`.
                        self.drop_slot(oid, i);
                    }
                }
            }
        }
        let i = self
            .revisions
            .insert(oid, record.start, record.end, record.data.clone());
        let revs = self.by_oid.entry(oid).or_default();
        match record.end {
            None => revs.current = Some(i),
            Some(_) => revs.noncurrent.push(i),
        }
    }

    fn lookup(&mut self, oid: Oid, before: Tid) -> Option<LoadedRecord> {
        let revs = self.by_oid.get(&oid)?;
        let slots = &self.revisions.slots;
        let known = before.as_u64() <= self.last_tid.as_u64().saturating_add(1);
        let current = revs
            .current
            .filter(|&i| known && slots[i].start < before && !self.finishing.contains_key(&oid));
        let i = current.or_else(|| {
            revs.noncurrent
                .iter()
                .copied()
                .find(|&n| slots[n].start < before && slots[n].end.is_some_and(|end| before <= end))
        })?;
        self.revisions.touch(i);
        let slot = &self.revisions.slots[i];
        Some(LoadedRecord {
            data: slot.data.clone(),
            start: slot.start,
            end: slot.end,
        })
    }
}

/// The object cache of one client, shared by its sessions.
pub(crate) struct ObjectCache {
    capacity: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ObjectCache {
    /// A cache of `capacity` bytes; 0 disables it.
    pub(crate) fn new(capacity: u64) -> Self {
        ObjectCache {
            capacity,
            state: Mutex::new(State {
                generation: 0,
                last_tid: Tid::ZERO,
                revisions: Revisions::new(),
                by_oid: HashMap::new(),
                finishing: HashMap::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Runs `f` on the state when the cache is enabled and `generation` is the
    /// current session. A poisoned lock (a panic elsewhere) disables the cache.
    fn with_session<R>(&self, generation: u64, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        if !self.is_enabled() {
            return None;
        }
        let mut state = self.state.lock().ok()?;
        (state.generation != 0 && state.generation == generation).then(|| f(&mut state))
    }

    /// The cached answer to `load_before(oid, before)`, counted as a hit.
    pub(crate) fn lookup(&self, oid: Oid, before: Tid) -> Option<LoadedRecord> {
        if !self.is_enabled() {
            return None;
        }
        let found = {
            let mut state = self.state.lock().ok()?;
            if state.generation == 0 {
                return None;
            }
            state.lookup(oid, before)
        };
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Counts a load that goes to the server.
    pub(crate) fn count_miss(&self) {
        if self.is_enabled() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self) -> ObjectCacheStats {
        let (entries, bytes, last_tid) = self
            .state
            .lock()
            .map(|s| (s.revisions.len as u64, s.revisions.bytes, s.last_tid))
            .unwrap_or((0, 0, Tid::ZERO));
        ObjectCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries,
            bytes,
            capacity: self.capacity,
            last_tid,
        }
    }

    /// Empties the cache and accepts changes from session `generation` only,
    /// whose `register` answered `last_tid`. Called when a session is installed.
    pub(crate) fn reset(&self, generation: u64, last_tid: Tid) {
        if let Ok(mut state) = self.state.lock() {
            state.clear_revisions();
            state.finishing.clear();
            state.generation = generation;
            state.last_tid = last_tid;
        }
    }

    /// Session `generation` died: if it is the current one, empty the cache and
    /// serve nothing until the next session is installed.
    pub(crate) fn session_closed(&self, generation: u64) {
        if let Ok(mut state) = self.state.lock() {
            if state.generation == generation {
                state.clear_revisions();
                state.finishing.clear();
                state.generation = 0;
                state.last_tid = Tid::ZERO;
            }
        }
    }

    /// Drops every revision (`invalidateCache`, a finish of unknown outcome, a
    /// pack), keeping the session and the finishes on their way.
    pub(crate) fn clear(&self, generation: u64) {
        self.with_session(generation, State::clear_revisions);
    }

    /// Stores a `loadBefore` reply read by session `generation`.
    pub(crate) fn store(&self, generation: u64, oid: Oid, record: &LoadedRecord) {
        let cost = record.data.len() as u64 + ENTRY_OVERHEAD;
        if cost > self.capacity {
            return;
        }
        let capacity = self.capacity;
        self.with_session(generation, |state| {
            state.store(oid, record);
            state.evict_to(capacity);
        });
    }

    /// A commit at `tid` changed `oids` (`invalidateTransaction`).
    pub(crate) fn invalidate(&self, generation: u64, tid: Tid, oids: &[Oid]) {
        self.with_session(generation, |state| {
            for &oid in oids {
                state.end_current(oid, tid);
            }
            state.last_tid = state.last_tid.max(tid);
        });
    }

    /// Our `tpc_finish` that changes `oids` is about to be sent on session
    /// `generation`.
    pub(crate) fn finishing(&self, generation: u64, oids: &[Oid]) {
        self.with_session(generation, |state| {
            for &oid in oids {
                *state.finishing.entry(oid).or_insert(0) += 1;
            }
        });
    }

    /// The `tpc_finish` that changes `oids` is answered, or was never sent: see
    /// [`FinishOutcome`]. An unknown outcome drops the whole cache.
    pub(crate) fn finished(&self, generation: u64, oids: &[Oid], outcome: FinishOutcome) {
        self.with_session(generation, |state| {
            for oid in oids {
                if let Some(count) = state.finishing.get_mut(oid) {
                    *count -= 1;
                    if *count == 0 {
                        state.finishing.remove(oid);
                    }
                }
            }
            match outcome {
                FinishOutcome::Committed(tid) => {
                    for &oid in oids {
                        state.end_current(oid, tid);
                    }
                    state.last_tid = state.last_tid.max(tid);
                }
                FinishOutcome::Unknown => state.clear_revisions(),
                FinishOutcome::NotSent => {}
            }
        });
    }
}

/// What became of one of our `tpc_finish` calls, as far as the cache goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinishOutcome {
    /// The server committed the transaction at this tid.
    Committed(Tid),
    /// An error reply, or a reply that is not a tid: the cache cannot know.
    Unknown,
    /// The call never left (its frame could not be queued).
    NotSent,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tid(n: u64) -> Tid {
        Tid(n.to_be_bytes())
    }

    fn oid(n: u64) -> Oid {
        Oid(n.to_be_bytes())
    }

    fn rec(data: &str, start: u64, end: Option<u64>) -> LoadedRecord {
        LoadedRecord {
            data: Bytes::copy_from_slice(data.as_bytes()),
            start: tid(start),
            end: end.map(tid),
        }
    }

    /// What the cache knows of: commits up to tid 1000.
    const LAST: u64 = 1000;

    /// `before` of a load as of the last commit heard of.
    fn now() -> Tid {
        tid(LAST + 1)
    }

    fn cache(capacity: u64) -> ObjectCache {
        let c = ObjectCache::new(capacity);
        c.reset(1, tid(LAST));
        c
    }

    #[test]
    fn current_and_noncurrent_hits_answer_what_was_stored() {
        let c = cache(1 << 20);
        c.store(1, oid(1), &rec("v2", 20, None));
        c.store(1, oid(1), &rec("v1", 10, Some(20)));
        assert_eq!(c.lookup(oid(1), now()), Some(rec("v2", 20, None)));
        assert_eq!(c.lookup(oid(1), tid(21)), Some(rec("v2", 20, None)));
        assert_eq!(c.lookup(oid(1), tid(20)), Some(rec("v1", 10, Some(20))));
        assert_eq!(c.lookup(oid(1), tid(11)), Some(rec("v1", 10, Some(20))));
        assert_eq!(c.lookup(oid(1), tid(10)), None);
        assert_eq!(c.lookup(oid(2), now()), None);
        let s = c.stats();
        assert_eq!((s.hits, s.entries), (4, 2));
        assert_eq!(s.bytes, 4 + 2 * ENTRY_OVERHEAD);
    }

    #[test]
    fn invalidation_ends_the_current_revision() {
        let c = cache(1 << 20);
        c.store(1, oid(1), &rec("v1", 10, None));
        c.invalidate(1, tid(20), &[oid(1), oid(2)]);
        assert_eq!(c.lookup(oid(1), now()), None);
        assert_eq!(c.lookup(oid(1), tid(20)), Some(rec("v1", 10, Some(20))));
        // An invalidation by the revision's own commit keeps it current.
        c.store(1, oid(1), &rec("v2", 20, None));
        c.invalidate(1, tid(20), &[oid(1)]);
        assert_eq!(c.lookup(oid(1), now()), Some(rec("v2", 20, None)));
    }

    #[test]
    fn current_revisions_answer_only_up_to_the_last_commit_heard_of() {
        let c = cache(1 << 20);
        c.store(1, oid(1), &rec("v1", 10, None));
        c.store(1, oid(2), &rec("w1", 10, Some(1500)));
        assert!(c.lookup(oid(1), now()).is_some());
        // Commits after LAST may have changed it: the server knows.
        assert_eq!(c.lookup(oid(1), tid(LAST + 2)), None);
        assert_eq!(c.lookup(oid(1), Tid::MAX), None);
        // A non-current revision is history: answered whenever asked.
        assert!(c.lookup(oid(2), tid(1400)).is_some());
        // An invalidation (of anything) and our own commits move LAST on.
        c.invalidate(1, tid(1200), &[oid(3)]);
        assert!(c.lookup(oid(1), tid(1201)).is_some());
        assert_eq!(c.lookup(oid(1), tid(1202)), None);
        c.finishing(1, &[oid(3)]);
        c.finished(1, &[oid(3)], FinishOutcome::Committed(tid(1300)));
        assert!(c.lookup(oid(1), tid(1301)).is_some());
        assert_eq!(c.stats().last_tid, tid(1300));
        // A new session starts from what its `register` answered.
        c.reset(2, tid(5000));
        c.store(2, oid(1), &rec("v1", 10, None));
        assert!(c.lookup(oid(1), tid(5001)).is_some());
    }

    #[test]
    fn a_reply_that_knows_the_end_first_ends_the_current_revision() {
        let c = cache(1 << 20);
        c.store(1, oid(1), &rec("v1", 10, None));
        c.store(1, oid(1), &rec("v1", 10, Some(20)));
        assert_eq!(c.lookup(oid(1), now()), None);
        assert_eq!(c.lookup(oid(1), tid(15)), Some(rec("v1", 10, Some(20))));
        // The invalidation arriving later changes nothing; no duplicate.
        c.invalidate(1, tid(20), &[oid(1)]);
        assert_eq!(c.stats().entries, 1);
        // A newer current revision replaces an older one.
        c.store(1, oid(2), &rec("a", 10, None));
        c.store(1, oid(2), &rec("b", 30, None));
        assert_eq!(c.lookup(oid(2), now()), Some(rec("b", 30, None)));
        assert_eq!(c.lookup(oid(2), tid(30)), None);
        // An older "current" one contradicts the cache: neither is kept.
        c.store(1, oid(2), &rec("a", 10, None));
        assert_eq!(c.lookup(oid(2), now()), None);
        // A current revision already known to have ended is not stored again.
        c.store(1, oid(1), &rec("v1", 10, None));
        assert_eq!(c.lookup(oid(1), now()), None);
        // Malformed: end not after start.
        c.store(1, oid(3), &rec("x", 10, Some(10)));
        assert_eq!(c.lookup(oid(3), tid(10)), None);
    }

    #[test]
    fn own_finishes_hide_the_current_revision_until_answered() {
        let c = cache(1 << 20);
        c.store(1, oid(1), &rec("v1", 10, None));
        c.store(1, oid(2), &rec("w1", 10, None));
        c.finishing(1, &[oid(1)]);
        assert_eq!(c.lookup(oid(1), now()), None);
        assert_eq!(c.lookup(oid(2), now()), Some(rec("w1", 10, None)));
        c.finished(1, &[oid(1)], FinishOutcome::Committed(tid(30)));
        assert_eq!(c.lookup(oid(1), now()), None);
        assert_eq!(c.lookup(oid(1), tid(30)), Some(rec("v1", 10, Some(30))));
        c.finishing(1, &[oid(2)]);
        c.finished(1, &[oid(2)], FinishOutcome::NotSent);
        assert_eq!(c.lookup(oid(2), now()), Some(rec("w1", 10, None)));
        c.finishing(1, &[oid(2)]);
        c.finished(1, &[oid(2)], FinishOutcome::Unknown);
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn other_sessions_cannot_change_or_read_the_cache() {
        let c = cache(1 << 20);
        c.store(2, oid(1), &rec("v1", 10, None));
        assert_eq!(c.lookup(oid(1), now()), None);
        c.store(1, oid(1), &rec("v1", 10, None));
        c.invalidate(2, tid(20), &[oid(1)]);
        assert!(c.lookup(oid(1), now()).is_some());
        c.session_closed(2);
        assert!(c.lookup(oid(1), now()).is_some());
        c.session_closed(1);
        assert_eq!(c.lookup(oid(1), now()), None);
        c.store(1, oid(1), &rec("v1", 10, None));
        assert_eq!(c.stats().entries, 0);
        c.reset(3, tid(LAST));
        c.store(3, oid(1), &rec("v1", 10, None));
        assert!(c.lookup(oid(1), now()).is_some());
    }

    #[test]
    fn least_recently_used_revisions_go_first() {
        let each = 100 + ENTRY_OVERHEAD;
        let c = cache(3 * each);
        let data = "x".repeat(100);
        for n in 1..=3 {
            c.store(1, oid(n), &rec(&data, 10, None));
        }
        assert!(c.lookup(oid(1), now()).is_some());
        c.store(1, oid(4), &rec(&data, 10, None));
        assert!(c.lookup(oid(2), now()).is_none(), "the oldest is evicted");
        for n in [1, 3, 4] {
            assert!(c.lookup(oid(n), now()).is_some(), "{n}");
        }
        assert_eq!(c.stats().bytes, 3 * each);
        // Too big for the whole cache: not stored, nothing evicted.
        c.store(1, oid(5), &rec(&"y".repeat(600), 10, None));
        assert_eq!(c.stats().entries, 3);
        // Many more than fit: always within the capacity.
        for n in 10..200 {
            c.store(1, oid(n), &rec(&data, 10, Some(20)));
            assert!(c.stats().bytes <= 3 * each);
        }
        assert_eq!(c.stats().entries, 3);
    }

    #[test]
    fn a_disabled_cache_holds_and_counts_nothing() {
        let c = cache(0);
        c.store(1, oid(1), &rec("v1", 10, None));
        c.count_miss();
        assert_eq!(c.lookup(oid(1), now()), None);
        let s = c.stats();
        assert_eq!(
            (s.hits, s.misses, s.entries, s.bytes, s.capacity),
            (0, 0, 0, 0, 0)
        );
    }
}
