//! Prune planning: which seqs may go. Pure logic; the writer carries the plan out.

use crate::reader::BaseInfo;
use crate::replicas::ReplicaAck;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunePlan {
    /// Everything from this seq on is kept; whole segments before it may be deleted.
    pub keep_from_seq: u64,
    /// The base restores will start from (None: nothing may be pruned).
    pub base: Option<BaseInfo>,
    /// Replicas that held the prune back (name, acked seq), unless forced.
    pub held_back_by: Vec<(String, u64)>,
    /// Why nothing can be pruned, if so.
    pub nothing_because: Option<String>,
}

/// Plans a prune at `horizon_ns`: keep the newest complete base that ended at or before the
/// horizon and everything after it; never drop what a registered replica has not acknowledged
/// (unless `force`).
pub fn plan(
    first_seq: u64,
    bases: &[BaseInfo],
    acks: &[ReplicaAck],
    horizon_ns: u64,
    force: bool,
) -> PrunePlan {
    let base = bases
        .iter()
        .filter(|b| b.end_time_ns.is_some_and(|t| t <= horizon_ns))
        .max_by_key(|b| b.begin_seq)
        .copied();
    let Some(b) = base else {
        return PrunePlan {
            keep_from_seq: first_seq,
            base: None,
            held_back_by: Vec::new(),
            nothing_because: Some(
                "no complete base ended at or before the horizon; run `foxing-journal base` (e.g. daily) so older segments can go".into(),
            ),
        };
    };
    let mut keep = b.begin_seq;
    let mut held = Vec::new();
    if !force {
        for a in acks {
            if a.acked_seq + 1 < keep {
                held.push((a.name.clone(), a.acked_seq));
            }
        }
        if let Some(min) = held.iter().map(|h| h.1 + 1).min() {
            keep = min;
        }
    }
    let keep = keep.max(first_seq);
    PrunePlan {
        keep_from_seq: keep,
        base: Some(b),
        held_back_by: held,
        nothing_because: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(id: u64, begin: u64, end: Option<u64>, end_t: Option<u64>) -> BaseInfo {
        BaseInfo {
            id,
            begin_seq: begin,
            end_seq: end,
            begin_time_ns: 0,
            end_time_ns: end_t,
        }
    }

    #[test]
    fn keeps_the_newest_complete_base_before_the_horizon() {
        let bases = [
            base(1, 1, Some(10), Some(100)),
            base(2, 50, Some(60), Some(500)),
            base(3, 90, None, None),
        ];
        let p = plan(1, &bases, &[], 600, false);
        assert_eq!(p.keep_from_seq, 50);
        let p = plan(1, &bases, &[], 400, false);
        assert_eq!(p.keep_from_seq, 1);
        let p = plan(1, &bases, &[], 50, false);
        assert!(p.nothing_because.is_some());
        assert_eq!(p.keep_from_seq, 1);
    }

    #[test]
    fn unacknowledged_records_hold_prune_back_unless_forced() {
        let bases = [base(2, 50, Some(60), Some(500))];
        let acks = [ReplicaAck {
            name: "r1".into(),
            acked_seq: 20,
            time_ns: 0,
        }];
        let p = plan(1, &bases, &acks, 600, false);
        assert_eq!(p.keep_from_seq, 21);
        assert_eq!(p.held_back_by, vec![("r1".to_string(), 20)]);
        assert_eq!(plan(1, &bases, &acks, 600, true).keep_from_seq, 50);
    }
}
