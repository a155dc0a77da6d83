//! Events journaled in the other order than they happened relative to a rename.
//!
//! The probes take an event's seq at syscall exit, after its names were taken (a file's path
//! named from its dentry, or a path op's names looked up by the kernel since its syscall
//! entered). A rename running in between can take its seq on the other side: the event is
//! then journaled under a name the replica does not have yet, or no longer has (a file written
//! or created in a directory that is being renamed; log rotation). The probes flag such events
//! (`FX_F_PATH_RACY`: a rename or mount change ran in the event's window, anywhere on the
//! machine) and give each event and rename its window in seqs: `[seq_named, seq]`.
//!
//! Pure bookkeeping, no I/O: the recorder keeps the renames it journaled recently and the
//! flagged events whose window may still meet a rename not journaled yet. A flagged event and
//! a rename *raced* when their windows overlap and one names an ancestor of (or the same path
//! as) the other. Only then is anything healed: the event's names, the rename's names and the
//! event's names seen through that rename are re-stated (`Resync` of what the source has
//! there once every racing rename is journaled), and a file event's inode is re-read where it
//! is. Renames elsewhere on the machine (outside the watched root) cost nothing.
//! docs/capture.md, "Renames racing other changes".

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use foxing_proto::RelPath;

/// Renames remembered for events flagged later (whose window may reach back to them). An event
/// whose window began before the oldest one remembered is healed conservatively.
pub const RECENT_RENAMES_MAX: usize = 4096;
/// Names waiting to be re-stated; past this the recorder makes a whole-tree base instead.
pub const RESTATE_NAMES_MAX: usize = 65_536;
/// Flagged events waiting for the renames to settle (renames that never stop can hold them for
/// up to MOVED_SETTLE_MAX_MS); past this a flagged event is healed as if it raced.
pub const WAITING_EVENTS_MAX: usize = 65_536;

/// Where `p` is after renaming `from` to `to` (both ways for an exchange); None if the
/// rename did not move it.
pub fn renamed_path(p: &RelPath, from: &RelPath, to: &RelPath, exchange: bool) -> Option<RelPath> {
    let under = |dir: &RelPath, new: &RelPath| {
        let rest = p.as_bytes().strip_prefix(dir.as_bytes())?;
        if !rest.is_empty() && rest[0] != b'/' {
            return None;
        }
        let mut b = new.as_bytes().to_vec();
        b.extend_from_slice(rest);
        Some(RelPath::new(b))
    };
    under(from, to).or_else(|| if exchange { under(to, from) } else { None })
}

/// `a` is `b` or lies below it.
pub fn at_or_below(a: &RelPath, b: &RelPath) -> bool {
    a == b || below(a, b)
}

/// `a` is strictly below `b`.
fn below(a: &RelPath, b: &RelPath) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() > b.len() && a.starts_with(b) && a[b.len()] == b'/'
}

/// Where a part of `n` went when renaming `from` to `to` moved it out of `n` (both ways for
/// an exchange); None if the rename moved nothing from below `n`.
fn moved_out_of(n: &RelPath, from: &RelPath, to: &RelPath, exchange: bool) -> Option<RelPath> {
    if below(from, n) {
        Some(to.clone())
    } else if exchange && below(to, n) {
        Some(from.clone())
    } else {
        None
    }
}

/// `a` is `b`, or an ancestor or descendant of it.
pub fn related(a: &RelPath, b: &RelPath) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.starts_with(short) && (long.len() == short.len() || long[short.len()] == b'/')
}

/// A rename as journaled: its window and the names under the root it changed (`from` is None
/// when it came from outside the root, `to` when it left it).
#[derive(Clone, Debug)]
pub struct RenameSeen {
    pub seq_named: u64,
    pub seq: u64,
    pub from: Option<RelPath>,
    pub to: Option<RelPath>,
    pub exchange: bool,
}

impl RenameSeen {
    fn names(&self) -> impl Iterator<Item = &RelPath> {
        self.from.iter().chain(self.to.iter())
    }
}

/// What to re-read of a file event's inode (kernel dev, ino) if it raced: `chunks` of
/// CHUNK_BYTES, or all of it (None), found first at `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub path: RelPath,
    pub key: (u64, u64),
    pub chunks: Option<RangeInclusive<u64>>,
}

