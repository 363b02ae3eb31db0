//! Group commit: finishes past their commit point before their fsync, the vote's
//! fsync and other finishes' fsyncs covering them, status bytes flipped only
//! after the data's fsync, concurrent committers through the async storage, and
//! the fsync-failure path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use zeoraid_filestorage::{AsyncFileStorage, FsError};
use zeoraid_storage::{Storage, StorageError, Tid, VoteOutcome};

fn vote(fs: &zeoraid_filestorage::FileStorage, t: &zeoraid_storage::Transaction) {
    match fs.vote(t).unwrap() {
        VoteOutcome::Voted { .. } => {}
        VoteOutcome::Conflicts(c) => panic!("unexpected conflicts {c:?}"),
    }
}

#[test]
fn the_commit_point_comes_before_the_fsync_and_the_next_vote_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(&data_fs(&dir));
    let t1 = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    vote(&fs, &t1);
    let (tid1, wait1) = fs.finish_deferred(t1.id).unwrap();
    assert_eq!(fs.last_transaction(), tid1, "published at the commit point");
    assert!(!fs.finished_durable(wait1));
    // The next vote's conflict checks see the first transaction...
    let stale = txn("stale", vec![store(1, Tid::ZERO, b"b")]);
    match fs.vote(&stale).unwrap() {
        VoteOutcome::Conflicts(c) => assert_eq!(c[0].committed, tid1),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // ...and its fsync (vote-fsync on) covers the first status byte.
    let fsyncs = fs.group_sync().fsyncs();
    let t2 = txn("two", vec![store(1, tid1, b"c")]);
    vote(&fs, &t2);
    assert_eq!(fs.group_sync().fsyncs(), fsyncs + 1);
    assert!(fs.finished_durable(wait1), "the vote's fsync covers it");
    fs.wait_finished(wait1).unwrap();
    assert_eq!(fs.group_sync().fsyncs(), fsyncs + 1, "no fsync of its own");
    let tid2 = fs.finish(t2.id).unwrap();
    assert_eq!(fs.group_sync().fsyncs(), fsyncs + 2);
    assert_eq!(fs.load(oid(1)).unwrap().1, tid2);
}

#[test]
fn without_vote_fsync_one_fsync_covers_several_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_with(&data_fs(&dir), |o| o.vote_fsync = false);
    let mut seqs = Vec::new();
    for i in 0..5u64 {
        let t = txn("t", vec![store(i, Tid::ZERO, b"x")]);
        vote(&fs, &t);
        seqs.push(fs.finish_deferred(t.id).unwrap().1);
    }
    assert_eq!(fs.group_sync().fsyncs(), 0);
    fs.wait_finished(seqs[4]).unwrap();
    assert_eq!(fs.group_sync().fsyncs(), 1);
    for s in &seqs {
        fs.wait_finished(*s).unwrap();
    }
    assert_eq!(
        fs.group_sync().fsyncs(),
        1,
        "every earlier finish was covered"
    );
}

#[test]
fn finished_transactions_are_on_disk_after_close_even_when_nobody_waited() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open_with(&path, |o| o.vote_fsync = false);
    let t = txn("t", vec![store(1, Tid::ZERO, b"x")]);
    vote(&fs, &t);
    let (tid, wait) = fs.finish_deferred(t.id).unwrap();
    fs.close().unwrap();
    assert!(fs.finished_durable(wait));
    let again = open(&path);
    assert_eq!(again.last_transaction(), tid);
}

