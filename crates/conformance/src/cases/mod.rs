//! The cases, grouped by the part of the contract they pin down, and the list
//! [`all`] that the runner walks. Each case is a `pub async fn(&H) -> CaseResult`
//! that creates its own fresh storage.

pub mod basic;
pub mod blobs;
pub mod commit;
pub mod concurrency;
pub mod durable;
pub mod iteration;
pub mod pack;
pub mod restore;
pub mod undo;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::check::{CaseResult, Context, Failure};
use crate::harness::{Capabilities, Harness};

/// One named case with its capability requirement.
pub struct Case<H: Harness> {
    pub name: &'static str,
    /// `Some(reason)` when the case does not apply to these capabilities.
    pub skip: fn(&Capabilities) -> Option<&'static str>,
    pub run: for<'a> fn(&'a H) -> BoxFuture<'a, CaseResult>,
}

/// A fresh storage from the harness, shared so that cases can spawn tasks on it.
pub async fn fresh<H: Harness>(h: &H) -> Result<(Arc<H::Storage>, H::Place), Failure> {
    let (s, place) = h.create().await.ctx("harness create")?;
    Ok((Arc::new(s), place))
}

fn always(_: &Capabilities) -> Option<&'static str> {
    None
}
fn need_undo(c: &Capabilities) -> Option<&'static str> {
    (!c.undo).then_some("storage does not support undo")
}
fn need_pack(c: &Capabilities) -> Option<&'static str> {
    (!c.pack).then_some("storage does not pack")
}
fn need_pack_undo(c: &Capabilities) -> Option<&'static str> {
    need_pack(c).or_else(|| need_undo(c))
}
fn need_gc(c: &Capabilities) -> Option<&'static str> {
    need_pack(c).or_else(|| (!c.gc).then_some("pack does not collect garbage"))
}
fn need_blobs(c: &Capabilities) -> Option<&'static str> {
    (!c.blobs).then_some("storage does not support blobs")
}
fn need_durable(c: &Capabilities) -> Option<&'static str> {
    (!c.durable).then_some("storage is not durable")
}

macro_rules! case {
    ($module:ident :: $name:ident, $skip:expr) => {{
        fn run<H: Harness>(h: &H) -> BoxFuture<'_, CaseResult> {
            Box::pin($module::$name(h))
        }
        Case::<H> {
            name: concat!(stringify!($module), "::", stringify!($name)),
            skip: $skip,
            run: run::<H>,
        }
    }};
}

/// Every case, in the order the runner runs them.
pub fn all<H: Harness>() -> Vec<Case<H>> {
    vec![
        case!(basic::empty_storage, always),
        case!(basic::new_oids_ascending_unique, always),
        case!(basic::new_oids_skip_stored_oids, always),
        case!(basic::commit_and_load, always),
        case!(basic::load_before_revisions, always),
        case!(basic::poskey_rules, always),
        case!(basic::history_newest_first, always),
        case!(basic::tids_strictly_increasing, always),
        case!(basic::explicit_tid_honoured, always),
        case!(basic::explicit_tid_refused, always),
        case!(basic::empty_transaction, always),
        case!(basic::info_sane, always),
        case!(commit::write_conflicts_all_reported, always),
        case!(commit::conflict_on_new_object, always),
        case!(commit::check_current_serial, always),
        case!(commit::abort_leaves_no_trace, always),
        case!(commit::second_vote_waits_for_finish, always),
        case!(commit::second_vote_waits_for_abort, always),
        case!(commit::waiting_vote_sees_previous_commit, always),
        case!(commit::delete_object, always),
        case!(restore::restore_with_data, always),
        case!(restore::restore_back_pointer, always),
        case!(restore::restore_uncreation, always),
        case!(undo::undo_log_round_trip_and_undo, need_undo),
        case!(undo::undo_creation, need_undo),
        case!(undo::undo_of_undo, need_undo),
        case!(undo::undo_refused_after_later_change, need_undo),
        case!(undo::undo_two_transactions_at_once, need_undo),
        case!(undo::undo_invalid_id, need_undo),
        case!(undo::undo_log_first_last_filter, need_undo),
        case!(iteration::iterator_bounds_and_contents, always),
        case!(iteration::record_iternext_walks_current_objects, always),
        case!(pack::pack_removes_old_history, need_pack),
        case!(pack::pack_keeps_back_pointer_data, need_pack_undo),
        case!(pack::pack_collects_garbage, need_gc),
        case!(blobs::store_and_load_blobs, need_blobs),
        case!(blobs::restore_and_undo_blobs, need_blobs),
        case!(concurrency::concurrent_readers_see_committed_states, always),
        case!(concurrency::concurrent_writers, always),
        case!(durable::reopen_keeps_everything, need_durable),
    ]
}