/// A flagged event: its window and the names under the root it journaled.
#[derive(Clone, Debug)]
pub struct RacyEvent {
    pub seq_named: u64,
    pub seq: u64,
    pub names: Vec<RelPath>,
    pub mark: Option<Mark>,
}

/// What a flagged event needs now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No journaled rename raced it (yet: it waits until the renames settle).
    Waiting,
    /// It raced: its names are queued for re-statement; re-read its inode if it has a mark.
    Raced(Option<Mark>),
    /// Its window reaches back past the renames remembered: heal it as if it raced, and a
    /// path op (no mark: where its object went is unknown) with a whole-tree base.
    Unknown(Option<Mark>),
}

#[derive(Debug, Default)]
pub struct Races {
    /// In seq order (a batch is sorted; a rename late from another CPU is inserted in place).
    renames: VecDeque<RenameSeen>,
    /// The highest seq of a rename no longer remembered.
    forgotten_seq: Option<u64>,
    /// In seq order; with whether it raced already.
    waiting: Vec<(RacyEvent, bool)>,
    restate: Vec<RelPath>,
    restate_overflowed: bool,
    /// The renames journaled during the re-statement pass in progress.
    pass_renames: Option<Vec<(RelPath, RelPath, bool)>>,
}

impl Races {
    /// Flagged events wait, or names wait to be re-stated: a heal is due once the renames
    /// in flight are journaled.
    pub fn holding(&self) -> bool {
        !self.waiting.is_empty() || !self.restate.is_empty() || self.restate_overflowed
    }

    /// A flagged event, after every rename journaled before it.
    pub fn event(&mut self, e: RacyEvent) -> Verdict {
        let unknown = self.forgotten_seq.is_some_and(|f| f >= e.seq_named)
            || self.waiting.len() >= WAITING_EVENTS_MAX;
        // Renames that ended before the event's window began cannot have raced it.
        let first = self.renames.partition_point(|r| r.seq < e.seq_named);
        let raced: Vec<RenameSeen> = self
            .renames
            .range(first..)
            .filter(|r| races(&e, r))
            .cloned()
            .collect();
        for r in &raced {
            self.queue(&e, r);
        }
        let hit = unknown || !raced.is_empty();
        if unknown {
            self.push_names(e.names.iter().cloned());
        }
        let mark = hit.then(|| e.mark.clone()).flatten();
        if self.waiting.len() < WAITING_EVENTS_MAX {
            let at = self.waiting.partition_point(|(w, _)| w.seq < e.seq);
            self.waiting.insert(at, (e, hit));
        }
        if unknown {
            Verdict::Unknown(mark)
        } else if hit {
            Verdict::Raced(mark)
        } else {
            Verdict::Waiting
        }
    }

    /// A rename journaled (after `event` if it was flagged itself). Returns, for each waiting
    /// event it raced that had not raced before, its mark (None for a path op).
    pub fn rename(&mut self, r: RenameSeen) -> Vec<Option<Mark>> {
        if let (Some(pass), Some(from), Some(to)) = (&mut self.pass_renames, &r.from, &r.to) {
            pass.push((from.clone(), to.clone(), r.exchange));
        }
        let mut marks = Vec::new();
        let mut hits = Vec::new();
        // Events whose seq came before the rename's window began cannot have raced it.
        let first = self.waiting.partition_point(|(e, _)| e.seq < r.seq_named);
        for (i, (e, hit)) in self.waiting.iter_mut().enumerate().skip(first) {
            if races(e, &r) {
                if !*hit {
                    marks.push(e.mark.clone());
                    *hit = true;
                }
                hits.push(i);
            }
        }
        for i in hits {
            let e = self.waiting[i].0.clone();
            self.queue(&e, &r);
        }
        if self.renames.len() >= RECENT_RENAMES_MAX {
            if let Some(old) = self.renames.pop_front() {
                self.forgotten_seq = Some(self.forgotten_seq.map_or(old.seq, |f| f.max(old.seq)));
            }
        }
        let at = self.renames.partition_point(|o| o.seq < r.seq);
        self.renames.insert(at, r);
        marks
    }