#[test]
fn a_failed_fsync_fails_the_finish_and_refuses_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let t0 = commit(&fs, txn("zero", vec![store(0, Tid::ZERO, b"root")]));
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    vote(&fs, &t);
    let (_, wait) = fs.finish_deferred(t.id).unwrap();
    fs.group_sync().fail_next_fsync();
    let err = fs.wait_finished(wait).unwrap_err();
    assert!(
        err.to_string()
            .contains("refuses writes until it is reopened"),
        "{err}"
    );
    // Every write is refused from now on, with the same explanation.
    let next = txn("two", vec![store(2, Tid::ZERO, b"b")]);
    let refused = fs.vote(&next).unwrap_err();
    assert!(matches!(refused, FsError::Io(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("fdatasync failed"),
        "{refused}"
    );
    assert!(fs.new_oids(1).is_err());
    assert!(fs.wait_finished(wait).is_err());
    // Reads go on.
    assert_eq!(fs.load(oid(0)).unwrap().1, t0);
    drop(fs);
    // Reopening rereads the file (here the fsync did not really fail, so the
    // transaction is there).
    let again = open(&path);
    assert_eq!(again.load(oid(1)).unwrap().0.as_ref(), b"a");
}

#[test]
fn a_failed_vote_fsync_fails_the_vote_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    commit(&fs, txn("zero", vec![store(0, Tid::ZERO, b"root")]));
    let size = fs.size();
    fs.group_sync().fail_next_fsync();
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    assert!(fs.vote(&t).is_err());
    assert_eq!(file_len(&path), size, "the voted bytes are truncated away");
    assert!(fs.voted_id().is_none());
    assert!(fs
        .vote(&txn("two", vec![store(2, Tid::ZERO, b"b")]))
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_committers_share_fsyncs_and_all_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let storage = Arc::new(
        AsyncFileStorage::open(&path, zeoraid_filestorage::Options::default())
            .await
            .unwrap(),
    );
    const CLIENTS: u64 = 8;
    const EACH: u64 = 25;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let mut serial = Tid::ZERO;
                let mut tids = Vec::new();
                for i in 0..EACH {
                    let t = txn("c", vec![store(c, serial, format!("{c}-{i}").as_bytes())]);
                    let id = t.id;
                    match storage.vote(t).await.unwrap() {
                        VoteOutcome::Voted { .. } => {}
                        other => panic!("{other:?}"),
                    }
                    let finished = storage.finish_deferred(id).await.unwrap();
                    finished.durable.await.unwrap();
                    serial = finished.tid;
                    tids.push(finished.tid);
                }
                tids
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let tids = t.await.unwrap();
        assert!(tids.windows(2).all(|w| w[0] < w[1]));
        all.extend(tids);
    }
    all.sort();
    all.dedup();
    assert_eq!(
        all.len() as u64,
        CLIENTS * EACH,
        "every commit got its own tid"
    );
    let fsyncs = storage.engine().group_sync().fsyncs();
    // Without sharing: one fsync per vote and one per finish. Through the
    // fsync thread one fsync covers a vote and the finishes waiting with it
    // (about 0.3 to 0.55 per commit here, loaded machine or not).
    assert!(fsyncs <= CLIENTS * EACH, "{fsyncs} fsyncs");
    let last = storage.last_transaction().await.unwrap();
    storage.close().await.unwrap();
    drop(storage);
    let again = open(&path);
    assert_eq!(again.last_transaction(), last);
    for c in 0..CLIENTS {
        let data = again.load(oid(c)).unwrap().0;
        assert_eq!(data.as_ref(), format!("{c}-{}", EACH - 1).as_bytes());
    }
}

#[tokio::test]
async fn a_storage_error_after_a_failed_fsync_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let storage = AsyncFileStorage::open(data_fs(&dir), zeoraid_filestorage::Options::default())
        .await
        .unwrap();
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    let id = t.id;
    storage.vote(t).await.unwrap();
    let finished = storage.finish_deferred(id).await.unwrap();
    storage.engine().group_sync().fail_next_fsync();
    let err = finished.durable.await.unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err:?}");
    // The commit lock was released at the commit point: the next vote runs
    // (and is refused) instead of waiting forever.
    let next = txn("two", vec![store(2, Tid::ZERO, b"b")]);
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), storage.vote(next))
        .await
        .expect("the vote does not wait for the lock");
    assert!(refused.is_err());
}

/// The status byte of the transaction at `tpos`, as on disk.
fn status_on_disk(path: &std::path::Path, tpos: u64) -> u8 {
    use std::os::unix::fs::FileExt;
    let mut byte = [0u8];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut byte, tpos + 16)
        .unwrap();
    byte[0]
}

#[test]
fn the_status_byte_is_written_only_once_the_voted_data_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let tpos = fs.size();
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    let (outcome, sync) = fs.vote_unsynced(&t).unwrap();
    assert!(matches!(outcome, VoteOutcome::Voted { .. }));
    assert!(sync.is_some(), "vote-fsync on: the vote owes an fsync");
    assert_eq!(fs.group_sync().fsyncs(), 0, "answered before its fsync");
    // The caller never ran it (e.g. it went away). The commit point does not
    // wait for it: the transaction is published, its status byte stays `c`.
    drop(sync);
    let (tid, wait) = fs.finish_deferred(t.id).unwrap();
    assert_eq!(fs.last_transaction(), tid);
    assert_eq!(fs.load(oid(1)).unwrap().1, tid);
    assert_eq!(
        fs.group_sync().fsyncs(),
        0,
        "the commit point runs no fsync"
    );
    assert_eq!(status_on_disk(&path, tpos), b'c');
    assert!(!fs.finished_durable(wait));
    fs.wait_finished(wait).unwrap();
    assert_eq!(
        fs.group_sync().fsyncs(),
        2,
        "the data's fsync, then the status byte's"
    );
    assert_eq!(status_on_disk(&path, tpos), b' ');
}

