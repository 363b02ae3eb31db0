//! Comparing what the backends answered to one fanned-out call, and the rule that
//! picks the answer the RAID goes with.
//!
//! Each backend's answer is reduced to a [`Verdict`]: what it voted (with the oids
//! undo changed), the write conflicts it found (oid and serials), or the kind of
//! answer-error it raised (with its oid, where it has one; messages are not compared
//! because different storage implementations word them differently). Failures of a
//! backend are not verdicts: those backends are degraded before comparing.
//!
//! **The rule**: the verdict given by the most backends wins (a strict majority is
//! the special case everyone expects); when several verdicts are given by equally
//! many backends — e.g. two backends disagreeing 1:1 — the one given by the backend
//! that comes first in configuration order wins. Every backend with another verdict
//! is degraded ("disagreed on …"). The pick is deterministic: the same answers in the
//! same configuration always give the same winner.

use std::fmt;

use zeoraid_storage::{Oid, StorageError, Tid, VoteOutcome};

/// The comparable essence of an answer-error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    PosKey(Oid),
    ReadConflict(Oid),
    Conflict(Oid),
    Transaction,
    Undo(Option<Oid>),
    MultipleUndo(Vec<Option<Oid>>),
    /// Not an answer (never compared: such backends are degraded first).
    Other,
}

impl AnswerKind {
    pub(crate) fn of(e: &StorageError) -> AnswerKind {
        match e {
            StorageError::PosKey { oid } => AnswerKind::PosKey(*oid),
            StorageError::ReadConflict { oid, .. } => AnswerKind::ReadConflict(*oid),
            StorageError::Conflict { oid, .. } => AnswerKind::Conflict(*oid),
            StorageError::Transaction(_) => AnswerKind::Transaction,
            StorageError::Undo { oid, .. } => AnswerKind::Undo(*oid),
            StorageError::MultipleUndo(list) => {
                let mut oids: Vec<_> = list.iter().map(|(_, oid)| *oid).collect();
                oids.sort();
                AnswerKind::MultipleUndo(oids)
            }
            _ => AnswerKind::Other,
        }
    }
}

/// What one backend answered, reduced to what must be equal on every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Voted (or, for calls without a result, succeeded), with the undone oids.
    Ok(Vec<Oid>),
    /// Write conflicts: (oid, committed, read), sorted.
    Conflicts(Vec<(Oid, Tid, Tid)>),
    /// An answer-error.
    Error(AnswerKind),
}

impl Verdict {
    pub(crate) fn of_vote(outcome: &VoteOutcome) -> Verdict {
        match outcome {
            VoteOutcome::Voted { undone } => {
                let mut undone = undone.clone();
                undone.sort();
                Verdict::Ok(undone)
            }
            VoteOutcome::Conflicts(conflicts) => {
                let mut list: Vec<_> = conflicts
                    .iter()
                    .map(|c| (c.oid, c.committed, c.read))
                    .collect();
                list.sort();
                Verdict::Conflicts(list)
            }
        }
    }

    pub(crate) fn of_error(e: &StorageError) -> Verdict {
        Verdict::Error(AnswerKind::of(e))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok(undone) if undone.is_empty() => f.write_str("ok"),
            Verdict::Ok(undone) => write!(f, "ok (undone {undone:?})"),
            Verdict::Conflicts(list) => {
                let oids: Vec<String> = list.iter().map(|(oid, _, _)| oid.to_string()).collect();
                write!(f, "conflicts on {}", oids.join(", "))
            }
            Verdict::Error(kind) => write!(f, "error {kind:?}"),
        }
    }
}

/// What a voted read answered: the answer reduced to what must be equal on every
/// replica, or the kind of its answer-error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadVerdict<K> {
    Value(K),
    Error(AnswerKind),
}

