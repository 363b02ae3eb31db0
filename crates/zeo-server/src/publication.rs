//! Publication order of commits (group commit). A `tpc_finish` takes a ticket at
//! its storage's commit point, while it still holds the commit lock, so tickets
//! are in tid order; it then releases the lock, waits for the commit to be
//! durable, and publishes (invalidations, the published tid, its reply) only
//! when every earlier ticket is done. So clients see commits in tid order and
//! never one that is not durable, while the next transactions already vote and
//! finish during its fsync.
//!
//! A ticket dropped without publishing (a failed durability wait, a cancelled
//! task) counts as done, so it never holds up the ones behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use zeoraid_storage::Tid;

#[derive(Default)]
struct State {
    /// The next ticket number to hand out.
    next: u64,
    /// The ticket whose turn it is to publish.
    turn: u64,
    /// Tickets done before their turn came (dropped ones).
    done_early: BTreeSet<u64>,
    /// Tickets not done yet, with their tids.
    pending: BTreeMap<u64, Tid>,
}

/// The publication queue of one served storage.
#[derive(Default)]
pub(crate) struct PublicationQueue {
    state: Mutex<State>,
    turn_changed: Notify,
}

/// One commit's place in the publication order.
pub(crate) struct Ticket {
    queue: Arc<PublicationQueue>,
    number: u64,
    done: bool,
}

impl PublicationQueue {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is consistent
        // between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the next place in the order, for the commit of `tid`. Call at the
    /// commit point, with the commit lock held.
    pub fn take(self: &Arc<Self>, tid: Tid) -> Ticket {
        let mut st = self.state();
        let number = st.next;
        st.next += 1;
        st.pending.insert(number, tid);
        Ticket {
            queue: self.clone(),
            number,
            done: false,
        }
    }

    /// Whether the commit of `tid` is between its commit point and its
    /// publication (a load that read its data waits for it).
    pub fn is_publishing(&self, tid: Tid) -> bool {
        self.state().pending.values().any(|t| *t == tid)
    }

    /// Commits between their commit point and their publication.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.state().pending.len()
    }

    fn complete(&self, number: u64) {
        let mut st = self.state();
        st.pending.remove(&number);
        if number != st.turn {
            st.done_early.insert(number);
            return;
        }
        st.turn += 1;
        loop {
            let turn = st.turn;
            if !st.done_early.remove(&turn) {
                break;
            }
            st.turn += 1;
        }
        drop(st);
        self.turn_changed.notify_waiters();
    }
}

impl Ticket {
    /// Wait until every earlier ticket is done.
    pub async fn wait_turn(&self) {
        loop {
            let changed = self.queue.turn_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.queue.state().turn == self.number {
                return;
            }
            changed.await;
        }
    }

    /// Published: let the next ticket go.
    pub fn complete(mut self) {
        self.done = true;
        self.queue.complete(self.number);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.queue.complete(self.number);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn tickets_publish_in_the_order_taken() {
        let q = Arc::new(PublicationQueue::default());
        let tickets: Vec<_> = (1..=5u64).map(|t| q.take(Tid::from_u64(t))).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Started in reverse order; they must still publish 1..=5.
        for (i, ticket) in tickets.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 * (5 - i as u64))).await;
                ticket.wait_turn().await;
                order.lock().unwrap().push(i);
                ticket.complete();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(q.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_dropped_ticket_does_not_hold_up_the_next() {
        let q = Arc::new(PublicationQueue::default());
        let first = q.take(Tid::from_u64(1));
        let second = q.take(Tid::from_u64(2));
        let third = q.take(Tid::from_u64(3));
        assert!(q.is_publishing(Tid::from_u64(2)));
        drop(second);
        assert!(!q.is_publishing(Tid::from_u64(2)));
        let waiting = tokio::spawn(async move {
            third.wait_turn().await;
            third.complete();
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the third waits for the first");
        first.wait_turn().await;
        first.complete();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(q.in_flight(), 0);
    }
}