    /// A rename, in seq order among the events given to `event` and `rename`, before either is
    /// called for it: names queued by earlier events move with it (they name places in the
    /// replica, which applies it after them).
    ///
    /// A part of a queued name moved out of it (a rename of something below it) is not on the
    /// replica either (the name is re-stated because the replica's copy is missing or wrong):
    /// where it went is queued too.
    pub fn follow(&mut self, from: &RelPath, to: &RelPath, exchange: bool) {
        let mut out = Vec::new();
        for n in &mut self.restate {
            if let Some(p) = renamed_path(n, from, to, exchange) {
                *n = p;
            } else {
                out.extend(moved_out_of(n, from, to, exchange));
            }
        }
        self.push_names(out);
    }

    /// Whether `name` itself waits to be re-stated.
    pub fn queued(&self, name: &RelPath) -> bool {
        self.restate.iter().any(|n| n == name)
    }

    /// `p` is a queued name or lies below one (the replica's state there is not the source's).
    pub fn waiting_at_or_above(&self, p: &RelPath) -> bool {
        self.restate.iter().any(|n| at_or_below(p, n))
    }

    /// A hard link journaled, in seq order as `follow`: a new name of a file below a queued name
    /// is queued too (its first name is not on the replica, so neither is the link).
    pub fn follow_link(&mut self, existing: &RelPath, new: &RelPath) {
        if self
            .restate
            .iter()
            .any(|n| n == existing || below(existing, n))
        {
            self.push_names([new.clone()]);
        }
    }

    /// Queues `name` for re-statement by the next heal (an entry that arrived from outside the
    /// root): like the names of a raced event, it follows the renames converted after it.
    pub fn restate_name(&mut self, name: RelPath) {
        self.push_names([name]);
    }

    /// Every rename that could race a waiting event is journaled: stop waiting. Returns the
    /// names to re-state (parents before children, no duplicates), or None when there were
    /// too many (the caller makes a whole-tree base).
    pub fn settle(&mut self) -> Option<Vec<RelPath>> {
        self.waiting.clear();
        let mut names = std::mem::take(&mut self.restate);
        if std::mem::take(&mut self.restate_overflowed) {
            return None;
        }
        names.sort();
        names.dedup();
        Some(names)
    }

    /// A re-statement pass begins: renames journaled during it are remembered (`end_pass`).
    pub fn begin_pass(&mut self) {
        self.pass_renames = Some(Vec::new());
    }

    /// Whether a rename was journaled since the re-statement pass began.
    pub fn pass_renamed(&self) -> bool {
        self.pass_renames.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// A re-statement pass ended. A name read while a rename moved it was re-stated before that
    /// rename's record (a `Resync` of it as gone, then the rename of what the replica still had
    /// there finds nothing). So if a rename related to the names was journaled during the pass,
    /// the names are queued again, with where those renames took them; and if renames are
    /// still in flight (`in_flight`), the names wait like a flagged event whose window began
    /// at `seq_begin` (the kernel seq expected when the pass began) for a related rename.
    /// Returns whether the names may need another pass (the caller opens a gap).
    pub fn end_pass(&mut self, names: &[RelPath], seq_begin: u64, in_flight: bool) -> bool {
        let pass = self.pass_renames.take().unwrap_or_default();
        if names.is_empty() {
            return false;
        }
        let touches =
            |from: &RelPath, to: &RelPath| names.iter().any(|n| related(n, from) || related(n, to));
        let moved: Vec<&(RelPath, RelPath, bool)> =
            pass.iter().filter(|(f, t, _)| touches(f, t)).collect();
        if !moved.is_empty() {
            let mut again = Vec::with_capacity(names.len());
            for n in names {
                let mut cur = n.clone();
                again.push(cur.clone());
                for (from, to, exchange) in &moved {
                    if let Some(p) = renamed_path(&cur, from, to, *exchange) {
                        cur = p;
                        again.push(cur.clone());
                    } else {
                        // A part of it moved out while it was read (as in `follow`).
                        again.extend(moved_out_of(&cur, from, to, *exchange));
                    }
                }
            }
            self.push_names(again);
        }
        if in_flight && self.waiting.len() < WAITING_EVENTS_MAX {
            let e = RacyEvent {
                seq_named: seq_begin,
                seq: u64::MAX,
                names: names.to_vec(),
                mark: None,
            };
            self.waiting.push((e, false));
        }
        !moved.is_empty() || in_flight
    }

    /// The names to re-state for `e` racing `r`: both sides' names, and the event's names seen
    /// through the rename when the rename is journaled first (the event named the place from
    /// before it).
    fn queue(&mut self, e: &RacyEvent, r: &RenameSeen) {
        let mut names: Vec<RelPath> = e.names.clone();
        names.extend(r.names().cloned());
        if r.seq < e.seq {
            if let (Some(from), Some(to)) = (&r.from, &r.to) {
                names.extend(
                    e.names
                        .iter()
                        .filter_map(|n| renamed_path(n, from, to, r.exchange)),
                );
            }
        }
        self.push_names(names);
    }

    fn push_names(&mut self, names: impl IntoIterator<Item = RelPath>) {
        for n in names {
            if self.restate.len() >= RESTATE_NAMES_MAX {
                self.restate_overflowed = true;
                self.restate.clear();
            }
            if !self.restate_overflowed {
                self.restate.push(n);
            }
        }
    }
}

/// What an entry is at the source, for [`restate_target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    Directory,
    Other,
}

