//! Point-in-time restore planning (pure): which base to start from, where to stop, and the
//! nearest restore points on each side.

use foxing_journal::reader::BaseInfo;

/// A point a restore can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestorePoint {
    pub seq: u64,
    pub time_ns: u64,
    /// "sync" (fsync and friends), "base_end", or "record" (--at-any-record).
    pub kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePlan {
    pub base: BaseInfo,
    pub stop: RestorePoint,
    pub before: Option<RestorePoint>,
    pub after: Option<RestorePoint>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PitrError {
    #[error("the target is before the oldest complete base the journal holds (base {base_id} ends at seq {end_seq}); older history was pruned")]
    BeforeOldestBase { base_id: u64, end_seq: u64 },
    #[error("the journal holds no complete base: nothing can be restored yet")]
    NoBase,
    #[error("no restore point at or before the target; the first one after it is seq {0}")]
    NoPointBefore(u64),
}

/// Plans a restore to the last restore point at or before `cut_seq` (the longest prefix of the
/// journal at or before the target). `points` are every sync point and base end, in seq order;
/// with `at_any_record` the stop is `cut_seq` itself (time `cut_time_ns`).
pub fn plan(
    bases: &[BaseInfo],
    points: &[RestorePoint],
    cut_seq: u64,
    cut_time_ns: u64,
    at_any_record: bool,
) -> Result<RestorePlan, PitrError> {
    let complete: Vec<&BaseInfo> = bases.iter().filter(|b| b.end_seq.is_some()).collect();
    let oldest = complete.first().ok_or(PitrError::NoBase)?;
    let stop = if at_any_record {
        RestorePoint {
            seq: cut_seq,
            time_ns: cut_time_ns,
            kind: "record",
        }
    } else {
        match points.iter().rev().find(|p| p.seq <= cut_seq) {
            Some(p) => *p,
            None => {
                return Err(PitrError::NoPointBefore(
                    points.first().map(|p| p.seq).unwrap_or(0),
                ))
            }
        }
    };
    let base = complete
        .iter()
        .rev()
        .find(|b| b.end_seq.is_some_and(|e| e <= stop.seq))
        .copied()
        .copied()
        .ok_or(PitrError::BeforeOldestBase {
            base_id: oldest.id,
            end_seq: oldest.end_seq.unwrap_or(0),
        })?;
    let before = points
        .iter()
        .rev()
        .find(|p| p.seq < stop.seq && p.seq >= base.end_seq.unwrap_or(0))
        .copied();
    let after = points
        .iter()
        .find(|p| p.seq > stop.seq.max(cut_seq))
        .copied();
    Ok(RestorePlan {
        base,
        stop,
        before,
        after,
    })
}

/// The gap window a replica that applied through `applied_seq` sits in, if any: the first
/// `(gap seq, healed seq or u64::MAX)` with `gap <= applied_seq < healed`. Its tree is then not a
/// state the source had (events before the Gap record were lost, their heal is not applied).
pub fn open_gap(windows: &[(u64, u64)], applied_seq: u64) -> Option<(u64, u64)> {
    windows
        .iter()
        .filter(|&&(g, h)| g <= applied_seq && applied_seq < h)
        .min_by_key(|w| w.0)
        .copied()
}

/// Whether a replica that applied through `applied` holds a whole base (some base ended at or
/// before it). A replica that does not holds part of the tree.
pub fn base_applied(bases: &[BaseInfo], applied: u64) -> bool {
    bases
        .iter()
        .any(|b| b.end_seq.is_some_and(|e| e <= applied))
}

/// Sync points and base ends, in seq order, without those inside a gap window (windows as
/// `foxing_journal::reader::gap_windows` gives them: a base begun after a gap closes its window
/// at its end, so that end is offered; a base during which events were lost is not): the
/// points a restore may stop at. Every one is outside every window ([`open_gap`] is None).
pub fn offered_points(
    syncs: impl IntoIterator<Item = (u64, u64)>,
    bases: &[BaseInfo],
    windows: &[(u64, u64)],
) -> Vec<RestorePoint> {
    let inside = |seq: u64| windows.iter().any(|&(g, h)| g <= seq && seq < h);
    let mut points: Vec<RestorePoint> = syncs
        .into_iter()
        .filter(|&(seq, _)| !inside(seq))
        .map(|(seq, time_ns)| RestorePoint {
            seq,
            time_ns,
            kind: "sync",
        })
        .collect();
    for b in bases {
        if let (Some(e), Some(t)) = (b.end_seq, b.end_time_ns) {
            if inside(e) {
                continue;
            }
            points.push(RestorePoint {
                seq: e,
                time_ns: t,
                kind: "base_end",
            });
        }
    }
    points.sort_by_key(|p| p.seq);
    points
}

/// After the source's clock stepped back, a target time can occur again later in the journal.
/// `--until T` resolves to its first occurrence (the longest prefix whose times are all at or
/// before T); this returns the last restore point after `cut_seq` whose own time is at or
/// before `t`, reachable with `--until seq:N`, so that the report can say so.
pub fn later_occurrence(points: &[RestorePoint], cut_seq: u64, t: u64) -> Option<RestorePoint> {
    points
        .iter()
        .rev()
        .find(|p| p.seq > cut_seq && p.time_ns <= t)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_the_clock_went_back_over_is_reported_as_occurring_again() {
        // Times 10..50 at seqs 1..5, then the clock goes back: 20, 30 at seqs 6, 7; then 60.
        let times = [10, 20, 30, 40, 50, 20, 30, 60];
        let points: Vec<RestorePoint> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| RestorePoint {
                seq: i as u64 + 1,
                time_ns: t,
                kind: "sync",
            })
            .collect();
        // T = 35: the prefix ends at seq 3 (time 30); seq 7 (time 30) is the later occurrence.
        assert_eq!(later_occurrence(&points, 3, 35).map(|p| p.seq), Some(7));
        // T = 55: nothing after seq 5 is at or before 55 but seqs 6, 7; the latest is 7.
        assert_eq!(later_occurrence(&points, 5, 55).map(|p| p.seq), Some(7));
        // T = 60: the prefix is the whole journal.
        assert_eq!(later_occurrence(&points, 8, 60), None);
        // A monotone clock never reports one.
        let mono: Vec<RestorePoint> = (1..=8)
            .map(|s| RestorePoint {
                seq: s,
                time_ns: s * 10,
                kind: "sync",
            })
            .collect();
        assert!((0..=80).all(|t| later_occurrence(&mono, t / 10, t).is_none()));
    }

    fn base(id: u64, b: u64, e: u64) -> BaseInfo {
        BaseInfo {
            id,
            begin_seq: b,
            end_seq: Some(e),
            begin_time_ns: b,
            end_time_ns: Some(e),
        }
    }
    fn pt(seq: u64, kind: &'static str) -> RestorePoint {
        RestorePoint {
            seq,
            time_ns: seq * 10,
            kind,
        }
    }

    #[test]
    fn a_replica_between_a_gap_and_its_heal_is_in_an_open_gap() {
        let w = [(10, 20), (30, u64::MAX)];
        assert_eq!(open_gap(&w, 9), None);
        assert_eq!(open_gap(&w, 10), Some((10, 20)));
        assert_eq!(open_gap(&w, 19), Some((10, 20)));
        assert_eq!(open_gap(&w, 20), None);
        assert_eq!(open_gap(&w, 29), None);
        assert_eq!(open_gap(&w, 1000), Some((30, u64::MAX)));
        assert_eq!(open_gap(&[(10, 40), (15, 20)], 16), Some((10, 40)));
    }

    #[test]
    fn sync_points_inside_gap_windows_are_not_offered() {
        let p = offered_points(
            [(5, 50), (12, 120), (25, 250), (35, 350)],
            &[base(1, 1, 3)],
            &[(10, 20), (30, u64::MAX)],
        );
        let seqs: Vec<u64> = p.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [3, 5, 25]);
        assert_eq!(p[0].kind, "base_end");
    }

    /// The postgres_dr failure of stop 19: the live replica's report named the end of a
    /// restarted recorder's base as its last consistent point (base ends were always offered),
    /// and a restore to it then reported `consistent: false`, the restart gap's GapHealed being
    /// journaled one seq after that BaseEnd. Windows now close at the end of a base begun after
    /// the gap, and no point inside a window is offered.
    #[test]
    fn every_offered_point_is_outside_every_gap_window() {
        use foxing_journal::reader::{gap_windows, GapInfo};
        let gap = |seq, healed| GapInfo {
            seq,
            lost: 0,
            reason: 0,
            healed_seq: healed,
            time_ns: 0,
        };
        // Base 1 (1..5); recorder restart gap at 10, its base 11..20, GapHealed at 21; a ring
        // loss at 25 during base 3 (22..30), healed at 31 after it; an open gap at 40 with a
        // later base that never ended.
        let bases = [
            base(1, 1, 5),
            base(2, 11, 20),
            base(3, 22, 30),
            BaseInfo {
                id: 4,
                begin_seq: 41,
                end_seq: None,
                begin_time_ns: 0,
                end_time_ns: None,
            },
        ];
        let windows = gap_windows(
            &[gap(10, Some(21)), gap(25, Some(31)), gap(40, None)],
            &bases,
        );
        assert_eq!(windows, [(10, 20), (25, 31), (40, u64::MAX)]);
        let syncs = [12, 21, 24, 26, 31, 35, 45].map(|s| (s, s * 10));
        let points = offered_points(syncs, &bases, &windows);
        let seqs: Vec<u64> = points.iter().map(|p| p.seq).collect();
        // 20 is the healing base's end; 30 ended a base the loss at 25 hit.
        assert_eq!(seqs, [5, 20, 21, 24, 31, 35]);
        for p in &points {
            assert_eq!(open_gap(&windows, p.seq), None, "{p:?}");
        }
        // What the applier's report names as the last consistent point before the gap at 40.
        let last = plan(&bases, &points, 39, 0, false).unwrap().stop;
        assert_eq!((last.seq, open_gap(&windows, last.seq)), (35, None));
        let last = plan(&bases, &points, 24, 0, false).unwrap().stop;
        assert_eq!((last.seq, open_gap(&windows, last.seq)), (24, None));
    }

    #[test]
    fn stops_at_the_last_point_before_the_cut_from_the_newest_usable_base() {
        let bases = [base(1, 1, 5), base(2, 50, 60)];
        let points = [
            pt(5, "base_end"),
            pt(10, "sync"),
            pt(40, "sync"),
            pt(60, "base_end"),
            pt(70, "sync"),
        ];
        let p = plan(&bases, &points, 45, 450, false).unwrap();
        assert_eq!(p.stop, pt(40, "sync"));
        assert_eq!(p.base.id, 1);
        assert_eq!(p.before, Some(pt(10, "sync")));
        assert_eq!(p.after, Some(pt(60, "base_end")));
        let p = plan(&bases, &points, 75, 750, false).unwrap();
        assert_eq!((p.stop.seq, p.base.id), (70, 2));
        let p = plan(&bases, &points, 45, 450, true).unwrap();
        assert_eq!(
            p.stop,
            RestorePoint {
                seq: 45,
                time_ns: 450,
                kind: "record"
            }
        );
    }

    #[test]
    fn refuses_targets_before_the_oldest_base() {
        let bases = [base(2, 50, 60)];
        let points = [pt(40, "sync"), pt(60, "base_end")];
        assert_eq!(
            plan(&bases, &points, 45, 0, false),
            Err(PitrError::BeforeOldestBase {
                base_id: 2,
                end_seq: 60
            })
        );
        assert_eq!(plan(&[], &points, 45, 0, false), Err(PitrError::NoBase));
        assert_eq!(
            plan(&bases, &points[1..], 45, 0, false),
            Err(PitrError::NoPointBefore(60))
        );
    }
}