impl<K: fmt::Debug> fmt::Display for ReadVerdict<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A checksum keeps degrade reasons short whatever the data.
            ReadVerdict::Value(k) => write!(
                f,
                "result {:016x}",
                crate::compare::checksum(format!("{k:?}").as_bytes())
            ),
            ReadVerdict::Error(kind) => write!(f, "error {kind:?}"),
        }
    }
}

/// The outcome of comparing verdicts.
#[derive(Debug)]
pub(crate) struct Decision<V = Verdict> {
    pub winner: V,
    /// The backends that gave the winning verdict, in configuration order.
    pub agreeing: Vec<usize>,
    /// The others with what they answered, and the degrade reason for each.
    pub disagreeing: Vec<(usize, String)>,
}

/// Applies the rule of this module to `(backend index, verdict)` pairs. `None` when
/// there are no verdicts at all.
pub(crate) fn decide<V: PartialEq + Clone + fmt::Display>(
    op: &str,
    verdicts: &[(usize, V)],
) -> Option<Decision<V>> {
    let mut sorted: Vec<&(usize, V)> = verdicts.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    // Groups in order of their first member's configuration position.
    let mut groups: Vec<(&V, Vec<usize>)> = Vec::new();
    for (i, v) in sorted {
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, members)) => members.push(*i),
            None => groups.push((v, vec![*i])),
        }
    }
    // Strictly larger wins, so among equals the earliest group stays.
    let mut best: Option<&(&V, Vec<usize>)> = None;
    for group in &groups {
        let larger = match best {
            None => true,
            Some(b) => group.1.len() > b.1.len(),
        };
        if larger {
            best = Some(group);
        }
    }
    let (winner, agreeing) = best?;
    let mut disagreeing = Vec::new();
    for (verdict, members) in &groups {
        if verdict == winner {
            continue;
        }
        for &i in members {
            disagreeing.push((
                i,
                format!(
                    "disagreed on {op}: answered {verdict}, while {} backend(s) answered {winner}",
                    agreeing.len()
                ),
            ));
        }
    }
    disagreeing.sort_by_key(|(i, _)| *i);
    Some(Decision {
        winner: (*winner).clone(),
        agreeing: agreeing.clone(),
        disagreeing,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn conflict(oid: u64) -> Verdict {
        Verdict::Conflicts(vec![(
            Oid::from_u64(oid),
            Tid::from_u64(2),
            Tid::from_u64(1),
        )])
    }

    #[test]
    fn majority_wins() {
        let d = decide(
            "vote",
            &[
                (0, conflict(1)),
                (1, Verdict::Ok(vec![])),
                (2, Verdict::Ok(vec![])),
            ],
        )
        .unwrap();
        assert_eq!(d.winner, Verdict::Ok(vec![]));
        assert_eq!(d.agreeing, vec![1, 2]);
        assert_eq!(d.disagreeing.len(), 1);
        assert_eq!(d.disagreeing[0].0, 0);
        assert!(d.disagreeing[0].1.starts_with("disagreed on vote"));
    }

    #[test]
    fn tie_goes_to_the_first_in_configuration_order() {
        let d = decide("vote", &[(1, Verdict::Ok(vec![])), (0, conflict(1))]).unwrap();
        assert_eq!(d.winner, conflict(1));
        assert_eq!(d.agreeing, vec![0]);
        let d = decide(
            "vote",
            &[
                (3, conflict(1)),
                (2, conflict(1)),
                (0, conflict(7)),
                (1, conflict(7)),
            ],
        )
        .unwrap();
        assert_eq!(d.winner, conflict(7));
        assert_eq!(d.agreeing, vec![0, 1]);
    }

    #[test]
    fn plurality_wins_without_majority() {
        let d = decide(
            "vote",
            &[
                (0, conflict(1)),
                (1, Verdict::Ok(vec![])),
                (2, Verdict::Ok(vec![])),
                (3, conflict(2)),
            ],
        )
        .unwrap();
        assert_eq!(d.winner, Verdict::Ok(vec![]));
        assert!(decide::<Verdict>("vote", &[]).is_none());
    }
}
