//! Pack: drop the revisions that were no longer current at the pack time, keep
//! back-pointer data readable, and with a reference finder drop the objects that
//! are unreachable from the root (oid 0) — everything written after the pack time
//! counts as reachable, as in FileStorage's packer.

use std::collections::HashSet;
use std::path::PathBuf;

use zeoraid_storage::{Oid, Tid};

use crate::state::State;
use crate::ReferencesFn;

/// Packs `st` to `stop`; returns the blob files that are no longer referenced.
pub(crate) fn pack(st: &mut State, stop: Tid, references: Option<&ReferencesFn>) -> Vec<PathBuf> {
    let mut dead_blobs = Vec::new();
    let mut gone = Vec::new();
    for (&oid, revs) in st.objects.iter_mut() {
        let idx = revs.partition_point(|r| r.tid < stop);
        if idx >= 2 {
            dead_blobs.extend(revs.drain(..idx - 1).filter_map(|r| r.blob));
        }
        // Deleted before the pack time and not written since: the object is gone.
        if idx >= 1 && revs.len() == 1 && revs[0].data.is_none() {
            gone.push(oid);
            continue;
        }
        let kept: HashSet<Tid> = revs.iter().map(|r| r.tid).collect();
        for rev in revs.iter_mut() {
            if rev.back.is_some_and(|b| !kept.contains(&b)) {
                // The record it pointed to is gone; it holds its data itself now.
                rev.back = None;
            }
        }
    }
    if let Some(references) = references {
        if st.objects.contains_key(&Oid::ZERO) {
            let mut queue: Vec<Oid> = vec![Oid::ZERO];
            queue.extend(
                st.objects
                    .iter()
                    .filter(|(_, revs)| revs.iter().any(|r| r.tid >= stop))
                    .map(|(&oid, _)| oid),
            );
            let mut reachable = HashSet::new();
            while let Some(oid) = queue.pop() {
                if !reachable.insert(oid) {
                    continue;
                }
                if let Some(revs) = st.objects.get(&oid) {
                    for data in revs.iter().filter_map(|r| r.data.as_ref()) {
                        queue.extend(
                            references(data)
                                .into_iter()
                                .filter(|o| !reachable.contains(o)),
                        );
                    }
                }
            }
            gone.extend(
                st.objects
                    .keys()
                    .filter(|oid| !reachable.contains(oid))
                    .copied(),
            );
        }
    }
    for oid in gone {
        if let Some(revs) = st.objects.remove(&oid) {
            dead_blobs.extend(revs.into_iter().filter_map(|r| r.blob));
        }
    }
    let objects = &st.objects;
    let has_rev = |oid: &Oid, tid: Tid| {
        objects
            .get(oid)
            .is_some_and(|revs| revs.binary_search_by(|r| r.tid.cmp(&tid)).is_ok())
    };
    for (&tid, txn) in st.txns.iter_mut() {
        txn.oids.retain(|oid| has_rev(oid, tid));
        if tid < stop {
            txn.status = b'p';
        }
    }
    st.txns
        .retain(|&tid, txn| tid >= stop || !txn.oids.is_empty());
    st.pack_stop = Some(stop);
    dead_blobs
}