/// Where re-stating `name` starts: its first component that is missing at the source (`false`:
/// journal it as gone, which removes whatever a misplaced record made below it on the replica),
/// or that is not a directory, or the name itself (`true`: resync that entry, and everything
/// below it). `look` tells what a path is at the source (an error counts as `Other`: the
/// resync reads it again and skips it if it cannot).
pub fn restate_target(name: &RelPath, mut look: impl FnMut(&RelPath) -> Found) -> (RelPath, bool) {
    let b = name.as_bytes();
    let mut end = 0;
    loop {
        let next = b[end..].iter().position(|&c| c == b'/').map(|i| end + i);
        let prefix = RelPath::new(&b[..next.unwrap_or(b.len())]);
        match (look(&prefix), next) {
            (Found::Missing, _) => return (prefix, false),
            (Found::Directory, Some(i)) => end = i + 1,
            (_, _) => return (prefix, true),
        }
    }
}

/// `e` and `r` ran at once (their seq windows overlap) and touch related names.
fn races(e: &RacyEvent, r: &RenameSeen) -> bool {
    r.seq != e.seq
        && r.seq_named <= e.seq
        && r.seq >= e.seq_named
        && e.names.iter().any(|n| r.names().any(|m| related(n, m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec())
    }

    fn rename(seq_named: u64, seq: u64, from: &str, to: &str) -> RenameSeen {
        RenameSeen {
            seq_named,
            seq,
            from: Some(p(from)),
            to: Some(p(to)),
            exchange: false,
        }
    }

    fn create(seq_named: u64, seq: u64, name: &str) -> RacyEvent {
        RacyEvent {
            seq_named,
            seq,
            names: vec![p(name)],
            mark: None,
        }
    }

    #[test]
    fn renamed_path_follows_a_file_or_its_directory_and_both_sides_of_an_exchange() {
        assert_eq!(
            renamed_path(&p("tmp"), &p("tmp"), &p("final"), false),
            Some(p("final"))
        );
        assert_eq!(
            renamed_path(&p("d/x"), &p("d"), &p("e/d2"), false),
            Some(p("e/d2/x"))
        );
        // A sibling sharing the prefix is not under the renamed name.
        assert_eq!(renamed_path(&p("dx/y"), &p("d"), &p("e"), false), None);
        assert_eq!(renamed_path(&p("b"), &p("a"), &p("b"), false), None);
        assert_eq!(
            renamed_path(&p("b/z"), &p("a"), &p("b"), true),
            Some(p("a/z"))
        );
    }

    #[test]
    fn restate_starts_at_the_first_missing_or_non_directory_component() {
        let look = |have: &'static [(&'static str, Found)]| {
            move |q: &RelPath| {
                have.iter()
                    .find(|(n, _)| n.as_bytes() == q.as_bytes())
                    .map_or(Found::Missing, |(_, f)| *f)
            }
        };
        let tree: &[(&str, Found)] = &[("a", Found::Directory), ("a/f", Found::Other)];
        assert_eq!(restate_target(&p("b/d"), look(tree)), (p("b"), false));
        assert_eq!(restate_target(&p("a/d/x"), look(tree)), (p("a/d"), false));
        assert_eq!(restate_target(&p("a/f/x"), look(tree)), (p("a/f"), true));
        assert_eq!(restate_target(&p("a/f"), look(tree)), (p("a/f"), true));
        assert_eq!(restate_target(&p("a"), look(tree)), (p("a"), true));
    }

    #[test]
    fn related_is_ancestry_by_whole_components() {
        assert!(related(&p("d"), &p("d/x")));
        assert!(related(&p("d/x"), &p("d")));
        assert!(related(&p("d/x"), &p("d/x")));
        assert!(!related(&p("d"), &p("dd/x")));
        assert!(!related(&p("d/x"), &p("d/y")));
    }

    /// A directory moved in from outside the root, then renamed twice inside it before the
    /// heal: its subtree is re-stated where it is at the end, once.
    #[test]
    fn a_moved_in_name_follows_the_renames_after_it() {
        let mut r = Races::default();
        r.restate_name(p("in"));
        assert!(r.holding());
        r.follow(&p("in"), &p("d/in2"), false);
        r.follow(&p("d"), &p("e"), false);
        // A rename of something else leaves it alone.
        r.follow(&p("x"), &p("in"), false);
        assert_eq!(r.settle().unwrap(), vec![p("e/in2")]);
        assert!(!r.holding());
    }

    /// An arrival's part renamed (or hard-linked) out of it before the heal: the replica has
    /// neither the arrival nor that part, so where the part went is re-stated too (regression:
    /// the namespace workload left a directory's moved-in `sub/file` missing on the replica).
    #[test]
    fn a_part_moved_out_of_a_queued_name_is_queued_where_it_went() {
        let mut r = Races::default();
        r.restate_name(p("in"));
        r.follow(&p("in/sub"), &p("elsewhere"), false);
        r.follow(&p("x"), &p("in/y"), true); // exchanged: in/y's old content is now at x
        r.follow_link(&p("in/file"), &p("link"));
        r.follow_link(&p("other"), &p("link2")); // unrelated: nothing queued
        r.follow(&p("inx/a"), &p("b"), false); // a sibling sharing the prefix: nothing
        assert_eq!(
            r.settle().unwrap(),
            vec![p("elsewhere"), p("in"), p("link"), p("x")]
        );
    }

    /// The rename of d to e took its seq before a create inside d that the kernel did first
    /// (the create named d/x): d/x, e (and d), and e/x are re-stated.
    #[test]
    fn a_create_journaled_after_the_rename_of_its_directory_restates_both_places() {
        let mut r = Races::default();
        assert!(r.rename(rename(10, 12, "d", "e")).is_empty());
        assert_eq!(r.event(create(11, 13, "d/x")), Verdict::Raced(None));
        let names = r.settle().unwrap();
        assert_eq!(names, vec![p("d"), p("d/x"), p("e"), p("e/x")]);
        assert!(!r.holding());
    }

    /// The create named e/x (the rename had moved d) but took its seq first: found when the
    /// rename arrives; its mark is returned then, once. A later rename moves the queued names.
    #[test]
    fn a_rename_journaled_after_a_create_it_raced_returns_the_mark_once() {
        let mut r = Races::default();
        let mut e = create(11, 12, "e/x");
        e.mark = Some(Mark {
            path: p("e/x"),
            key: (1, 7),
            chunks: None,
        });
        assert_eq!(r.event(e.clone()), Verdict::Waiting);
        r.follow(&p("d"), &p("e"), false);
        assert_eq!(r.rename(rename(10, 13, "d", "e")), vec![e.mark.clone()]);
        r.follow(&p("e"), &p("f"), false);
        assert!(r.rename(rename(20, 21, "e", "f")).is_empty());
        assert_eq!(r.settle().unwrap(), vec![p("d"), p("f"), p("f/x")]);
    }

    /// Regression: the names were moved when the rename was appended to the journal, which
    /// happens after the whole batch is converted: a rename converted before the event in the
    /// same batch moved the names the event queued after it (the old directory was never
    /// re-stated as gone, and the replica kept a stray copy of it: capture_e2e
    /// `changes_inside_a_directory_being_renamed_are_not_lost`, 1 run in 8).
    #[test]
    fn a_rename_does_not_move_the_names_queued_after_it() {
        let mut r = Races::default();
        r.follow(&p("b"), &p("a"), false);
        r.rename(rename(10, 12, "b", "a"));
        assert_eq!(r.event(create(11, 13, "b/d")), Verdict::Raced(None));
        assert_eq!(
            r.settle().unwrap(),
            vec![p("a"), p("a/d"), p("b"), p("b/d")]
        );
    }

    /// Regression: a name re-stated while a rename moved it (read as gone, journaled before the
    /// rename) removed the directory on the replica; the rename then found nothing to move
    /// (`scripts/race-torture.sh dirs`: a file left on the replica, about 1 run in 15).
    #[test]
    fn a_restatement_pass_that_a_related_rename_ran_through_is_queued_again() {
        let mut r = Races::default();
        r.begin_pass();
        assert!(!r.end_pass(&[p("a")], 5, false));
        r.begin_pass();
        assert!(
            !r.end_pass(&[], 5, true),
            "nothing re-stated: nothing to redo"
        );
        assert_eq!(r.settle().unwrap(), Vec::<RelPath>::new());
        // An unrelated rename during the pass changes nothing.
        r.begin_pass();
        r.rename(rename(10, 11, "x", "y"));
        assert!(!r.end_pass(&[p("a/x")], 9, false));
        r.begin_pass();
        r.rename(rename(12, 13, "a", "b"));
        assert!(r.end_pass(&[p("a/x"), p("c")], 12, false));
        assert!(r.holding());
        assert_eq!(r.settle().unwrap(), vec![p("a/x"), p("b/x"), p("c")]);
        // A part renamed out of a name while it was read: where it went too.
        r.begin_pass();
        r.rename(rename(14, 15, "c/sub", "elsewhere"));
        assert!(r.end_pass(&[p("c")], 14, false));
        assert_eq!(r.settle().unwrap(), vec![p("c"), p("elsewhere")]);
        // Renames in flight at the end: the names wait for a related one.
        r.begin_pass();
        assert!(r.end_pass(&[p("c/f")], 20, true));
        assert!(r.rename(rename(19, 22, "c", "d")) == vec![None]);
        assert_eq!(
            r.settle().unwrap(),
            vec![p("c"), p("c/f"), p("d"), p("d/f")]
        );
    }

    #[test]
    fn renames_elsewhere_or_at_other_times_are_not_races() {
        let mut r = Races::default();
        r.rename(rename(1, 2, "a", "b")); // before the event's window
        r.rename(rename(10, 12, "other", "place")); // unrelated names
        assert_eq!(r.event(create(5, 15, "d/x")), Verdict::Waiting);
        assert!(r.rename(rename(16, 17, "d", "e")).is_empty()); // after the event's seq
        assert_eq!(r.settle().unwrap(), Vec::<RelPath>::new());
    }

    /// A rename from another CPU can reach the recorder after renames with higher seqs: it is
    /// kept in seq order, so the search by window still finds it.
    #[test]
    fn a_rename_journaled_late_is_still_found_by_its_seq() {
        let mut r = Races::default();
        r.rename(rename(30, 31, "x", "y"));
        r.rename(rename(10, 12, "d", "e"));
        r.rename(rename(40, 41, "x", "z"));
        assert_eq!(r.event(create(11, 13, "d/f")), Verdict::Raced(None));
    }

    #[test]
    fn an_event_older_than_the_renames_remembered_is_unknown() {
        let mut r = Races::default();
        for i in 0..=RECENT_RENAMES_MAX as u64 {
            r.rename(rename(100 + 2 * i, 101 + 2 * i, "a", "b"));
        }
        assert_eq!(r.event(create(50, 20_000, "x")), Verdict::Unknown(None));
        assert_eq!(r.event(create(200, 20_001, "y")), Verdict::Waiting);
    }
}