#[test]
fn readers_see_a_transaction_whose_status_byte_is_still_queued_as_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let zero = commit(&fs, txn("zero", vec![store(0, Tid::ZERO, b"root")]));
    let tpos = fs.size();
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    let (_, sync) = fs.vote_unsynced(&t).unwrap();
    drop(sync);
    let (tid, wait) = fs.finish_deferred(t.id).unwrap();
    assert_eq!(status_on_disk(&path, tpos), b'c');
    let statuses: Vec<(Tid, u8)> = fs
        .iterator(None, None)
        .unwrap()
        .map(|r| r.map(|r| (r.tid, r.status)).unwrap())
        .collect();
    assert_eq!(statuses, vec![(zero, b' '), (tid, b' ')]);
    // The iterator had it flipped, after an fsync of its data.
    assert_eq!(status_on_disk(&path, tpos), b' ');
    assert!(fs.group_sync().fsyncs() >= 1);
    let undo_log = fs.undo_log(0, 10, None).unwrap();
    assert_eq!(
        undo_log.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![tid, zero]
    );
    fs.wait_finished(wait).unwrap();
    fs.close().unwrap();
    let again = open(&path);
    assert_eq!(again.last_transaction(), tid);
}

#[test]
fn the_commit_point_does_not_wait_for_the_vote_fsync_which_covers_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(open(&data_fs(&dir)));
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    let (_, sync) = fs.vote_unsynced(&t).unwrap();
    let sync = sync.unwrap();
    let syncer = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(3));
            sync.run(&fs).unwrap();
        })
    };
    let (_, wait) = fs.finish_deferred(t.id).unwrap();
    assert_eq!(fs.group_sync().fsyncs(), 0, "past the commit point at once");
    let started = std::time::Instant::now();
    fs.wait_finished(wait).unwrap();
    let waited = started.elapsed();
    syncer.join().unwrap();
    // Two fsyncs: the vote's (covering the data) and the status byte's —
    // unless this machine stalled the syncer past the wait's patience (then
    // the wait ran its own).
    assert!(
        fs.group_sync().fsyncs() == 2 || waited >= zeoraid_filestorage::group_sync::VOTE_WAIT,
        "{} fsyncs after {waited:?}",
        fs.group_sync().fsyncs()
    );
}

#[test]
fn a_vote_fsync_failing_after_the_answer_fails_the_finish_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let fs = open(&path);
    let zero = commit(&fs, txn("zero", vec![store(0, Tid::ZERO, b"root")]));
    let size = fs.size();
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    let (outcome, sync) = fs.vote_unsynced(&t).unwrap();
    assert!(matches!(outcome, VoteOutcome::Voted { .. }));
    fs.group_sync().fail_next_fsync();
    assert!(sync.unwrap().run(&fs).is_err());
    assert!(fs.finish_deferred(t.id).is_err());
    fs.abort(t.id).unwrap();
    assert_eq!(file_len(&path), size, "the voted bytes are truncated away");
    drop(fs);
    let again = open(&path);
    assert_eq!(again.last_transaction(), zero);
    assert!(again.load(oid(1)).is_err());
}

#[tokio::test]
async fn an_async_vote_is_answered_before_its_fsync_whose_failure_fails_the_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let storage = AsyncFileStorage::open(&path, zeoraid_filestorage::Options::default())
        .await
        .unwrap();
    let zero = txn("zero", vec![store(0, Tid::ZERO, b"root")]);
    let zero_id = zero.id;
    storage.vote(zero).await.unwrap();
    let zero_tid = storage.finish(zero_id).await.unwrap();
    storage.engine().group_sync().fail_next_fsync();
    let t = txn("one", vec![store(1, Tid::ZERO, b"a")]);
    let id = t.id;
    assert!(
        matches!(storage.vote(t).await, Ok(VoteOutcome::Voted { .. })),
        "the vote is answered before its fsync runs (and fails)"
    );
    // The commit point may pass before that fsync fails, or be refused after
    // it: either way the finish is not acknowledged.
    let err = match storage.finish(id).await {
        Ok(tid) => {
            panic!("a transaction whose data did not reach the disk was acknowledged: {tid:?}")
        }
        Err(e) => e,
    };
    assert!(matches!(err, StorageError::Io(_)), "{err:?}");
    storage.abort(id).await.unwrap();
    drop(storage);
    // Its status byte was never flipped: the open cuts it.
    let again = open(&path);
    assert_eq!(again.last_transaction(), zero_tid);
    assert!(again.load(oid(1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_storage_can_be_reopened_at_once() {
    // Dropping the adapter waits for its fsync thread, which holds the
    // storage (and its lock file) during a pass.
    let dir = tempfile::tempdir().unwrap();
    let path = data_fs(&dir);
    let mut serial = Tid::ZERO;
    for i in 0..30u64 {
        let storage = AsyncFileStorage::open(&path, zeoraid_filestorage::Options::default())
            .await
            .unwrap();
        let t = txn("again", vec![store(1, serial, format!("{i}").as_bytes())]);
        let id = t.id;
        storage.vote(t).await.unwrap();
        serial = storage.finish(id).await.unwrap();
        drop(storage);
        let again = open(&path);
        assert_eq!(again.last_transaction(), serial);
    }
}
