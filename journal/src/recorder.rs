//! The recorder: eBPF events -> journal records, with a base epoch at start.
//!
//! Order of work (docs/capture.md): load the probes (events start flowing into the ring buffer),
//! start a base (BaseBegin, then a Resync + ResyncData of every entry, draining the ring between
//! entries so live changes keep their place in the order, then BaseEnd), then journal live events
//! until stopped. Every restart (clean or after kill -9) starts with a new base, which covers
//! whatever changed while the recorder was down. A lost kernel event (a gap in the kernel's event
//! counter, or ring buffer drops) becomes a Gap record, a counter and a log line, and is healed by
//! a new base (targeted resync of the affected inodes is planned).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foxing_probes::layout::*;
use foxing_probes::{ProbeConfig, Probes, RawEvent};

use crate::views;
use foxing_proto::record::{
    EntryKind, EntryMeta, Xattr, RENAME_EXCHANGE, RENAME_WHITEOUT, XATTR_FOLLOW,
};
use foxing_proto::time::now_ns;
use foxing_proto::{Event, GapReason, Op, RelPath, SyncKind, Writer, MAX_FILE_BYTES};

use crate::{Journal, JournalOptions};

/// Content is journaled in chunks of at most this many bytes.
pub const RESYNC_CHUNK_BYTES: usize = 1 << 20;
/// Events drained from the ring buffer per batch.
pub const EVENTS_PER_BATCH: usize = 4096;
/// A batch being converted is journaled in parts of about this many payload bytes (regression:
/// `fio` 1 MiB writes above the payload cap, each re-read, made a batch of 4096 events hold
/// ~3 GiB; the recorder's peak RSS reached 3.2 GiB in the benchmark harness).
pub const PUMP_FLUSH_BYTES: usize = 16 << 20;
/// Longest wait for events when nothing is due.
pub const IDLE_POLL_MS: u64 = 50;
/// The times sweep runs once the ring was quiet this long after a change...
pub const TIMES_SWEEP_QUIET_MS: u64 = 5;
/// ...and at least this often under continuous load.
pub const TIMES_SWEEP_MAX_INTERVAL_MS: u64 = 1_000;
/// A kernel seq missing from the ring for this long is a loss (it may arrive late: two CPUs
/// take seqs and write the ring in either order).
pub const KERNEL_REORDER_GRACE_MS: u64 = 50;
/// Most missing kernel seqs waiting for their grace period; more is a loss at once.
pub const MAX_PENDING_SEQS: usize = 4096;
/// Hot pages of shared-mapped files are re-read this often.
pub const MAPPED_REREAD_MS: u64 = 200;
/// Most paths remembered for the sweep; past it, the sweep stats the whole tree.
pub const TIMES_SWEEP_MAX_PATHS: usize = 65_536;
/// A recorder whose journal cannot be written (full disk, I/O error) tries to open it again
/// this often.
pub const JOURNAL_RETRY_MS: u64 = 1_000;
/// A heal waits until no event was lost for this long (the recorder caught up with the ring)...
pub const HEAL_QUIET_MS: u64 = 500;
/// ...or at most this long, under sustained overload.
pub const HEAL_MAX_DEFER_MS: u64 = 5_000;
/// How long a heal of files moved before their re-read waits at most for the renames and
/// mount changes in flight to finish (see `resync_later`).
pub const MOVED_SETTLE_MAX_MS: u64 = 30_000;
/// Most chunks of one racy-path write re-read one by one; beyond, the whole inode.
pub const RACY_CHUNKS_MAX: u64 = 64;
/// Ring batches drained at the end of a re-statement pass to find the renames that ran during
/// it; past this the renames are treated as still in flight (the names wait for a related one).
pub const RESTATE_DRAIN_BATCHES_MAX: usize = 64;
/// Rename targets waiting to be walked again by a base (renames journaled while it walked), at
/// most; past it, another base follows.
pub const BASE_REWALK_MAX: usize = 4096;
/// Rounds a base's end waits for the renames that ran during its walk (each: walk their
/// targets again, drain the ring, or wait 1 ms for renames in flight); past it, another base
/// follows.
pub const BASE_SETTLE_ROUNDS_MAX: usize = 2000;
/// Most inodes a ring loss is healed by resyncing one by one; beyond, a whole-tree base.
pub const TARGETED_HEAL_MAX_INODES: usize = 4096;
/// Most inode -> path entries remembered for targeted heals (then the map starts over).
pub const INODE_PATHS_MAX: usize = 262_144;
/// How often the probes' skipped-run counters are read (one bpf syscall per program).
pub const MISSED_RUNS_CHECK_MS: u64 = 100;
/// How often the root path is checked to still name the watched directory when no event
/// arrives (a drain with events checks it every time, before converting them).
pub const ROOT_CHECK_IDLE_MS: u64 = 1_000;

/// The kernel's dev_t (what the probes and `RootReplaced` carry) of a file's filesystem.
pub fn kernel_dev_of(md: &std::fs::Metadata) -> u64 {
    foxing_probes::kernel_dev(md.dev())
}

/// The root path no longer names the directory the probes watch: it was moved, removed or
/// replaced (`mv data data.old; mv restored data`), or a filesystem was mounted over it. The
/// probes would keep reporting the old directory while every read by path (re-reads, heals,
/// bases) reads the new one, and changes under the new one would go unseen. The recorder
/// stops at the last batch it verified; `foxing-journal record` starts again on what the path
/// names then (a new base), if that is on the same filesystem (an unmounted data filesystem
/// leaves an empty mount point, which would empty every replica: an operator decides).
#[derive(Debug, thiserror::Error)]
#[error(
    "the watched root {root} no longer names the directory being recorded (was dev {was_dev:#x} ino {was_ino}, now {now}): it was moved, removed, replaced or mounted over"
)]
pub struct RootReplaced {
    pub root: String,
    pub was_dev: u64,
    pub was_ino: u64,
    /// What the path names now ("gone: ..." or "dev 0x.. ino ..").
    pub now: String,
}

#[derive(Clone, Debug)]
pub struct RecorderOptions {
    pub root: PathBuf,
    pub journal: PathBuf,
    pub journal_opts: JournalOptions,
    pub payload_cap_bytes: u32,
    pub ring_size_bytes: u32,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecorderStats {
    pub events: u64,
    /// Inexact writes not re-read because a later one in the same batch covers their range.
    pub covered_rereads: u64,
    pub records: u64,
    pub payload_bytes: u64,
    pub inexact_ranges: u64,
    /// Writes that overlapped another write to the same inode in time, journaled as re-read
    /// ranges (a subset of inexact_ranges).
    pub concurrent_writes: u64,
    /// ftruncate/fallocate calls that raced a write to the same file, journaled as the size
    /// (and range bytes) after them.
    pub concurrent_resizes: u64,
    pub lost_events: u64,
    pub bases: u64,
    pub base_entries: u64,
    /// Shared writable mappings seen, and bytes journaled from re-reading their pages.
    pub mapped_files: u64,
    pub mapped_bytes: u64,
    /// Times the journal could not be written (full disk, I/O error) and recording went on in
    /// degraded mode; records not journaled meanwhile (healed by a base when it recovers).
    pub journal_failures: u64,
    pub unjournaled_records: u64,
    /// 1 while the journal cannot be written.
    pub degraded: u64,
    /// Steps of the wall clock seen while recording (record times follow them).
    pub clock_steps: u64,
    /// Changes the probes saw but could not describe (io_uring path operations, fixed files):
    /// each a gap healed by a base.
    pub untracked: u64,
    /// Path ops whose absolute name could not be mapped into the caller's view (its mount
    /// namespace had no process left), that named a descriptor whose name was removed, or
    /// that went through a name arrived from outside and removed before it was read (what
    /// they changed is unknown): each a gap healed by a base.
    pub unresolved_names: u64,
    /// Setuid/setgid bits the kernel cleared on its own (a write, truncate, fallocate, O_TRUNC
    /// or chown by a caller without CAP_FSETID, or chmod g+s by one outside the file's group),
    /// journaled as a `Chmod` after the call.
    pub implicit_mode_changes: u64,
    /// Mount points under the root a filesystem was mounted on or unmounted from (mount,
    /// umount, move_mount, pivot_root): each re-stated like an arrival.
    pub mount_changes: u64,
    /// Failed calls that may still have changed a file (fallocate: mtime, a part-way size),
    /// journaled as the file's size as it is after the call.
    pub failed_changes: u64,
    /// Shared mappings noted over pages that were dirty already (stores to those report
    /// nothing): their dirty chunks are re-read until writeback cleans them.
    pub mapped_settling: u64,
    /// Ranges to re-read whose file was no longer at the written path when the recorder read
    /// it (renamed, replaced or removed right after the write): each inode is resynced where
    /// it is then (a gap healed without a base).
    pub moved_before_read: u64,
    /// File events whose path was named while a rename was in flight: what they changed is
    /// re-read where the file is once the renames are journaled (a gap until then).
    pub racy_paths: u64,
    /// Entries that arrived from outside the root (renamed, exchanged or linked in, O_TMPFILE
    /// files given a name): each re-stated from the source with its subtree by the next heal.
    pub moved_in: u64,
    /// Changes to files with no name left (removed while open, O_TMPFILE not linked yet):
    /// nothing to journal.
    pub unlinked_changes: u64,
    /// Probe runs the kernel skipped (another BPF program on the CPU); each is healed by a base.
    pub missed_runs: u64,
    /// Files whose pages turned dirty outside every hooked syscall, tracked since.
    pub unannounced_dirty_files: u64,
    /// Ring losses healed by resyncing only the inodes they touched, and the entries resynced.
    pub targeted_heals: u64,
    pub targeted_heal_entries: u64,
}

impl RecorderStats {
    /// Prometheus text exposition (rates come from the counters: rate(x[1m])).
    pub fn render(&self, durable_seq: u64, root: &str) -> String {
        use crate::metrics::{label, metric};
        let l = format!("{{root=\"{}\"}}", label(root));
        let mut o = String::new();
        metric(
            &mut o,
            "foxing_recorder_events_total",
            "counter",
            "Kernel events received.",
            &l,
            self.events,
        );
        metric(
            &mut o,
            "foxing_recorder_records_total",
            "counter",
            "Records journaled.",
            &l,
            self.records,
        );
        metric(
            &mut o,
            "foxing_recorder_payload_bytes_total",
            "counter",
            "Write payload bytes journaled from the kernel.",
            &l,
            self.payload_bytes,
        );
        metric(
            &mut o,
            "foxing_recorder_inexact_ranges_total",
            "counter",
            "Writes journaled as re-read ranges.",
            &l,
            self.inexact_ranges,
        );
        metric(
            &mut o,
            "foxing_recorder_concurrent_writes_total",
            "counter",
            "Writes that overlapped another write to the same file in time, journaled as re-read ranges.",
            &l,
            self.concurrent_writes,
        );
        metric(
            &mut o,
            "foxing_recorder_concurrent_resizes_total",
            "counter",
            "ftruncate/fallocate calls that raced a write to the same file, journaled as the state after them.",
            &l,
            self.concurrent_resizes,
        );
        metric(
            &mut o,
            "foxing_recorder_lost_events_total",
            "counter",
            "Kernel events lost (ring full); each loss is a gap healed by a base.",
            &l,
            self.lost_events,
        );
        metric(
            &mut o,
            "foxing_recorder_bases_total",
            "counter",
            "Bases (full resyncs) journaled, including heals.",
            &l,
            self.bases,
        );
        metric(
            &mut o,
            "foxing_recorder_base_entries_total",
            "counter",
            "Entries journaled by bases.",
            &l,
            self.base_entries,
        );
        metric(
            &mut o,
            "foxing_recorder_mapped_files_total",
            "counter",
            "Shared writable mappings seen.",
            &l,
            self.mapped_files,
        );
        metric(
            &mut o,
            "foxing_recorder_mapped_bytes_total",
            "counter",
            "Bytes journaled from re-reading mapped pages.",
            &l,
            self.mapped_bytes,
        );
        metric(
            &mut o,
            "foxing_recorder_journal_failures_total",
            "counter",
            "Times the journal could not be written (full disk, I/O error); each is healed by a base.",
            &l,
            self.journal_failures,
        );
        metric(
            &mut o,
            "foxing_recorder_unjournaled_records_total",
            "counter",
            "Records that could not be journaled while degraded (healed by a base).",
            &l,
            self.unjournaled_records,
        );
        metric(
            &mut o,
            "foxing_recorder_degraded",
            "gauge",
            "1 while the journal cannot be written: changes are counted, not journaled.",
            &l,
            self.degraded,
        );
        metric(
            &mut o,
            "foxing_recorder_clock_steps_total",
            "counter",
            "Steps of the wall clock seen while recording (record times follow the wall clock).",
            &l,
            self.clock_steps,
        );
        metric(
            &mut o,
            "foxing_recorder_untracked_total",
            "counter",
            "Changes the probes saw but could not describe (io_uring path operations, fixed files); each is a gap healed by a base.",
            &l,
            self.untracked,
        );
        metric(
            &mut o,
            "foxing_recorder_unresolved_names_total",
            "counter",
            "Absolute names from another mount namespace or root that could not be mapped (its processes were gone), path calls on a descriptor whose name was removed, and metadata calls through an arrived name removed before it was read; each is a gap healed by a base.",
            &l,
            self.unresolved_names,
        );
        metric(
            &mut o,
            "foxing_recorder_mount_changes_total",
            "counter",
            "Mount points under the root a filesystem was mounted on or unmounted from; each is re-stated from the source.",
            &l,
            self.mount_changes,
        );
        metric(
            &mut o,
            "foxing_recorder_mapped_settling_total",
            "counter",
            "Shared mappings noted over pages that were dirty already (stores to those report nothing): their dirty chunks are re-read until writeback cleans them.",
            &l,
            self.mapped_settling,
        );
        metric(
            &mut o,
            "foxing_recorder_failed_changes_total",
            "counter",
            "Failed calls that may still have changed a file (fallocate: its mtime, a size reached part-way); each is journaled as the file's size after the call, and its times are swept.",
            &l,
            self.failed_changes,
        );
        metric(
            &mut o,
            "foxing_recorder_implicit_mode_changes_total",
            "counter",
            "Setuid/setgid bits the kernel cleared on its own (a write, truncate or chown by a caller without CAP_FSETID), journaled as a chmod after the call.",
            &l,
            self.implicit_mode_changes,
        );
        metric(
            &mut o,
            "foxing_recorder_moved_before_read_total",
            "counter",
            "Ranges to re-read whose file had been renamed, replaced or removed before the recorder read them; each inode is resynced where it is then.",
            &l,
            self.moved_before_read,
        );
        metric(
            &mut o,
            "foxing_recorder_racy_paths_total",
            "counter",
            "Events that raced a rename of their names (and may be journaled on its other side); their names are re-stated from the source, and a file's changes re-read where it is, once the renames are journaled.",
            &l,
            self.racy_paths,
        );
        metric(
            &mut o,
            "foxing_recorder_moved_in_total",
            "counter",
            "Entries that arrived from outside the root (renamed, exchanged or linked in, O_TMPFILE files given a name); each is re-stated from the source with its subtree by the next heal.",
            &l,
            self.moved_in,
        );
        metric(
            &mut o,
            "foxing_recorder_unlinked_changes_total",
            "counter",
            "Changes to files with no name left (removed while open, O_TMPFILE not linked yet): nothing to journal.",
            &l,
            self.unlinked_changes,
        );
        metric(
            &mut o,
            "foxing_recorder_missed_probe_runs_total",
            "counter",
            "Probe runs the kernel skipped because another BPF program ran on that CPU; each is a gap healed by a base.",
            &l,
            self.missed_runs,
        );
        metric(
            &mut o,
            "foxing_recorder_targeted_heals_total",
            "counter",
            "Ring losses healed by resyncing only the inodes they touched (no whole-tree base).",
            &l,
            self.targeted_heals,
        );
        metric(
            &mut o,
            "foxing_recorder_durable_seq",
            "gauge",
            "Newest durable seq of the journal.",
            &l,
            durable_seq,
        );
        o
    }
}

/// Continuity of the kernel's gapless event seqs. Two CPUs can take consecutive seqs and reach
/// the ring in the other order, so a seq missing at a batch boundary is a loss only after
/// KERNEL_REORDER_GRACE_MS (regression: `a_seq_reordered_across_batches_is_not_a_loss`; CI saw
/// 2 false losses in a namespace workload).
#[derive(Default)]
pub struct SeqTracker {
    next: Option<u64>,
    missing: std::collections::BTreeMap<u64, Instant>,
}

impl SeqTracker {
    /// A seq arrived (within a batch, in sorted order). Returns seqs lost at once (a jump too
    /// large to wait for).
    pub fn observe(&mut self, seq: u64, now: Instant) -> u64 {
        let mut lost = 0;
        match self.next {
            Some(expect) if seq > expect => {
                if seq - expect > MAX_PENDING_SEQS as u64 {
                    lost = seq - expect;
                } else {
                    for m in expect..seq {
                        self.missing.insert(m, now);
                    }
                }
            }
            Some(expect) if seq < expect => {
                self.missing.remove(&seq);
            }
            _ => {}
        }
        self.next = Some(self.next.map_or(seq + 1, |e| e.max(seq + 1)));
        lost
    }

    /// Seqs missing for longer than the grace period: lost.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let grace = Duration::from_millis(KERNEL_REORDER_GRACE_MS);
        let before = self.missing.len();
        self.missing.retain(|_, t| now.duration_since(*t) < grace);
        let mut lost = (before - self.missing.len()) as u64;
        if self.missing.len() > MAX_PENDING_SEQS {
            lost += self.take_missing();
        }
        lost
    }

    /// Whether every seq below `end` has arrived or been given up as lost.
    pub fn settled_below(&self, end: u64) -> bool {
        self.next.is_some_and(|n| n >= end) && self.missing.range(..end).next().is_none()
    }

    /// Forgets the seqs still missing (a heal covers them); returns how many.
    pub fn take_missing(&mut self) -> u64 {
        std::mem::take(&mut self.missing).len() as u64
    }
}

/// A re-statement pass (`Recorder::restate`): its names, and the hard-linked files whose other
/// names are not on the replica (by their kernel dev and inode: link count, and the names the
/// pass gave them, the first one re-stated with its data, the others linked to it).
struct RestatePass {
    names: Vec<RelPath>,
    unplaced: HashMap<(u64, u64), (u64, Vec<RelPath>)>,
}

/// The journal could not be written: recording goes on without it (see `Recorder::failed`).
struct Degraded {
    last_try: Instant,
    /// Records (and kernel events) not journaled since the failure.
    lost: u64,
    retries: u64,
}

pub struct Recorder {
    opts: RecorderOptions,
    /// `None` while degraded: dropped after a failed write, opened again every
    /// JOURNAL_RETRY_MS.
    journal: Option<Journal>,
    degraded: Option<Degraded>,
    /// The durable seq of the journal when it was last open.
    durable_seq: u64,
    probes: Probes,
    /// Maps absolute names into their caller's view (containers, chroots, aliases).
    views: crate::views::Views,
    events: Vec<RawEvent>,
    pub stats: RecorderStats,
    last_drops: u64,
    /// Dropped events (counted by the kernel, journaled as a gap) whose seqs have not yet shown
    /// up as holes in the kernel's seq stream: those holes are not counted again.
    drops_unmatched: u64,
    /// Probe runs the kernel skipped, as last read, and when.
    last_missed: u64,
    last_missed_check: Instant,
    in_resync: bool,
    /// The re-statement pass running (`restate`).
    restating: Option<RestatePass>,
    /// Where the source's symlinks pointed, in seq order (calls through a removed symlink).
    links: crate::links::SymlinkTargets,
    /// Setuid/setgid files and their modes as journaled (bits the kernel drops on its own).
    special_modes: crate::modes::SpecialModes,
    /// When the root path was last found to name the watched directory (`check_root`).
    last_root_check: Instant,
    /// The root as given (`opts.root` is its canonical path): a symlink flipped to another
    /// directory (`ln -sfn releases/v2 current`) makes it name another directory.
    given_root: PathBuf,
    /// Gaps opened by `gap_after` (each journals the events converted before it).
    gaps_after: u64,
    /// Gap records journaled in this batch whose heal (a base) is still due.
    pending_heals: Vec<u64>,
    /// Some pending heal needs a whole-tree base (a loss the dirty-inode marks do not cover).
    full_heal: bool,
    /// Since when heals have been waiting for the recorder to catch up, and the last loss.
    heals_pending_since: Option<Instant>,
    last_loss: Option<Instant>,
    /// One past the highest kernel seq lost so far (see `drained_past_losses`).
    lost_seq_end: u64,
    /// A drain found the ring empty after the last loss was detected.
    ring_clear_since_loss: bool,
    /// Inodes (kernel dev, ino) whose range to re-read had left its path before the recorder
    /// read it (see `resync_later`); resynced by the next heal.
    moved_marks: HashSet<(u64, u64)>,
    /// Chunks (CHUNK_BYTES) of inodes to re-read at the next heal, where the inode is then
    /// (writes whose path was named while a rename was in flight, see `racy_path`).
    chunk_marks: HashMap<(u64, u64), Vec<u64>>,
    /// Events that may be journaled in the other order than a rename they raced (see
    /// `crate::races`): waiting for the renames to settle, and the names to re-state then.
    races: crate::races::Races,
    /// Every rename in flight when the last mark was taken has been journaled since: no
    /// rename or mount change was in flight at the start of a drain that emptied the ring.
    moved_settled: bool,
    /// When the oldest mark still waiting was taken.
    moved_since: Option<Instant>,
    /// Last path seen for each inode (kernel dev, ino), to resync dropped inodes by path.
    inode_paths: HashMap<(u64, u64), RelPath>,
    /// A base is walking the tree.
    base_active: bool,
    /// Rename targets seen during a base: the walk may already have passed their new place
    /// (and not yet their old one), so they are walked again.
    walk_extra: Vec<PathBuf>,
    /// More renames ran through the base than it could walk again: another base follows.
    walk_extra_overflowed: bool,
    /// Paths whose mtime changed since the last times sweep (see [`Recorder::sweep_times`]).
    touched: std::collections::BTreeSet<RelPath>,
    /// More than TIMES_SWEEP_MAX_PATHS were touched: sweep the whole tree.
    touched_all: bool,
    first_touch: Option<Instant>,
    last_event: Instant,
    /// Set (by SIGUSR2 in `foxing-journal record`) when `foxing-journal prune` left a request
    /// in the journal directory: the recorder holds the writer lock, so it prunes itself.
    pub prune_requested: std::sync::Arc<AtomicBool>,
    /// Files with shared writable mappings, re-read while their pages may change.
    mapped: crate::mapped::MappedFiles,
    /// A copy of the statistics and the journal's durable seq for the metrics endpoint,
    /// refreshed by the run loop.
    pub shared: std::sync::Arc<std::sync::Mutex<(RecorderStats, u64)>>,
    /// Entries walked by the base in progress (for progress reports).
    base_walked: u64,
    /// Continuity of the kernel's event seqs.
    seqs: SeqTracker,
    last_mapped_read: Instant,
    /// Whether mapped files have pages to re-read (`MappedFiles::active`, as of the last
    /// re-read or since a mapping or dirty report).
    mapped_active: bool,
}

/// The file `foxing-journal prune` writes for a running recorder: the seq to keep from.
pub const PRUNE_REQUEST_FILE: &str = "prune.request";
/// The recorder's answer: the first seqs of the segments it removed, or an error line.
pub const PRUNE_RESULT_FILE: &str = "prune.result";

/// Renames the paths remembered for the times sweep below `from/` to below `to/` (and, for an
/// exchange, those below `to/` to below `from/`): a rename of a directory moves them.
fn move_touched(
    touched: &mut std::collections::BTreeSet<RelPath>,
    from: &RelPath,
    to: &RelPath,
    exchange: bool,
) {
    let mut take = |dir: &RelPath| -> Vec<Vec<u8>> {
        let mut prefix = dir.as_bytes().to_vec();
        prefix.push(b'/');
        let under: Vec<RelPath> = touched
            .range(RelPath::new(prefix.clone())..)
            .take_while(|p| p.as_bytes().starts_with(&prefix))
            .cloned()
            .collect();
        under
            .into_iter()
            .map(|p| {
                touched.remove(&p);
                p.as_bytes()[prefix.len()..].to_vec()
            })
            .collect()
    };
    let from_children = take(from);
    let to_children = if exchange { take(to) } else { Vec::new() };
    let join = |dir: &RelPath, rest: &[u8]| {
        let mut b = dir.as_bytes().to_vec();
        b.push(b'/');
        b.extend_from_slice(rest);
        RelPath::new(b)
    };
    touched.extend(from_children.iter().map(|r| join(to, r)));
    touched.extend(to_children.iter().map(|r| join(from, r)));
}

/// The paths whose modification time `op` changes on the source (the entry itself for data and
/// creation, the parent directories for namespace changes). The root itself is not tracked.
fn mtime_paths(op: &Op, mut f: impl FnMut(&RelPath)) {
    let parent = |p: &RelPath| -> Option<RelPath> {
        let b = p.as_bytes();
        b.iter()
            .rposition(|&c| c == b'/')
            .map(|i| RelPath::new(&b[..i]))
    };
    let mut with_parent = |p: &RelPath, own: bool| {
        if own {
            f(p);
        }
        if let Some(d) = parent(p) {
            f(&d);
        }
    };
    match op {
        Op::Write { path, .. }
        | Op::Dirty { path, .. }
        | Op::Truncate { path, .. }
        | Op::Fallocate { path, .. }
        | Op::SetTimes { path, .. } => f(path),
        Op::Create { path, .. }
        | Op::Mknod { path, .. }
        | Op::Mkdir { path, .. }
        | Op::Symlink { path, .. } => with_parent(path, true),
        Op::Link { new, .. } => with_parent(new, true),
        Op::Unlink { path } | Op::Rmdir { path } => with_parent(path, false),
        Op::Rename { from, to, .. } => {
            with_parent(from, true);
            with_parent(to, true);
        }
        _ => {}
    }
}

fn writer_of(h: &FxEvent) -> Writer {
    Writer {
        pid: h.pid,
        tgid: h.tgid,
        uid: h.uid,
        gid: h.gid,
        cgroup_id: h.cgroup_id,
        comm: h.comm,
    }
}

fn recorder_writer() -> Writer {
    let mut comm = [0u8; 16];
    comm[..14].copy_from_slice(b"foxing-journal");
    let pid = std::process::id();
    Writer {
        pid,
        tgid: pid,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        cgroup_id: 0,
        comm,
    }
}

fn rel(root: &Path, p: &Path) -> Option<RelPath> {
    use std::os::unix::ffi::OsStrExt;
    let r = p.strip_prefix(root).ok()?;
    let b = r.as_os_str().as_bytes();
    (!b.is_empty()).then(|| RelPath::new(b))
}

/// Joins a directory's absolute path and a name as a process gave them, normalizes `.` and
/// `..` lexically, and returns the path relative to `root_abs` (both absolute), or None if it is
/// outside (or the root itself). Pure; see docs/capture.md for the symlink caveat.
pub fn resolve_under(root_abs: &[u8], dir: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    // A directory the probes found under the root (through whatever mount): its path below it.
    let rooted;
    let dir = match dir.split_first() {
        Some((&FX_DIR_ROOTED, below)) => {
            rooted = [root_abs, below].concat();
            &rooted[..]
        }
        _ => dir,
    };
    let mut comps: Vec<&[u8]> = Vec::new();
    let full: Vec<&[u8]> = if name.first() == Some(&b'/') {
        name.split(|&c| c == b'/').collect()
    } else {
        dir.split(|&c| c == b'/')
            .chain(name.split(|&c| c == b'/'))
            .collect()
    };
    for c in full {
        match c {
            b"" | b"." => {}
            b".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    let root: Vec<&[u8]> = root_abs
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if comps.len() <= root.len() || comps[..root.len()] != root[..] {
        return None;
    }
    Some(comps[root.len()..].join(&b'/'))
}

/// Replaces the parent directories of `rel` by their physical path (symlinked directories on
/// the way resolved), as the kernel resolved them. Done when the event is converted, so a
/// parent symlink changed in between is resolved as it is then (docs/capture.md).
fn physical_parent(root: &Path, rel: Vec<u8>) -> RelPath {
    use std::os::unix::ffi::OsStrExt;
    let Some(i) = rel.iter().rposition(|&c| c == b'/') else {
        return RelPath::new(rel);
    };
    let parent = root.join(std::ffi::OsStr::from_bytes(&rel[..i]));
    match physical(&parent) {
        Some(c) if c != parent => match c.strip_prefix(root) {
            Ok(r) if !r.as_os_str().is_empty() => {
                let mut v = r.as_os_str().as_bytes().to_vec();
                v.extend_from_slice(&rel[i..]);
                RelPath::new(v)
            }
            _ => RelPath::new(rel),
        },
        _ => RelPath::new(rel),
    }
}

/// The physical path of `p` (every symlink on the way resolved, as the kernel resolves them),
/// or None if it does not resolve. A path without symlinks is itself, known by one openat2
/// (RESOLVE_NO_SYMLINKS); only a path through a symlink goes to realpath(3)
/// (`std::fs::canonicalize`), which lstat's every prefix, each walked from the start: quadratic
/// in the depth (minutes per thousand events on a 2,000-level tree). The kernel's own name of
/// an opened directory (/proc/self/fd) is not used: a rename between the open and the readlink
/// would rewrite the event's path to a name that did not exist yet at its seq.
fn physical(p: &Path) -> Option<PathBuf> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
    match rustix::fs::openat2(
        CWD,
        p,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    ) {
        Ok(_) => Some(p.to_path_buf()),
        Err(rustix::io::Errno::LOOP) => std::fs::canonicalize(p).ok(),
        Err(_) => None,
    }
}

/// `p`'s directory opened (O_PATH) without following a symlink anywhere on the way, and a path
/// naming `p` through it (`/proc/self/fd/N/name`), valid while the descriptor lives: calls on it
/// act on that directory's entry even if a directory on the way has been replaced by a symlink
/// since. None if `p` is no longer reachable that way. A base walking while a directory was
/// swapped for a symlink read entries through the symlink, possibly from outside the root, and
/// journaled paths the applier refuses (found by tests/fsstress.py, 2026-12-01).
fn beneath(p: &Path) -> Option<(rustix::fd::OwnedFd, PathBuf)> {
    use rustix::fd::AsRawFd;
    use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
    let (parent, name) = (p.parent()?, p.file_name()?);
    let fd = rustix::fs::openat2(
        CWD,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .ok()?;
    let at = Path::new("/proc/self/fd")
        .join(fd.as_raw_fd().to_string())
        .join(name);
    Some((fd, at))
}

/// The (atime, mtime) a utimensat event sets: None for UTIME_OMIT, the event time for UTIME_NOW.
fn times(h: &FxEvent, now_ns: u64) -> (Option<i64>, Option<i64>) {
    let pick = |omit: u32, now: u32, v: u64| {
        if h.flags & omit != 0 {
            None
        } else if h.flags & now != 0 {
            Some(now_ns as i64)
        } else {
            Some(v as i64)
        }
    };
    (
        pick(FX_F_ATIME_OMIT, FX_F_ATIME_NOW, h.offset),
        pick(FX_F_MTIME_OMIT, FX_F_MTIME_NOW, h.len),
    )
}

fn split_nul(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn entry_meta(path: &Path, md: &std::fs::Metadata) -> std::io::Result<EntryMeta> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::Regular
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_symlink() {
        EntryKind::Symlink {
            target: std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_socket() {
        EntryKind::Socket
    } else if ft.is_char_device() {
        EntryKind::CharDevice { rdev: md.rdev() }
    } else {
        EntryKind::BlockDevice { rdev: md.rdev() }
    };
    let mut xattrs = Vec::new();
    if !ft.is_symlink() {
        let mut buf = vec![0u8; 64 * 1024];
        if let Ok(n) = rustix::fs::llistxattr(path, &mut buf[..]) {
            for name in buf[..n].split(|&c| c == 0).filter(|s| !s.is_empty()) {
                let mut v = vec![0u8; 64 * 1024];
                if let Ok(m) =
                    rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut v[..])
                {
                    xattrs.push(Xattr {
                        name: name.to_vec(),
                        value: v[..m].to_vec(),
                    });
                }
            }
        }
    }
    Ok(EntryMeta {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if ft.is_file() { md.size() } else { 0 },
        atime_ns: md.atime() * 1_000_000_000 + md.atime_nsec(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        dev: md.dev(),
        ino: md.ino(),
        nlink: md.nlink() as u32,
        xattrs,
    })
}

/// Walks `root` (lstat only, symlinks not followed) for the inodes in `wanted` (kernel dev,
/// ino), removing each found; returns their paths. Stops when all are found.
fn find_inodes(root: &Path, wanted: &mut HashSet<(u64, u64)>) -> Vec<((u64, u64), PathBuf)> {
    let mut counts: HashMap<(u64, u64), u64> = wanted.iter().map(|k| (*k, 1)).collect();
    let found = find_names(root, &mut counts);
    for (key, _) in &found {
        wanted.remove(key);
    }
    found
}

/// Walks `root` (lstat only, symlinks not followed) for the names of the inodes in `wanted`
/// (kernel dev, ino -> how many names to find); returns every name found, in walk order, and
/// lowers the counts. Stops when every count is zero.
fn find_names(root: &Path, wanted: &mut HashMap<(u64, u64), u64>) -> Vec<((u64, u64), PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let mut left: u64 = wanted.values().sum();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if left == 0 {
            break;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            let key = (foxing_probes::kernel_dev(md.dev()), md.ino());
            if let Some(n) = wanted.get_mut(&key).filter(|n| **n > 0) {
                *n -= 1;
                left -= 1;
                found.push((key, e.path()));
                if left == 0 {
                    return found;
                }
            }
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

/// Opens a regular file of the source for reading without ever blocking (a fifo put in its
/// place would block an ordinary open) or following a final symlink.
fn open_source_file(p: &Path) -> Option<File> {
    open_source_file_meta(p).map(|(f, _)| f)
}

/// [`open_source_file`] with the file's metadata (from the one fstat that checked its type).
fn open_source_file_meta(p: &Path) -> Option<(File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
        .open(p)
        .ok()?;
    let md = f.metadata().ok()?;
    md.is_file().then_some((f, md))
}

/// Whether an event's inode (`i_mode` from the probes; 0 when unknown) is a regular file.
fn regular_or_unknown(i_mode: u32) -> bool {
    let kind = i_mode & libc::S_IFMT;
    kind == libc::S_IFREG || kind == 0
}

/// Dirty pages of `f` in `offset..offset+len` (cachestat(2), Linux 6.5); None if unknown.
fn dirty_pages(f: &File, offset: u64, len: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    /// cachestat's number on every architecture (the shared syscall table).
    const SYS_CACHESTAT: libc::c_long = 451;
    let range: [u64; 2] = [offset, len];
    // nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted.
    let mut cs = [0u64; 5];
    // SAFETY: both pointers are to live arrays of the sizes the kernel's structs have.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            range.as_ptr(),
            cs.as_mut_ptr(),
            0u32,
        )
    };
    (r == 0).then_some(cs[1])
}

use foxing_proto::record::shifts_bytes;

/// A fallocate mode as the journal carries it: WRITE_ZEROES (Linux 6.17: zeroes written to the
/// device) becomes ZERO_RANGE, the same bytes for a reader; a replica's filesystem without
/// either still gets the zeros (the applier writes them).
fn portable_fallocate_mode(mode: u32) -> u32 {
    use foxing_proto::record::{FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE};
    if mode & FALLOC_FL_WRITE_ZEROES != 0 {
        (mode & !FALLOC_FL_WRITE_ZEROES) | FALLOC_FL_ZERO_RANGE
    } else {
        mode
    }
}

/// The data ranges of a file from `from` to `size` (holes skipped), as (offset, len).
fn data_ranges(f: &File, from: u64, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::SeekFrom;
    let mut out = Vec::new();
    let mut pos = from;
    while pos < size {
        let start = match rustix::fs::seek(f, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(from, size.saturating_sub(from))], // no SEEK_DATA: read all
        };
        let end = match rustix::fs::seek(f, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(_) => size,
        };
        if end > start {
            out.push((start, end - start));
        }
        pos = end.max(start + 1);
    }
    out
}

/// The xattr holding a file's access ACL, whose mask is the mode's group bits.
const POSIX_ACL_ACCESS: &[u8] = b"system.posix_acl_access";

/// After setting or removing an access ACL, the mode to journal, from `i_mode` after the call:
/// setting one by a caller outside the file's group without CAP_FSETID clears setgid
/// (`posix_acl_update_mode`), which the root applier's own call would not, as `cp -a` of a
/// directory into a setgid directory does. Journaled whenever the mode has no setgid bit then
/// (a Chmod to the mode the ACL gave is harmless); None for other names, symlinks, or setgid
/// still set.
fn acl_mode_after(name: &[u8], i_mode: Option<u32>) -> Option<u32> {
    let m = i_mode?;
    (name == POSIX_ACL_ACCESS && m & 0o170000 != 0o120000 && m & 0o170000 != 0 && m & 0o2000 == 0)
        .then_some(m & 0o7777)
}

impl Recorder {
    pub fn start(opts: RecorderOptions) -> anyhow::Result<Recorder> {
        use anyhow::Context;
        let md = std::fs::metadata(&opts.root)
            .with_context(|| format!("watched root {}", opts.root.display()))?;
        anyhow::ensure!(
            md.is_dir(),
            "watched root {} is not a directory",
            opts.root.display()
        );
        anyhow::ensure!(
            !crate::config::nested_dirs(&opts.root, &opts.journal),
            "the journal {} and the watched root {} overlap: the journal would record itself; put the journal outside the root",
            opts.journal.display(),
            opts.root.display()
        );
        anyhow::ensure!(
            rustix::process::geteuid().is_root(),
            "foxing-journal record needs root (CAP_BPF and CAP_PERFMON) to load its eBPF probes"
        );
        anyhow::ensure!(
            Path::new("/sys/kernel/btf/vmlinux").exists(),
            "this kernel has no BTF (/sys/kernel/btf/vmlinux): Foxing's probes need CONFIG_DEBUG_INFO_BTF"
        );
        let root = opts
            .root
            .canonicalize()
            .with_context(|| format!("watched root {}", opts.root.display()))?;
        let journal = crate::restart::retry_while_busy(
            &format!("the lock of journal {}", opts.journal.display()),
            || Journal::open(&opts.journal, opts.journal_opts.clone()),
            |e| matches!(e, crate::JournalError::Locked { .. }),
        )
        .with_context(|| format!("cannot open journal {}", opts.journal.display()))?;
        let probes = Probes::load(&ProbeConfig {
            root: root.clone(),
            payload_cap_bytes: opts.payload_cap_bytes,
            ring_size_bytes: opts.ring_size_bytes,
        })
        .context("cannot load the eBPF probes")?;
        let views = crate::views::Views::new(&root)
            .with_context(|| format!("cannot open the watched root {}", root.display()))?;
        let given_root = opts.root.clone();
        let opts = RecorderOptions { root, ..opts };
        Ok(Recorder {
            given_root,
            opts,
            durable_seq: journal.durable_seq(),
            journal: Some(journal),
            degraded: None,
            probes,
            views,
            events: Vec::new(),
            stats: RecorderStats::default(),
            last_drops: 0,
            drops_unmatched: 0,
            last_missed: 0,
            last_missed_check: Instant::now(),
            in_resync: false,
            gaps_after: 0,
            restating: None,
            links: Default::default(),
            special_modes: Default::default(),
            last_root_check: Instant::now(),
            pending_heals: Vec::new(),
            full_heal: false,
            heals_pending_since: None,
            last_loss: None,
            lost_seq_end: 0,
            moved_marks: HashSet::new(),
            chunk_marks: HashMap::new(),
            races: Default::default(),
            moved_settled: true,
            moved_since: None,
            ring_clear_since_loss: true,
            inode_paths: HashMap::new(),
            base_active: false,
            walk_extra: Vec::new(),
            walk_extra_overflowed: false,
            touched: Default::default(),
            touched_all: false,
            first_touch: None,
            last_event: Instant::now(),
            prune_requested: Default::default(),
            mapped: Default::default(),
            last_mapped_read: Instant::now(),
            mapped_active: false,
            shared: Default::default(),
            base_walked: 0,
            seqs: SeqTracker::default(),
        })
    }

    /// The newest durable seq of the journal (as of when it was last open).
    pub fn durable_seq(&self) -> u64 {
        self.journal
            .as_ref()
            .map(|j| j.durable_seq())
            .unwrap_or(self.durable_seq)
    }

    /// True from a journal failure until the base that heals it is complete (see
    /// [`Recorder::failed`]).
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }

    /// True while the journal cannot be written at all.
    fn journal_down(&self) -> bool {
        self.journal.is_none()
    }

    /// A journal write or commit failed (a full disk, an I/O error). The recorder must neither
    /// die nor block the source, so it drops the journal and goes on draining the ring,
    /// counting what it cannot journal; [`Recorder::recover`] opens the journal again,
    /// journals a Gap for all of it and heals it with a base. Records past the durable point
    /// are discarded on reopen (never shipped, so never acknowledged).
    fn failed(&mut self, e: crate::JournalError, lost: u64) {
        self.durable_seq = self.durable_seq();
        let e = crate::error::chain(&e);
        if let Some(d) = &mut self.degraded {
            d.lost += lost;
            tracing::debug!(error = %e, "the journal failed again before its heal was complete");
        } else {
            tracing::error!(journal = %self.opts.journal.display(), error = %e,
                "cannot write the journal; recording goes on degraded: changes are counted, not journaled, and the tree is resynced (a new base) as soon as the journal can be written again (free space on its filesystem)");
            self.stats.journal_failures += 1;
            self.stats.degraded = 1;
            self.degraded = Some(Degraded {
                last_try: Instant::now(),
                lost,
                retries: 1,
            });
        }
        self.stats.unjournaled_records += lost;
        // Mapped pages' hashes stand for journaled records that may now be discarded.
        self.mapped.forget_hashes();
        // Dropping it releases its lock and index (its final sync fails and says so).
        self.journal = None;
    }

    /// While degraded, opens the journal again every JOURNAL_RETRY_MS; once it opens, journals
    /// (durably) a Gap covering what was not journaled and schedules the heal (a base).
    fn recover(&mut self) {
        let Some(d) = &mut self.degraded else { return };
        if self.journal.is_some() || d.last_try.elapsed() < Duration::from_millis(JOURNAL_RETRY_MS)
        {
            return;
        }
        d.last_try = Instant::now();
        // 0: the recorder acknowledges nothing itself; what the synced hint names (possibly
        // shipped) is kept by open_after_failure, the rest past the index is discarded.
        let j = match Journal::open_after_failure(
            &self.opts.journal,
            self.opts.journal_opts.clone(),
            0,
        ) {
            Ok(j) => j,
            Err(e) => {
                if d.retries.is_power_of_two() {
                    tracing::warn!(error = %e, retries = d.retries, "the journal still cannot be written");
                }
                d.retries += 1;
                return;
            }
        };
        let lost = std::mem::take(&mut d.lost);
        // Gap records journaled before the failure that the reopened journal does not hold
        // were discarded; those it holds (fsynced before a failed index commit) stay pending.
        let durable = j.durable_seq();
        self.pending_heals.retain(|&g| g <= durable);
        self.journal = Some(j);
        let gap = self.own(Op::Gap {
            lost,
            reason: GapReason::JournalFailed,
        });
        if let Some(seq) = self.append_gap(gap) {
            tracing::info!(
                lost,
                gap_seq = seq,
                "the journal can be written again; healing with a new base"
            );
        }
    }

    /// Journals a Gap record and waits for it to be durable before its heal is scheduled (a
    /// gap that a failure discarded must not be healed by seq: its seq is given again).
    fn append_gap(&mut self, gap: Event) -> Option<u64> {
        let lost = match &gap.op {
            Op::Gap { lost, .. } => *lost,
            _ => 0,
        };
        self.append_untracked(vec![gap.clone()]);
        let j = self.journal.as_mut()?;
        let seq = j.next_seq() - 1;
        match j.sync() {
            Ok(_) => {
                self.pending_heals.push(seq);
                // Ring losses are healed per inode when the kernel's marks cover them; every
                // other loss needs the whole tree.
                if !matches!(
                    gap.op,
                    Op::Gap {
                        reason: GapReason::RingFull
                            | GapReason::MovedBeforeRead
                            | GapReason::ConcurrentWriters
                            | GapReason::MovedIn,
                        ..
                    }
                ) {
                    self.full_heal = true;
                }
                Some(seq)
            }
            Err(e) => {
                // The gap record may survive the failure (written and fsynced, named by the
                // synced hint, only its index commit failed): `recover` keeps it pending if
                // the reopened journal holds it, so it is healed like any other.
                self.pending_heals.push(seq);
                self.failed(e, lost.max(1));
                None
            }
        }
    }

    fn append(&mut self, evs: Vec<Event>) {
        if evs.is_empty() {
            return;
        }
        for ev in &evs {
            self.links.read(&ev.op);
            let (touched, all) = (&mut self.touched, &mut self.touched_all);
            if let Op::Rename { from, to, flags } = &ev.op {
                // Paths touched under a renamed directory are swept under their new names.
                move_touched(touched, from, to, flags & RENAME_EXCHANGE != 0);
                // Moved files are healed where they went.
                for key in self.moved_marks.iter().chain(self.chunk_marks.keys()) {
                    let moved = self.inode_paths.get(key).and_then(|p| {
                        crate::races::renamed_path(p, from, to, flags & RENAME_EXCHANGE != 0)
                    });
                    if let Some(p) = moved {
                        self.inode_paths.insert(*key, p);
                    }
                }
            }
            mtime_paths(&ev.op, |p| {
                if !*all {
                    touched.insert(p.clone());
                }
            });
            if self.touched.len() > TIMES_SWEEP_MAX_PATHS {
                self.touched.clear();
                self.touched_all = true;
            }
        }
        if self.first_touch.is_none() && (self.touched_all || !self.touched.is_empty()) {
            self.first_touch = Some(Instant::now());
        }
        self.journal_append(evs);
    }

    /// Appends to the journal, or counts the records as lost while it cannot be written.
    fn journal_append(&mut self, evs: Vec<Event>) {
        let n = evs.len() as u64;
        // Page hashes exist only while some mapped file is active (`MappedFiles::expire`).
        if self.mapped_active {
            if self.journal.is_some() {
                for ev in &evs {
                    self.mapped.journaled(&ev.op);
                }
            } else {
                self.mapped.forget_hashes();
            }
        }
        let Some(j) = self.journal.as_mut() else {
            if let Some(d) = &mut self.degraded {
                d.lost += n;
            }
            self.stats.unjournaled_records += n;
            return;
        };
        match j.append(evs) {
            Ok(seqs) => {
                self.stats.records += n;
                tracing::trace!(first_seq = seqs.start, last_seq = seqs.end - 1, "journaled")
            }
            Err(e) => self.failed(e, n),
        }
    }

    /// Hands what was written to the group commit when due (see [`Journal::maybe_sync`]).
    fn maybe_sync(&mut self) {
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.maybe_sync() {
                self.failed(e, 0);
            }
        }
    }

    /// Makes everything journaled so far durable.
    fn sync(&mut self) {
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.sync() {
                self.failed(e, 0);
            }
        }
    }

    fn own(&self, op: Op) -> Event {
        Event {
            time_ns: now_ns(),
            writer: recorder_writer(),
            op,
        }
    }

    /// Fails with [`RootReplaced`] when the root path no longer names the watched directory.
    fn check_root(&mut self) -> anyhow::Result<()> {
        self.last_root_check = Instant::now();
        let (was_dev, was_ino) = self.probes.root_id();
        let now = match std::fs::metadata(&self.given_root) {
            Ok(md) if (foxing_probes::kernel_dev(md.dev()), md.ino()) == (was_dev, was_ino) => {
                return Ok(())
            }
            Ok(md) => format!(
                "dev {:#x} ino {}",
                foxing_probes::kernel_dev(md.dev()),
                md.ino()
            ),
            Err(e) => format!("gone: {e}"),
        };
        Err(RootReplaced {
            root: self.given_root.display().to_string(),
            was_dev,
            was_ino,
            now,
        }
        .into())
    }

    /// Drains the ring buffer, waiting up to `timeout` for the first event; journals them.
    pub fn pump(&mut self, timeout: Duration) -> anyhow::Result<usize> {
        let mut evs = std::mem::take(&mut self.events);
        evs.clear();
        // A moved file is healed where it is once the rename that moved it is journaled: its
        // event is in the ring before the rename is counted out, so none in flight now and a
        // drain that empties the ring below mean it has been (see `resync_later`).
        let renames_settled = !self.moved_settled && self.probes.ns_changes_in_flight()? == 0;
        self.probes.poll(timeout, EVENTS_PER_BATCH, &mut evs)?;
        // Every event drained happened before this check: if the root path still names the
        // watched directory now, it did when they happened (see `RootReplaced`).
        if !evs.is_empty()
            || self.last_root_check.elapsed() >= Duration::from_millis(ROOT_CHECK_IDLE_MS)
        {
            self.check_root()?;
        }
        if renames_settled && self.probes.ring_drained() {
            self.moved_settled = true;
        }
        if !self.moved_settled
            && self
                .moved_since
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(MOVED_SETTLE_MAX_MS))
        {
            // A rename or mount call stuck in the kernel (a hung network filesystem): heal
            // anyway rather than leave the window open.
            tracing::warn!("renames or mount changes have been in flight for {MOVED_SETTLE_MAX_MS} ms: healing moved files without waiting for them");
            self.moved_settled = true;
        }
        if let Some(step) = self.probes.follow_wall_clock() {
            self.stats.clock_steps += 1;
            tracing::warn!(
                step_ms = (step / 1_000_000) as i64,
                "the wall clock stepped: record times follow it; a time the clock went back over occurs twice in the journal and --until resolves it to its first occurrence (seq:N reaches the second)"
            );
        }
        // Events the ring refused were newer than every event it held when it refused them, but
        // may be older than some this drain took: the gap goes before the batch, so no restore
        // point among this batch's records (a sync after a lost write) is offered as consistent.
        if self.probes.ring_drained() {
            self.ring_clear_since_loss = true; // unless the drops read next say otherwise
        }
        let drops = self.probes.drops()?;
        if drops > self.last_drops {
            let lost = drops - self.last_drops;
            self.last_drops = drops;
            self.drops_unmatched = self.drops_unmatched.saturating_add(lost);
            self.ring_loss_gap(lost);
        }
        let n = evs.len();
        // Lag tracing (lag-bench with RUST_LOG=trace): how long the first event waited for this
        // drain (the ring's wake-up of the recorder).
        if tracing::enabled!(tracing::Level::TRACE) {
            if let Some(e) = evs.first() {
                let age_ns = now_ns().saturating_sub(self.probes.wall_ns(e.header.time_ns));
                tracing::trace!(events = n, first_event_age_us = age_ns / 1000, "drained");
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut lost = 0u64;
        // A moved-in subtree is read while this batch is converted: later events must wait in
        // the ring until this batch is journaled, or they would be journaled out of order.
        let was_resyncing = std::mem::replace(&mut self.in_resync, true);
        // Two CPUs can take consecutive seqs and reach the ring in the other order: sort the
        // batch, and give a seq missing across batches a grace period before calling it lost.
        evs.sort_by_key(|e| e.header.seq);
        let covered = covered_rereads(&evs);
        let now = Instant::now();
        let mut out_bytes = 0usize;
        for (i, ev) in evs.iter_mut().enumerate() {
            lost += self.seqs.observe(ev.header.seq, now);
            let first_new = out.len();
            if changes_an_open_file(ev.header.op) {
                if ev.header.flags & FX_F_UNLINKED != 0 {
                    // A file removed while open, or an O_TMPFILE not linked yet: no entry of
                    // the tree changed (journaled under the name its dentry still shows, the
                    // change would land in whatever has that name now). A linked O_TMPFILE is
                    // read whole when it arrives (`moved_in`).
                    self.stats.unlinked_changes += 1;
                    continue;
                }
                if ev.header.flags & FX_F_NAME_GONE != 0 {
                    self.name_gone(ev, &mut out);
                    continue;
                }
            }
            if ev.header.op == FX_OP_MSYNC {
                self.reread_mapped(&mut out);
                let h = &ev.header;
                out.push(Event {
                    time_ns: self.probes.wall_ns(h.time_ns),
                    writer: writer_of(h),
                    op: Op::Sync {
                        path: None,
                        kind: SyncKind::Msync,
                    },
                });
            } else if ev.header.op == FX_OP_DIRTY_MAPPED {
                let h = &ev.header;
                if h.flags & FX_F_CATCHALL != 0 {
                    self.note_unannounced_mapping(ev);
                }
                if self
                    .mapped
                    .on_dirty((h.dev, h.ino), h.offset, h.len, Instant::now())
                {
                    self.mapped_active = true;
                    self.first_touch.get_or_insert_with(Instant::now);
                } else if h.flags & FX_F_CATCHALL == 0 {
                    self.unknown_mapped_page(ev, &mut out);
                }
            } else if ev.header.op == FX_OP_MMAP_SHARED {
                self.note_mmap(ev);
            } else if ev.header.op == FX_OP_UNTRACKED {
                self.untracked(ev, &mut out);
            } else if (FX_OP_PATH_UNLINK..=FX_OP_PATH_MKNOD).contains(&ev.header.op)
                || ev.header.op == FX_OP_PATH_MOUNT
            {
                let drains = self.gaps_after;
                if let Err(e) = self.convert_path_op(ev, &mut out) {
                    self.in_resync = was_resyncing;
                    return Err(e);
                }
                // A gap opened by this op journaled `out` before it: what is left is this op's.
                let made = if self.gaps_after != drains {
                    &out[..]
                } else {
                    out.get(first_new..).unwrap_or(&[])
                };
                // A base walking meanwhile may have passed a rename's target already and not
                // yet its source: the subtree moved would be in no Resync of the base, and its
                // end would remove it from the replica. The target is walked again.
                // (A hard link made there needs nothing: the applier groups the names of one
                // source inode itself.)
                if self.base_active {
                    let root = self.opts.root.clone();
                    let at = |p: &RelPath| root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
                    for e in made {
                        if let Op::Rename { from, to, flags } = &e.op {
                            self.walk_again(at(to));
                            if flags & RENAME_EXCHANGE != 0 {
                                self.walk_again(at(from));
                            }
                        }
                    }
                }
                // Shared mappings are re-read at their files' paths: those follow the op here,
                // from `made` (a gap opened below, for a raced op, journals `out` first).
                if !self.mapped.is_empty() {
                    for e in made {
                        match &e.op {
                            Op::Rename { from, to, flags } if flags & RENAME_EXCHANGE == 0 => {
                                self.mapped.renamed(from, Some(to))
                            }
                            Op::Rename { from, .. }
                            | Op::Unlink { path: from }
                            | Op::Rmdir { path: from } => self.mapped.renamed(from, None),
                            _ => {}
                        }
                    }
                }
                for e in made {
                    self.links.live(&e.op);
                }
                let names: Vec<RelPath> = made.iter().flat_map(|e| e.op.paths()).cloned().collect();
                let rename = (ev.header.op == FX_OP_PATH_RENAME && !names.is_empty()).then(|| {
                    let (from, to, exchange) = match made.first().map(|e| &e.op) {
                        Some(Op::Rename { from, to, flags }) => (
                            Some(from.clone()),
                            Some(to.clone()),
                            flags & RENAME_EXCHANGE != 0,
                        ),
                        // Moved out of the root: its name left.
                        _ => (names.first().cloned(), None, false),
                    };
                    crate::races::RenameSeen {
                        seq_named: ev.header.seq_named,
                        seq: ev.header.seq,
                        from,
                        to,
                        exchange,
                    }
                });
                // Names queued for re-statement by events before this rename (in seq order, the
                // replica's order) move with it. Here, not when it is appended: a rename converted
                // earlier in this batch must not move the names queued after it.
                if let Some(r) = &rename {
                    if let (Some(from), Some(to)) = (&r.from, &r.to) {
                        // A whiteout rename leaves a whiteout at `from`, which the replica
                        // makes only if it had something there to move: not for a name still
                        // waiting to be re-stated (regression: the namespace workload's
                        // whiteout left behind by a moved-in directory never reached the
                        // replica).
                        let whiteout = matches!(
                            made.first().map(|e| &e.op),
                            Some(Op::Rename { flags, .. }) if flags & RENAME_WHITEOUT != 0
                        ) && self.races.queued(from);
                        self.races.follow(from, to, r.exchange);
                        if whiteout {
                            self.races.restate_name(from.clone());
                        }
                    }
                }
                if let Some(Op::Link { existing, new }) = made.first().map(|e| &e.op) {
                    self.races.follow_link(existing, new);
                }
                if ev.header.flags & FX_F_PATH_RACY != 0 && !names.is_empty() {
                    self.racy_event(ev, names, None, &mut out);
                }
                if let Some(r) = rename {
                    for m in self.races.rename(r) {
                        self.stats.racy_paths += 1;
                        if let Some(m) = m {
                            self.mark_later(
                                &m.path,
                                m.key,
                                m.chunks,
                                GapReason::ConcurrentWriters,
                                &mut out,
                            );
                        }
                    }
                }
            } else {
                let key = (ev.header.dev, ev.header.ino);
                if self.mapped_active && self.mapped.knows(key) {
                    let path = RelPath::new(ev.path.clone());
                    self.mapped.note_name(key, &path);
                }
                self.convert(ev, covered[i], &mut out);
                // Sync points change nothing to re-read.
                if ev.header.flags & FX_F_PATH_RACY != 0 && changes_an_open_file(ev.header.op) {
                    self.racy_path(ev, &mut out);
                }
            }
            // Re-read ranges (writes above the payload cap) can turn each event of a batch
            // into a MiB of data: journal what the batch has made so far once it passes
            // PUMP_FLUSH_BYTES, in order, so the recorder's memory stays bounded.
            // (A re-read may have journaled `out` already: then this overcounts, harmlessly.)
            out_bytes += out[first_new.min(out.len())..]
                .iter()
                .map(|e| e.op.payload_len())
                .sum::<usize>();
            if out_bytes > PUMP_FLUSH_BYTES {
                self.append(std::mem::take(&mut out));
                out_bytes = 0;
            }
        }
        self.in_resync = was_resyncing;
        lost += self.seqs.expire(now);
        self.stats.events += n as u64;
        self.events = evs;
        // The seqs of dropped events show up as holes: those are journaled already.
        let matched = lost.min(self.drops_unmatched);
        self.drops_unmatched -= matched;
        let lost = lost - matched;
        self.append(out);
        if lost > 0 {
            // Seqs missing for another reason (their events may precede some of this batch's
            // records: the window starts late by at most KERNEL_REORDER_GRACE_MS of records).
            self.ring_loss_gap(lost);
        }
        // Behind: this drain was full or events were lost recently. Heals wait until the
        // recorder catches up (the kernel's marks keep accumulating, so one heal covers a whole
        // overload), or at most HEAL_MAX_DEFER_MS: healing a hot file over and over while the
        // ring still overflows would only lose more.
        let behind = n >= EVENTS_PER_BATCH
            || self
                .last_loss
                .is_some_and(|t| t.elapsed() < Duration::from_millis(HEAL_QUIET_MS));
        if now.duration_since(self.last_missed_check) >= Duration::from_millis(MISSED_RUNS_CHECK_MS)
        {
            self.check_missed_runs()?;
        }
        let heal_due = (!behind
            || self
                .heals_pending_since
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(HEAL_MAX_DEFER_MS)))
            && self.drained_past_losses()
            && self.moved_settled;
        if self.pending_heals.is_empty() {
            self.heals_pending_since = None;
        } else {
            self.heals_pending_since.get_or_insert_with(Instant::now);
        }
        if heal_due {
            self.heal_pending()?;
        }
        self.maybe_sync();
        Ok(n)
    }

    /// Whether every event older than the lost ones has been journaled: the ring was empty at
    /// the last drain, or the recorder has seen a seq past the highest one lost. A heal reads
    /// the tree as it is now; an older event journaled after that read would undo part of it,
    /// and the newer events that fixed it up are the lost ones (regression: stress-ng's symlink
    /// stressor left files on the replica that the source had removed, when a heal base began
    /// while the recorder was seconds behind).
    fn drained_past_losses(&self) -> bool {
        self.ring_clear_since_loss || self.seqs.settled_below(self.lost_seq_end)
    }

    /// Journals a gap for `lost` kernel events (ring full or seqs missing); a heal follows.
    fn ring_loss_gap(&mut self, lost: u64) {
        self.last_loss = Some(Instant::now());
        self.ring_clear_since_loss = false;
        match self.probes.dropped_seq_end() {
            Ok(end) => self.lost_seq_end = self.lost_seq_end.max(end),
            Err(e) => tracing::warn!(error = %e, "cannot read the highest lost seq"),
        }
        self.stats.lost_events += lost;
        tracing::warn!(lost, "kernel events were lost (ring buffer full, or a path too long for the probes to name); journaling a gap and a heal");
        let gap = self.own(Op::Gap {
            lost,
            reason: GapReason::RingFull,
        });
        self.append_gap(gap);
    }

    /// Converts one kernel event; its payload is moved out of `ev`, not copied.
    /// `covered`: an inexact write whose range a later inexact write of the same inode in this
    /// batch covers; only that later one re-reads (see `covered_rereads`).
    fn convert(&mut self, ev: &mut RawEvent, covered: bool, out: &mut Vec<Event>) {
        let h = &ev.header;
        if h.op == FX_OP_SYNCFS || h.op == FX_OP_SYNC {
            let kind = if h.op == FX_OP_SYNC {
                SyncKind::Sync
            } else {
                SyncKind::Syncfs
            };
            let time_ns = self.probes.wall_ns(h.time_ns);
            out.push(Event {
                time_ns,
                writer: writer_of(h),
                op: Op::Sync { path: None, kind },
            });
            return;
        }
        let path = RelPath::new(ev.path.clone());
        if path.as_bytes().is_empty() {
            return; // the root itself
        }
        if path.check().is_err() {
            tracing::warn!(path = %path, "event with an unusable path skipped");
            return;
        }
        if matches!(h.op, FX_OP_WRITE | FX_OP_DIRTY_MAPPED) && !regular_or_unknown(h.mode) {
            // Bytes written into a fifo, a socket or a device under the root are no file
            // content (and their "offsets" are meaningless: a fifo's write ended at -len).
            // The write moved the node's mtime: the times sweep carries that.
            if !self.touched_all {
                self.touched.insert(path);
                self.first_touch.get_or_insert(Instant::now());
            }
            return;
        }
        self.note_inode_path(h.dev, h.ino, &path);
        // A change to a file with other names through a name the replica does not hold yet:
        // the replica skips it, and the re-statement reads that name only (gone by then, it
        // reads nothing); the file is resynced where it is (regression: a hard link arrived
        // inside a directory from outside, written and removed at once: its other name in
        // the root kept the old bytes on the replica).
        if h.flags & FX_F_LINKED != 0
            && changes_an_open_file(h.op)
            && self.not_held_by_the_replica(&path)
        {
            let (key, chunks) = ((h.dev, h.ino), written_chunks(h));
            self.mark_later(&path, key, chunks, GapReason::MovedBeforeRead, out);
        }
        let time_ns = self.probes.wall_ns(h.time_ns);
        let w = writer_of(h);
        let mk = |op| Event {
            time_ns,
            writer: w.clone(),
            op,
        };
        // The kernel clears setuid/setgid on a write, truncate or fallocate by a caller without
        // CAP_FSETID (and on O_TRUNC and chown): the mode after the call says so (see
        // `crate::modes`). Only files with such bits are remembered: one lookup otherwise.
        // (A Create record sets the mode only when it makes the file, not on an O_TRUNC open.)
        let journals_mode = h.op == FX_OP_FCHMOD;
        let mode_change = self
            .special_modes
            .after_event((h.dev, h.ino), h.mode, journals_mode)
            .map(|mode| (path.clone(), mode));
        match h.op {
            FX_OP_WRITE if h.flags & FX_F_INEXACT == 0 => {
                self.stats.payload_bytes += ev.data.len() as u64;
                out.push(mk(Op::Write {
                    path,
                    offset: h.offset,
                    data: std::mem::take(&mut ev.data),
                }));
            }
            FX_OP_WRITE if h.flags & FX_F_POS_UNKNOWN != 0 => {
                // A write at the file position of an open file that another process or thread
                // moved meanwhile: where its bytes went is unknown. The whole file is resynced
                // (after a gap), as for a write lost from the ring.
                self.stats.inexact_ranges += 1;
                self.stats.concurrent_writes += 1;
                tracing::debug!(path = %path, "a write at a shared file position that another user moved meanwhile: the whole file is resynced");
                out.push(mk(Op::Dirty {
                    path: path.clone(),
                    offset: 0,
                    len: MAX_FILE_BYTES,
                }));
                self.resync_later(&path, (h.dev, h.ino), GapReason::ConcurrentWriters, out);
            }
            FX_OP_WRITE => {
                self.stats.inexact_ranges += 1;
                if h.flags & FX_F_CONCURRENT != 0 {
                    self.stats.concurrent_writes += 1;
                }
                // Asynchronous vector writes may say "to the end of the file": the re-read
                // stops there; the record keeps a range a replica accepts.
                out.push(mk(Op::Dirty {
                    path: path.clone(),
                    offset: h.offset.min(MAX_FILE_BYTES),
                    len: h.len.min(MAX_FILE_BYTES - h.offset.min(MAX_FILE_BYTES)),
                }));
                if covered {
                    self.stats.covered_rereads += 1;
                } else {
                    self.reread(&path, (h.dev, h.ino), h.offset, h.len, time_ns, out);
                }
            }
            FX_OP_FSYNC | FX_OP_FDATASYNC => {
                let kind = if h.op == FX_OP_FSYNC {
                    SyncKind::Fsync
                } else {
                    SyncKind::Fdatasync
                };
                out.push(mk(Op::Sync {
                    path: Some(path),
                    kind,
                }));
            }
            // open(O_CREAT or O_TRUNC) of an existing fifo, socket or device (a shell's `<>`
            // on a fifo) creates nothing and truncates nothing: journaling it as a Create made
            // the replica's fifo a regular file.
            FX_OP_CREATE if !regular_or_unknown(h.mode) => {}
            FX_OP_CREATE => {
                out.push(mk(Op::Create {
                    path: path.clone(),
                    mode: h.mode & 0o7777,
                    uid: h.owner_uid,
                    gid: h.owner_gid,
                }));
                if h.flags & FX_F_TRUNC != 0 {
                    out.push(mk(Op::Truncate { path, size: 0 }));
                }
            }
            FX_OP_TRUNCATE if h.flags & FX_F_CONCURRENT != 0 => {
                // Raced a write to the file: its exit order may not be its lock order. The
                // file's size now is the size after both (later changes follow in seq order).
                self.stats.concurrent_resizes += 1;
                let size = self
                    .current_size(&path, (h.dev, h.ino), out)
                    .unwrap_or(h.len);
                out.push(mk(Op::Truncate { path, size }));
            }
            FX_OP_TRUNCATE => out.push(mk(Op::Truncate { path, size: h.len })),
            FX_OP_FCHMOD => out.push(mk(Op::Chmod {
                path,
                mode: h.mode & 0o7777,
            })),
            FX_OP_FCHOWN => out.push(mk(Op::Chown {
                path,
                uid: Some(h.owner_uid),
                gid: Some(h.owner_gid),
            })),
            FX_OP_FALLOCATE if h.flags & FX_F_FAILED != 0 => {
                // The call failed, yet ext4 and xfs update mtime before they validate a
                // collapse or insert range, and ext4 keeps the size a preallocation reached
                // before ENOSPC: the file's size as it is now, whose record also brings the
                // file into the times sweep (found by an fsx-style mix: a replica's mtime
                // differed after an EINVAL collapse).
                self.stats.failed_changes += 1;
                if let Some(size) = self.current_size(&path, (h.dev, h.ino), out) {
                    out.push(mk(Op::Truncate { path, size }));
                }
            }
            FX_OP_FALLOCATE if shifts_bytes(h.arg as u32) => {
                // COLLAPSE_RANGE / INSERT_RANGE move every byte after `offset`: journaled as the
                // file from there as it is now, so a replica needs no such mode of its own
                // (tmpfs has neither).
                self.stats.inexact_ranges += 1;
                let offset = h.offset.min(MAX_FILE_BYTES);
                out.push(mk(Op::Dirty {
                    path: path.clone(),
                    offset,
                    len: MAX_FILE_BYTES - offset,
                }));
                self.resync_tail(&path, (h.dev, h.ino), offset, time_ns, out);
            }
            FX_OP_FALLOCATE if h.flags & FX_F_CONCURRENT != 0 => {
                // Raced a write: journal the range's bytes and the size as they are now.
                self.stats.concurrent_resizes += 1;
                self.stats.inexact_ranges += 1;
                out.push(mk(Op::Dirty {
                    path: path.clone(),
                    offset: h.offset.min(MAX_FILE_BYTES),
                    len: h.len.min(MAX_FILE_BYTES - h.offset.min(MAX_FILE_BYTES)),
                }));
                if let Some(size) = self.current_size(&path, (h.dev, h.ino), out) {
                    out.push(mk(Op::Truncate {
                        path: path.clone(),
                        size,
                    }));
                }
                self.reread(&path, (h.dev, h.ino), h.offset, h.len, time_ns, out);
            }
            FX_OP_FALLOCATE => out.push(mk(Op::Fallocate {
                path,
                mode: portable_fallocate_mode(h.arg as u32),
                offset: h.offset,
                len: h.len,
            })),
            FX_OP_SYNC_FILE_RANGE => out.push(mk(Op::Sync {
                path: Some(path),
                kind: SyncKind::SyncFileRange,
            })),
            FX_OP_FUTIMES => {
                let (a, m) = times(h, time_ns);
                out.push(mk(Op::SetTimes {
                    path,
                    atime_ns: a,
                    mtime_ns: m,
                }));
            }
            FX_OP_FSETXATTR => {
                let (name, value) = split_nul(&ev.data);
                out.push(mk(Op::SetXattr {
                    path: path.clone(),
                    name: name.to_vec(),
                    value: value.to_vec(),
                    flags: 0,
                }));
                if let Some(mode) = acl_mode_after(name, Some(h.mode)) {
                    out.push(mk(Op::Chmod { path, mode }));
                }
            }
            FX_OP_FREMOVEXATTR => {
                let (name, _) = split_nul(&ev.data);
                out.push(mk(Op::RemoveXattr {
                    path: path.clone(),
                    name: name.to_vec(),
                }));
                if let Some(mode) = acl_mode_after(name, Some(h.mode)) {
                    out.push(mk(Op::Chmod { path, mode }));
                }
            }
            other => tracing::warn!(op = other, "unknown event op skipped"),
        }
        if let Some((path, mode)) = mode_change {
            tracing::debug!(path = %path, mode = format_args!("{mode:o}"), "the kernel changed a setuid/setgid file's mode on its own");
            self.stats.implicit_mode_changes += 1;
            out.push(mk(Op::Chmod { path, mode }));
        }
    }

    /// After truncate or chown by path: the mode to journal when the call cleared a remembered
    /// setuid/setgid file's bits (see `crate::modes`), from the source now. A call that does not
    /// follow a final symlink changed no file's bits through one.
    fn mode_dropped_by_path_call(&mut self, p: &RelPath, follows: bool) -> Option<u32> {
        if self.special_modes.is_empty() {
            return None;
        }
        let (key, i_mode) = self.source_file_mode(p, follows)?;
        let mode = self.special_modes.after_event(key, i_mode, false)?;
        self.stats.implicit_mode_changes += 1;
        Some(mode)
    }

    /// The (kernel dev, ino) and full mode of the regular file `p` names on the source now
    /// (`follows`: after a final symlink, as truncate, chown and chmod do); None when it names
    /// no regular file.
    fn source_file_mode(&self, p: &RelPath, follows: bool) -> Option<((u64, u64), u32)> {
        let md = self.source_meta(p, follows).filter(|m| m.is_file())?;
        Some(((foxing_probes::kernel_dev(md.dev()), md.ino()), md.mode()))
    }

    /// What `p` names on the source now (`follows`: after a final symlink).
    fn source_meta(&self, p: &RelPath, follows: bool) -> Option<std::fs::Metadata> {
        let full = self
            .opts
            .root
            .join(std::ffi::OsStr::from_bytes(p.as_bytes()));
        if follows {
            std::fs::metadata(full).ok()
        } else {
            std::fs::symlink_metadata(full).ok()
        }
    }

    /// Converts a path-based event (dir + name pairs, resolved here against the root).
    fn convert_path_op(&mut self, ev: &RawEvent, out: &mut Vec<Event>) -> anyhow::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let h = &ev.header;
        let root_abs = self.opts.root.as_os_str().as_bytes().to_vec();
        let (d1, n1) = split_nul(&ev.path);
        let (d2, n2) = split_nul(&ev.data);
        // The directory came from the kernel's dentry walk (physical); only a name with more
        // than one component can cross a symlinked directory.
        // An absolute name is mapped in the caller's view (its mount namespace and root);
        // a symlink's first name is its target text, not a place.
        let view = (h.flags & FX_F_ABS_VIEW != 0).then_some((h.dev, h.ino));
        let mut unresolved = false;
        let mut lexical = |d: &[u8], n: &[u8], place: bool| -> Option<Vec<u8>> {
            match view {
                Some(v) if place && n.first() == Some(&b'/') => {
                    match self.views.map(v, h.tgid, n) {
                        views::Mapped::Under(p) => Some(p),
                        views::Mapped::Outside => None,
                        views::Mapped::Unknown => {
                            unresolved = true;
                            None
                        }
                    }
                }
                _ => resolve_under(&root_abs, d, n),
            }
        };
        let p1 = lexical(d1, n1, h.op != FX_OP_PATH_SYMLINK);
        // Only renames, links and symlinks carry a second dir/name pair (xattr ops carry a
        // name and value there).
        let pair2 = matches!(
            h.op,
            FX_OP_PATH_RENAME | FX_OP_PATH_LINK | FX_OP_PATH_SYMLINK | FX_OP_PATH_MOUNT
        );
        let p2 = if pair2 { lexical(d2, n2, true) } else { None };
        if unresolved {
            self.unresolved_name(ev, out);
        }
        if h.flags & FX_F_NAME_GONE != 0 && h.op != FX_OP_PATH_LINK {
            // A call on a descriptor whose name was removed (fchmodat(fd, "", AT_EMPTY_PATH),
            // "/proc/self/fd/N" of a removed file): the name it shows is none of the tree's, or
            // another file's. Which inode it changed is not in a path op's event: a gap healed
            // by a base (rare; a linkat of such a descriptor is an arrival, below).
            self.stats.unresolved_names += 1;
            tracing::info!(
                op = h.op,
                "a path call on a descriptor whose name was removed: journaling a gap and a new base to heal it"
            );
            self.gap_after(out, GapReason::UnresolvedName);
            return Ok(());
        }
        let resolve = |p: Option<Vec<u8>>, n: &[u8]| {
            p.map(|p| {
                if n.contains(&b'/') {
                    physical_parent(&self.opts.root, p)
                } else {
                    RelPath::new(p)
                }
            })
        };
        let p1 = resolve(p1, n1);
        let p2 = resolve(p2, n2);
        let time_ns = self.probes.wall_ns(h.time_ns);
        let w = writer_of(h);
        let mk = |op| Event {
            time_ns,
            writer: w.clone(),
            op,
        };
        let root = self.opts.root.clone();
        // A call through a final symlink (chmod, chown, truncate, xattrs, utimes by path) is
        // followed by the applier in the replica's state at its seq. Inside a gap window the
        // replica may lack the symlink (a name waiting to be re-stated, or re-stated from a
        // later state of the source that no longer had it) and skip the call, and the target
        // is no name the heal re-states: queue the target, as the symlinks seen in seq order
        // say (crate::links) and as the source resolves it now (regressions: the namespace
        // workload's chmod and setxattr through a symlink that had just arrived by rename,
        // inside an arrival's gap; and, under load, a setxattr through `ns/a` removed before
        // the recorder converted the call, after a re-statement had read it gone).
        // The same call through a removed name that held a file with other names (lchown,
        // lsetxattr too) changed those: see `queue_what_a_call_reached`.
        let follows = match h.op {
            FX_OP_PATH_CHMOD | FX_OP_PATH_TRUNCATE => Some(true),
            FX_OP_PATH_CHOWN | FX_OP_PATH_SETXATTR | FX_OP_PATH_REMOVEXATTR | FX_OP_PATH_UTIMES => {
                Some(h.flags & FX_F_NOFOLLOW == 0)
            }
            _ => None,
        };
        if let (Some(follows), Some(p)) = (follows, &p1) {
            if self.in_gap_window() {
                self.queue_what_a_call_reached(p, follows, &root_abs, out);
            }
        }
        match h.op {
            FX_OP_PATH_UNLINK => {
                if let Some(p) = p1 {
                    out.push(mk(if h.flags & FX_F_RMDIR != 0 {
                        Op::Rmdir { path: p }
                    } else {
                        Op::Unlink { path: p }
                    }));
                }
            }
            FX_OP_PATH_MKDIR => {
                if let Some(p) = p1 {
                    let full = root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
                    // As the source has it (a default ACL, a setgid parent); gone already, as
                    // asked, owned by the caller's fsuid/fsgid (the applier gives it a setgid
                    // parent's group and setgid bit, as the kernel did).
                    let (mode, uid, gid) = match std::fs::symlink_metadata(&full) {
                        Ok(md) if md.is_dir() => (md.mode() & 0o7777, md.uid(), md.gid()),
                        _ => ((h.arg as u32 & 0o7777) & !h.umask, h.owner_uid, h.owner_gid),
                    };
                    out.push(mk(Op::Mkdir {
                        path: p,
                        mode,
                        uid,
                        gid,
                    }));
                }
            }
            FX_OP_PATH_RENAME => {
                let flags = h.arg as u32;
                // RENAME_WHITEOUT (overlayfs, fsstress) leaves a whiteout (a 0:0 character
                // device, mode 0) at the source unless the rename did nothing (between two
                // names of one inode). Within the root the flag is journaled and the applier
                // decides as the kernel did, from the replica's state at this seq; checking the
                // source now would see a later state (a later whiteout rename of the same name).
                let root = self.opts.root.clone();
                let whiteout = |from: &RelPath| {
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    let is_whiteout = std::fs::symlink_metadata(
                        root.join(std::ffi::OsStr::from_bytes(from.as_bytes())),
                    )
                    .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
                    (flags & RENAME_WHITEOUT != 0 && is_whiteout).then(|| {
                        mk(Op::Mknod {
                            path: from.clone(),
                            kind: EntryKind::CharDevice { rdev: 0 },
                            mode: 0,
                            // The creator's fsuid/fsgid, as for any new node.
                            uid: h.owner_uid,
                            gid: h.owner_gid,
                        })
                    })
                };
                match (p1, p2) {
                    (Some(from), Some(to)) => out.push(mk(Op::Rename { from, to, flags })),
                    // Exchanged with something outside the root: what was at `from` left, and
                    // what was outside arrived there.
                    (Some(from), None) if flags & RENAME_EXCHANGE != 0 => {
                        let gone = mk(Op::Resync {
                            path: from.clone(),
                            meta: None,
                        });
                        self.moved_in(from, gone, out)?;
                    }
                    // Moved out of the root: gone from the replica's point of view, and its
                    // whiteout (if the source holds one now; the target is outside, so the
                    // rename cannot have been a no-op between two names in the root).
                    (Some(from), None) => {
                        let w = whiteout(&from);
                        out.push(mk(Op::Resync {
                            path: from,
                            meta: None,
                        }));
                        out.extend(w);
                    }
                    // Moved in (or exchanged in): whatever the replica had at `to` was replaced;
                    // the arrival's content is read once the records before that read are
                    // journaled (see `moved_in`).
                    (None, Some(to)) => {
                        let replaced = mk(Op::Resync {
                            path: to.clone(),
                            meta: None,
                        });
                        self.moved_in(to, replaced, out)?;
                    }
                    (None, None) => {}
                }
            }
            FX_OP_PATH_LINK => match (p1, p2) {
                (Some(existing), Some(new)) if h.flags & FX_F_NAME_GONE == 0 => {
                    out.push(mk(Op::Link { existing, new }))
                }
                // A link from outside the root, or whose first name came from a descriptor
                // whose dentry is unlinked (an O_TMPFILE's "#ino" through /proc/self/fd or
                // AT_EMPTY_PATH: no entry the replica has): the new name is an arrival.
                (_, Some(new)) => {
                    let none = mk(Op::Resync {
                        path: new.clone(),
                        meta: None,
                    });
                    self.moved_in(new, none, out)?;
                }
                _ => {}
            },
            FX_OP_PATH_SYMLINK => {
                if let Some(p) = p2 {
                    if !n1.is_empty() {
                        // Owned as the source's symlink is (a setgid parent's group), else by
                        // the caller's fsuid/fsgid (see MKDIR).
                        let full = root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
                        let same = |md: &std::fs::Metadata| {
                            md.file_type().is_symlink()
                                && std::fs::read_link(&full)
                                    .is_ok_and(|t| t.as_os_str().as_bytes() == n1)
                        };
                        let (uid, gid) = match std::fs::symlink_metadata(&full) {
                            Ok(md) if same(&md) => (md.uid(), md.gid()),
                            _ => (h.owner_uid, h.owner_gid),
                        };
                        out.push(mk(Op::Symlink {
                            path: p,
                            target: n1.to_vec(),
                            uid,
                            gid,
                        }));
                    }
                }
            }
            FX_OP_PATH_CHMOD => {
                // A symlink's own mode cannot change: the applier follows a symlink path itself,
                // in the replica's state at this seq, which is exactly what the kernel did here.
                if let Some(p) = p1 {
                    let asked = h.arg as u32 & 0o7777;
                    let mut mode = asked;
                    // Asking for setuid/setgid: the kernel clears setgid for a caller outside
                    // the entry's group without CAP_FSETID (any file type: `cp -r` into a setgid
                    // directory chmods each directory it makes), which only the source shows.
                    // A regular file is remembered for a later drop of its bits (`crate::modes`)
                    // with the mode journaled, not the one read now (a write may have dropped
                    // them since; its event compares with this).
                    if asked & 0o6000 != 0 {
                        if let Some(md) = self.source_meta(&p, true) {
                            let now = md.mode() & 0o7777;
                            if asked & 0o2000 != 0 && now == asked & !0o2000 {
                                self.stats.implicit_mode_changes += 1;
                                mode = now;
                            }
                            if md.is_file() {
                                let key = (foxing_probes::kernel_dev(md.dev()), md.ino());
                                self.special_modes.journaled(key, 0o100000 | mode);
                            }
                        }
                    }
                    out.push(mk(Op::Chmod { path: p, mode }));
                }
            }
            FX_OP_PATH_CHOWN => {
                // chown (not lchown) follows a final symlink: the applier does, in the replica's
                // state at this seq (see SETXATTR below).
                if let Some(path) = p1 {
                    let opt = |v: u32| (v != u32::MAX).then_some(v);
                    let (uid, gid) = (opt(h.arg as u32), opt((h.arg >> 32) as u32));
                    let nofollow = h.flags & FX_F_NOFOLLOW != 0;
                    let mode = self.mode_dropped_by_path_call(&path, !nofollow);
                    out.push(mk(if nofollow {
                        Op::Chown {
                            path: path.clone(),
                            uid,
                            gid,
                        }
                    } else {
                        Op::ChownFollow {
                            path: path.clone(),
                            uid,
                            gid,
                        }
                    }));
                    out.extend(mode.map(|mode| mk(Op::Chmod { path, mode })));
                }
            }
            FX_OP_PATH_TRUNCATE => {
                // truncate(2) follows symlinks; the applier does the same (see Chmod).
                if let Some(p) = p1 {
                    let mode = self.mode_dropped_by_path_call(&p, true);
                    out.push(mk(Op::Truncate {
                        path: p.clone(),
                        size: h.arg,
                    }));
                    out.extend(mode.map(|mode| mk(Op::Chmod { path: p, mode })));
                }
            }
            FX_OP_PATH_UTIMES => {
                if let Some(p) = p1 {
                    let (a, m) = times(h, time_ns);
                    out.push(mk(Op::SetTimes {
                        path: p,
                        atime_ns: a,
                        mtime_ns: m,
                    }));
                }
            }
            FX_OP_PATH_SETXATTR | FX_OP_PATH_REMOVEXATTR => {
                // data is name '\0' value here, not a second dir/name pair. A final symlink the
                // kernel followed is followed by the applier, in the replica's state at this
                // seq: resolved here, it would be resolved in a later state (regression: the
                // symlink removed meanwhile, the xattr was journaled on it and lost).
                let follow = h.flags & FX_F_NOFOLLOW == 0;
                if let Some(p) = p1 {
                    let (name, value) = split_nul(&ev.data);
                    // An access ACL sets the mode (read from the source: no inode here).
                    let acl_mode = if name == POSIX_ACL_ACCESS {
                        acl_mode_after(name, self.source_meta(&p, follow).map(|m| m.mode()))
                    } else {
                        None
                    };
                    out.push(mk(match (h.op == FX_OP_PATH_SETXATTR, follow) {
                        (true, _) => Op::SetXattr {
                            path: p.clone(),
                            name: name.to_vec(),
                            value: value.to_vec(),
                            flags: if follow { XATTR_FOLLOW } else { 0 },
                        },
                        (false, true) => Op::RemoveXattrFollow {
                            path: p.clone(),
                            name: name.to_vec(),
                        },
                        (false, false) => Op::RemoveXattr {
                            path: p.clone(),
                            name: name.to_vec(),
                        },
                    }));
                    if let Some(mode) = acl_mode {
                        out.push(mk(Op::Chmod { path: p, mode }));
                    }
                }
            }
            FX_OP_PATH_MKNOD => {
                if let Some(p) = p1 {
                    let mode = h.arg as u32;
                    let perm = (mode & 0o7777) & !h.umask;
                    let kind = match mode & 0o170000 {
                        0o010000 => Some(EntryKind::Fifo),
                        0o140000 => Some(EntryKind::Socket),
                        0o020000 => Some(EntryKind::CharDevice { rdev: h.offset }),
                        0o060000 => Some(EntryKind::BlockDevice { rdev: h.offset }),
                        _ => None,
                    };
                    // Mode and owner as the source's node has them (a default ACL, a setgid
                    // parent, setgid cleared for a caller outside that group), else as asked,
                    // owned by the caller's fsuid/fsgid (see MKDIR).
                    let full = root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
                    let want = if kind.is_some() {
                        mode & 0o170000
                    } else {
                        0o100000
                    };
                    let (perm, uid, gid) = match std::fs::symlink_metadata(&full) {
                        Ok(md) if md.mode() & 0o170000 == want => {
                            (md.mode() & 0o7777, md.uid(), md.gid())
                        }
                        _ => (perm, h.owner_uid, h.owner_gid),
                    };
                    out.push(mk(match kind {
                        Some(kind) => Op::Mknod {
                            path: p,
                            kind,
                            mode: perm,
                            uid,
                            gid,
                        },
                        None => Op::Create {
                            path: p,
                            mode: perm,
                            uid,
                            gid,
                        },
                    }));
                }
            }
            FX_OP_PATH_MOUNT => {
                // A filesystem mounted on (or unmounted from, or moved to or from) a directory
                // under the root: what the tree shows there changed wholesale, with no event
                // for any entry. Re-stated like an arrival (removed, then read again). The
                // root itself is `check_root`'s (its dev changes).
                for p in [p1, p2].into_iter().flatten() {
                    if p.as_bytes().is_empty() {
                        continue;
                    }
                    self.stats.mount_changes += 1;
                    tracing::info!(path = %p, "a mount change under the root: re-stating what the path shows now");
                    let replaced = mk(Op::Resync {
                        path: p.clone(),
                        meta: None,
                    });
                    self.moved_in(p, replaced, out)?;
                }
            }
            other => tracing::warn!(op = other, "unknown path event skipped"),
        }
        Ok(())
    }

    /// Something arrived at `to` from outside the root (a rename, an exchange, a link, an
    /// O_TMPFILE given a name): the records cannot tell its content, so a gap opens (unless one
    /// is open for a heal not yet run), then `removal` (a `Resync` without metadata of `to`:
    /// whatever the replica had there was replaced) is journaled inside it, and `to` is
    /// re-stated from the source by the next heal: the entry and everything below it, where it
    /// is then (the name follows later renames), or its removal if it is gone (`restate`). Not
    /// read now: that would read state newer than the records still to be journaled before the
    /// read, which would undo it on the replica.
    fn moved_in(
        &mut self,
        to: RelPath,
        removal: Event,
        out: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        // Inodes the kernel judged outside the root may be inside now.
        self.probes.forget_dirty_verdicts()?;
        self.stats.moved_in += 1;
        self.restate_later(to, GapReason::MovedIn, out);
        out.push(removal);
        Ok(())
    }

    /// Queues `name` to be re-stated by the next heal, once the renames in flight are journaled
    /// (it follows those journaled after it); opens a gap for `reason` unless one is pending.
    fn restate_later(&mut self, name: RelPath, reason: GapReason, out: &mut Vec<Event>) {
        let first = self.no_gap_pending();
        self.races.restate_name(name);
        self.moved_since.get_or_insert_with(Instant::now);
        self.moved_settled = false;
        if first {
            self.gap_after(out, reason);
        }
    }

    /// Heals the journaled gaps waiting for it: by the marked inodes/chunks when they can be
    /// trusted, else by a whole-tree base; then a GapHealed for each.
    fn heal_pending(&mut self) -> anyhow::Result<()> {
        if self.pending_heals.is_empty() || self.in_resync || self.journal_down() {
            return Ok(());
        }
        self.heals_pending_since = None;
        let heals = std::mem::take(&mut self.pending_heals);
        let full = std::mem::take(&mut self.full_heal);
        // Healed by the targeted heal or the base (which reads every file where it is). Files
        // found moved while this heal runs are marked anew, with a gap of their own.
        let moved = std::mem::take(&mut self.moved_marks);
        let moved_chunks = std::mem::take(&mut self.chunk_marks);
        self.moved_since = None;
        // Every rename that could have raced a flagged event is journaled now (the heal waits
        // for `moved_settled`).
        let restate = self.races.settle();
        if full || restate.is_none() || !self.targeted_heal(&moved, &moved_chunks)? {
            self.base()?;
        } else if let Some(names) = restate {
            if !self.restate(&names)? {
                self.base()?;
            }
        }
        if self.journal_down() {
            // The journal failed during the heal: heal these with the next one, a base
            // (the dirty marks taken for this one are gone).
            self.pending_heals = heals;
            self.full_heal = true;
        } else {
            let evs = heals
                .into_iter()
                .map(|gap_seq| self.own(Op::GapHealed { gap_seq }))
                .collect();
            self.append(evs);
            if !self.journal_down() {
                if let Some(d) = self.degraded.take() {
                    tracing::warn!(
                        retries = d.retries,
                        "the journal failure is healed: recording is complete again"
                    );
                    self.stats.degraded = 0;
                }
            }
        }
        Ok(())
    }

    /// Heals ring losses by resyncing only the inodes whose events were dropped (the kernel
    /// marks them), by the path last seen for each. Returns false, having journaled nothing,
    /// when that cannot be trusted: marks lost (map full), a dropped event without an inode
    /// (path operations, syncs), too many inodes, an inode never seen or no longer at its last
    /// path (renamed or removed since): the caller then makes a whole-tree base.
    fn targeted_heal(
        &mut self,
        moved: &HashSet<(u64, u64)>,
        moved_chunks: &HashMap<(u64, u64), Vec<u64>>,
    ) -> anyhow::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let dirty = self.probes.take_dirty()?;
        // Whole inodes, and the chunks of the others (writes that touched few chunks).
        let mut whole: HashSet<(u64, u64)> = dirty.inodes.iter().copied().collect();
        whole.extend(moved.iter().copied());
        let mut chunks: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
        for (key, c) in &dirty.chunks {
            if !whole.contains(key) {
                chunks.entry(*key).or_default().push(*c);
            }
        }
        for (key, cs) in moved_chunks {
            if !whole.contains(key) {
                chunks.entry(*key).or_default().extend(cs);
            }
        }
        let count = whole.len() + chunks.len();
        if dirty.overflowed || count > TARGETED_HEAL_MAX_INODES {
            tracing::info!(
                inodes = count,
                overflowed = dirty.overflowed,
                "too many inodes lost for a targeted heal: a whole-tree base follows"
            );
            return Ok(false);
        }
        if whole.contains(&(0, 0)) {
            tracing::info!(
                "a lost event had no inode (a path operation or a sync): a whole-tree base follows"
            );
            return Ok(false);
        }
        // Each inode at the path last seen for it, else found by walking the tree (stat only,
        // no reads). An inode found nowhere was removed or moved out by journaled path
        // operations (a lost path operation would have marked (0, 0)): nothing to heal.
        let mut paths: Vec<((u64, u64), PathBuf)> = Vec::with_capacity(count);
        let mut missing = HashSet::new();
        for key in whole.iter().chain(chunks.keys()) {
            let at_last_path = self.inode_paths.get(key).and_then(|p| {
                let full = self
                    .opts
                    .root
                    .join(std::ffi::OsStr::from_bytes(p.as_bytes()));
                let md = std::fs::symlink_metadata(&full).ok()?;
                (foxing_probes::kernel_dev(md.dev()) == key.0 && md.ino() == key.1).then_some(full)
            });
            match at_last_path {
                Some(full) => paths.push((*key, full)),
                None => {
                    missing.insert(*key);
                }
            }
        }
        if !missing.is_empty() {
            let wanted = missing.len();
            let found = find_inodes(&self.opts.root, &mut missing);
            tracing::info!(
                wanted,
                found = found.len(),
                "lost events' inodes looked up by walking the tree"
            );
            paths.extend(found);
        }
        let mut links = HashMap::new();
        let mut n = 0;
        let mut chunk_bytes = 0u64;
        let now = Instant::now();
        for (key, full) in &paths {
            let Some(rp) = rel(&self.opts.root, full) else {
                continue;
            };
            match chunks.get(key) {
                Some(cs) if !whole.contains(key) => {
                    chunk_bytes += self.resync_chunks(full, &rp, cs, &mut links)?;
                    n += 1;
                    if !self.touched_all {
                        self.touched.insert(rp);
                        self.first_touch.get_or_insert(now);
                    }
                }
                _ => {
                    let k = self.resync_entry(full, &mut links)?;
                    if k == 0 {
                        // Moved or removed since it was looked up: heal it where it went.
                        let mut o = Vec::new();
                        self.resync_later(&rp, *key, GapReason::MovedBeforeRead, &mut o);
                        self.append(o);
                    }
                    n += k;
                    // Its directory's mtime may have moved with the lost events too.
                    if let Some(dir) = full.parent().and_then(|d| rel(&self.opts.root, d)) {
                        if !self.touched_all && !dir.as_bytes().is_empty() {
                            self.touched.insert(dir);
                            self.first_touch.get_or_insert(now);
                        }
                    }
                }
            }
        }
        self.stats.targeted_heals += 1;
        self.stats.targeted_heal_entries += n;
        tracing::info!(
            inodes = paths.len(),
            entries = n,
            chunk_bytes,
            "ring losses healed by resyncing the inodes (or chunks) they touched"
        );
        Ok(true)
    }

    /// Re-reads the marked chunks of a regular file: its current size (a Truncate), then the
    /// chunks' bytes as ResyncData. Anything else is resynced whole. Returns the bytes read.
    fn resync_chunks(
        &mut self,
        full: &Path,
        rp: &RelPath,
        chunks: &[u64],
        links: &mut HashMap<(u64, u64), RelPath>,
    ) -> anyhow::Result<u64> {
        self.pump_nested()?;
        let f = match std::fs::symlink_metadata(full) {
            Ok(md) if md.is_file() => open_source_file(full),
            _ => None,
        };
        let Some(f) = f else {
            self.resync_entry(full, links)?;
            return Ok(0);
        };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let time_ns = now_ns();
        let mut out = vec![self.own(Op::Truncate {
            path: rp.clone(),
            size,
        })];
        let mut sorted = chunks.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut bytes = 0;
        for c in sorted {
            let off = c.saturating_mul(foxing_probes::CHUNK_BYTES);
            if off >= size {
                continue;
            }
            let len = foxing_probes::CHUNK_BYTES.min(size - off);
            self.reread_into(&f, rp, off, len, time_ns, &mut out);
            bytes += len;
        }
        self.append(out);
        Ok(bytes)
    }

    /// Remembers the path an event gave for an inode (for targeted heals).
    fn note_inode_path(&mut self, dev: u64, ino: u64, path: &RelPath) {
        if ino == 0 || self.inode_paths.get(&(dev, ino)) == Some(path) {
            return;
        }
        if self.inode_paths.len() >= INODE_PATHS_MAX {
            self.inode_paths.clear();
        }
        self.inode_paths.insert((dev, ino), path.clone());
    }

    /// The kernel skips a probe while another BPF program runs on the same CPU (counted per
    /// program, with no seq taken): such a run may be a change never reported. Journal a gap
    /// and heal it like a ring overflow.
    fn check_missed_runs(&mut self) -> anyhow::Result<()> {
        self.last_missed_check = Instant::now();
        let missed = self.probes.missed_runs()?;
        if missed > self.last_missed {
            let n = missed - self.last_missed;
            self.last_missed = missed;
            self.stats.missed_runs += n;
            tracing::warn!(
                missed = n,
                "the kernel skipped running Foxing's probes (another BPF program was running on that CPU): journaling a gap and a new base to heal it"
            );
            let gap = self.own(Op::Gap {
                lost: n,
                reason: GapReason::ProbeMissed,
            });
            self.append_gap(gap);
        }
        Ok(())
    }

    /// A change the probes saw but cannot describe (an io_uring path operation, a write into a
    /// fixed-file slot, an oversized io_submit): journal a gap now and heal it with a base after
    /// this batch, like a moved-in subtree.
    fn untracked(&mut self, ev: &RawEvent, out: &mut Vec<Event>) {
        if ev.header.time_ns < self.probes.attached_boot_ns {
            // Completed while the probes were being attached (its submission not seen): the
            // base this recorder starts with reads the tree after it.
            tracing::debug!(
                what = ev.header.arg,
                "untracked change before the probes were attached: covered by the first base"
            );
            return;
        }
        self.stats.untracked += 1;
        tracing::warn!(
            what = ev.header.arg,
            path = %String::from_utf8_lossy(&ev.path),
            comm = %String::from_utf8_lossy(ev.header.comm.split(|b| *b == 0).next().unwrap_or(&[])),
            "a change the probes cannot describe (io_uring path operation or fixed file, or an oversized io_submit): journaling a gap and a new base to heal it"
        );
        self.gap_after(out, GapReason::Untracked);
    }

    /// Journals what the batch converted so far, then a Gap (lost 0) that a base heals.
    fn gap_after(&mut self, out: &mut Vec<Event>, reason: GapReason) {
        self.gaps_after += 1;
        self.append(std::mem::take(out));
        let gap = self.own(Op::Gap { lost: 0, reason });
        self.append_gap(gap);
    }

    /// A path op whose absolute name could not be mapped into its caller's view (every
    /// process of that mount namespace gone): it may have changed the tree; a gap healed by a
    /// base.
    fn unresolved_name(&mut self, ev: &RawEvent, out: &mut Vec<Event>) {
        self.stats.unresolved_names += 1;
        tracing::warn!(
            path = %String::from_utf8_lossy(&ev.path),
            mount_ns = ev.header.dev,
            comm = %String::from_utf8_lossy(ev.header.comm.split(|b| *b == 0).next().unwrap_or(&[])),
            "an absolute name from another mount namespace or root that could not be mapped (its processes are gone): journaling a gap and a new base to heal it"
        );
        self.gap_after(out, GapReason::UnresolvedName);
    }

    /// A file event flagged `FX_F_PATH_RACY`: what it changed is re-read where the file is,
    /// if a rename of its file or of a directory above it raced it (see `racy_event`): the
    /// chunks of a write, else the whole inode; a directory's name is re-stated.
    fn racy_path(&mut self, ev: &RawEvent, out: &mut Vec<Event>) {
        let h = &ev.header;
        let path = RelPath::new(ev.path.clone());
        if path.as_bytes().is_empty() || path.check().is_err() {
            return;
        }
        if h.ino == 0 || !regular_or_unknown(h.mode) {
            // A directory (fchmod, fsetxattr, futimes on its descriptor): its name is
            // re-stated, nothing to re-read.
            self.racy_event(ev, vec![path], None, out);
            return;
        }
        let mark = crate::races::Mark {
            path: path.clone(),
            key: (h.dev, h.ino),
            chunks: written_chunks(h),
        };
        self.racy_event(ev, vec![path], Some(mark), out);
    }

    /// An event flagged `FX_F_PATH_RACY` (a rename or mount change ran between the moment its
    /// names were taken and its seq): it and a rename may be journaled in the other order than
    /// they happened, and the replica would apply it at a place that does not exist there yet,
    /// or no longer (a file created or written in a directory being renamed, log rotation).
    /// The event is journaled as it is, behind a gap; once every rename that ran meanwhile is
    /// journaled, if one of them touched its names (`crate::races`), those names are
    /// re-stated from the source (`restate`) and a file event's inode re-read where it is.
    fn racy_event(
        &mut self,
        ev: &RawEvent,
        names: Vec<RelPath>,
        mark: Option<crate::races::Mark>,
        out: &mut Vec<Event>,
    ) {
        let first = self.no_gap_pending();
        let verdict = self.races.event(crate::races::RacyEvent {
            seq_named: ev.header.seq_named,
            seq: ev.header.seq,
            names,
            mark,
        });
        self.moved_since.get_or_insert_with(Instant::now);
        self.moved_settled = false;
        if first {
            self.gap_after(out, GapReason::ConcurrentWriters);
        }
        use crate::races::Verdict;
        match verdict {
            Verdict::Waiting => {}
            Verdict::Raced(m) | Verdict::Unknown(m @ Some(_)) => {
                self.stats.racy_paths += 1;
                if let Some(m) = m {
                    self.mark_later(&m.path, m.key, m.chunks, GapReason::ConcurrentWriters, out);
                }
            }
            Verdict::Unknown(None) => {
                self.stats.racy_paths += 1;
                tracing::info!(
                    seq = ev.header.seq,
                    "a path operation raced renames older than those remembered: a whole-tree base heals it"
                );
                self.full_heal = true;
            }
        }
    }

    /// Re-states `names` after a race (see `racy_event`): for each, what the source has there
    /// now: the highest component that is missing gone (a `Resync` without metadata, which
    /// removes what a misplaced record made on the replica), else the entry and everything
    /// below it. A file with more names than the pass found is linked to another name of it
    /// on the replica (the last one seen for its inode, if the source still has it there);
    /// returns false when such a name is unknown and the pass is not to be redone: the caller
    /// makes a whole-tree base, or the replica would hold a copy where the source has one inode.
    fn restate(&mut self, names: &[RelPath]) -> anyhow::Result<bool> {
        use std::os::unix::ffi::OsStrExt;
        let root = self.opts.root.clone();
        let mut links = HashMap::new();
        let mut done: HashSet<RelPath> = HashSet::new();
        let mut gone: HashSet<RelPath> = HashSet::new();
        let mut n = 0;
        let now = Instant::now();
        let seq_begin = self.seqs.next.unwrap_or(0);
        self.races.begin_pass();
        self.restating = Some(RestatePass {
            names: names.to_vec(),
            unplaced: HashMap::new(),
        });
        for name in names {
            if self.journal_down() {
                break;
            }
            if name.check().is_err() {
                continue;
            }
            // Below a name found gone: gone too. Below a directory resynced whole, only a name
            // found gone needs a record (a resync adds and updates, it does not remove).
            let b = name.as_bytes();
            let below = |set: &HashSet<RelPath>| {
                (0..b.len())
                    .filter(|&i| b[i] == b'/')
                    .any(|i| set.contains(&RelPath::new(&b[..i])))
            };
            if below(&gone) || gone.contains(name) || done.contains(name) {
                continue;
            }
            let in_done = below(&done);
            // Live events first, so that they keep their place before what is read now.
            self.pump_nested()?;
            let (prefix, exists) = crate::races::restate_target(name, |q| {
                let full = root.join(std::ffi::OsStr::from_bytes(q.as_bytes()));
                match std::fs::symlink_metadata(&full) {
                    Ok(md) if md.is_dir() => crate::races::Found::Directory,
                    Ok(_) => crate::races::Found::Other,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        crate::races::Found::Missing
                    }
                    Err(e) => {
                        tracing::warn!(path = %q, error = %e, "cannot read a raced name to re-state it");
                        crate::races::Found::Other
                    }
                }
            });
            if exists {
                if in_done || !done.insert(prefix.clone()) {
                    continue;
                }
                let full = root.join(std::ffi::OsStr::from_bytes(prefix.as_bytes()));
                n += self.resync_entry(&full, &mut links)?;
            } else {
                gone.insert(prefix.clone());
                let ev = self.own(Op::Resync {
                    path: prefix.clone(),
                    meta: None,
                });
                self.append(vec![ev]);
                n += 1;
            }
            // Its directory's mtime moves with the records that went to the wrong place.
            self.touch_parent(&prefix, now);
        }
        // Hard-linked files re-stated without all their names: the others are linked to the
        // re-stated copy.
        let (linked, unsure) = self.place_other_names()?;
        // Renames that ran during the pass: another pass once they settle, behind a gap. Those
        // not in flight now have their events in the ring (a rename's event precedes the end of
        // its in-flight count): drained first, so that `end_pass` sees them (regression: a
        // moved-in directory renamed while the pass read it lost its subdirectory on the
        // replica, the rename's event still in the ring when the pass ended). Past
        // RESTATE_DRAIN_BATCHES_MAX batches (continuous load), they count as in flight.
        let mut in_flight = self.probes.ns_changes_in_flight()? > 0;
        let mut drained = names.is_empty();
        if !drained {
            for _ in 0..RESTATE_DRAIN_BATCHES_MAX {
                if self.pump_nested_count()? == 0 {
                    drained = true;
                    break;
                }
            }
        }
        in_flight |= !drained;
        let renamed = self.races.pass_renamed();
        let mut all = names.to_vec();
        all.extend(linked);
        let redo = self.races.end_pass(&all, seq_begin, in_flight);
        if redo {
            self.moved_since.get_or_insert_with(Instant::now);
            self.moved_settled = false;
            self.gap_after(&mut Vec::new(), GapReason::ConcurrentWriters);
        }
        // A file with fewer names found than its link count has the others outside the root,
        // unless a rename ran meanwhile and the walk missed one.
        let short = self.restating.take().map_or(0, |p| {
            p.unplaced
                .values()
                .filter(|(nlink, seen)| (seen.len() as u64) < *nlink)
                .count()
        });
        let unknown_links = if renamed || in_flight { short } else { unsure };
        if !names.is_empty() {
            tracing::info!(
                names = names.len(),
                entries = n,
                "names that were raced or moved in re-stated from the source"
            );
        }
        // A pass to be redone (renames ran through it) may have missed a file's other names
        // because they moved: the next pass places them.
        if unknown_links > 0 && !redo {
            tracing::info!(
                files = unknown_links,
                "re-stated files have hard links the recorder cannot place: a whole-tree base follows"
            );
        }
        Ok(unknown_links == 0 || redo)
    }

    /// A change through a descriptor whose name was removed while the inode lives on under
    /// other names (a hard link's other name removed while open; an O_TMPFILE written after
    /// linkat named it, whose descriptor still shows "#ino"): the event's path names nothing,
    /// or another file. The inode is resynced where it is (its last name seen, else found by
    /// walking the tree), behind a gap: the chunks a write touched, else all of it.
    fn name_gone(&mut self, ev: &RawEvent, out: &mut Vec<Event>) {
        let h = &ev.header;
        self.stats.moved_before_read += 1;
        let key = (h.dev, h.ino);
        let known = self.inode_paths.get(&key).cloned();
        let stale = RelPath::new(ev.path.clone());
        self.mark_later(
            known.as_ref().unwrap_or(&stale),
            key,
            written_chunks(h),
            GapReason::MovedBeforeRead,
            out,
        );
    }

    /// No gap waits for a heal: something to heal later needs a gap of its own. (Not
    /// `!marks_pending()`: marks or names can be left waiting with no gap open, when they were
    /// queued while a heal ran after it had taken its gaps; their heal then never came, and an
    /// arrival queued behind them was never re-stated: the namespace workload left a moved-in
    /// directory's `sub/file` missing on the replica.)
    fn no_gap_pending(&self) -> bool {
        self.pending_heals.is_empty()
    }

    /// A metadata call by path (chmod, chown, truncate, xattrs, times) inside a gap window:
    /// queues for re-statement what it reached through a symlink (`follows`; see
    /// `convert_path_op`). When what it changed cannot be known, a gap healed by a base: `p` is
    /// gone from the source, no symlink remembered there, and `p` lies at or below a name
    /// waiting to be (or being) re-stated, which the replica does not hold and the recorder
    /// never read: a symlink there named some other file, and a file there may have had other
    /// names, which the call changed too (a path op's event has no inode). Also when `follows`
    /// and some symlinks could not be remembered.
    fn queue_what_a_call_reached(
        &mut self,
        p: &RelPath,
        follows: bool,
        root_abs: &[u8],
        out: &mut Vec<Event>,
    ) {
        use std::os::unix::ffi::OsStrExt;
        let waiting = self.not_held_by_the_replica(p);
        if !follows && !waiting {
            return; // the replica holds the name: it applies the call there
        }
        let full = self
            .opts
            .root
            .join(std::ffi::OsStr::from_bytes(p.as_bytes()));
        let now = std::fs::symlink_metadata(&full);
        let mut targets = Vec::new();
        if follows && now.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            targets.extend(physical(&full).and_then(|c| {
                resolve_under(root_abs, b"", c.as_os_str().as_bytes()).map(RelPath::new)
            }));
        }
        let seen = follows && self.links.target(p).is_some();
        if follows {
            targets.extend(self.links.follow(root_abs, p));
        }
        let unknown = waiting || (follows && !self.links.complete());
        if !seen && now.is_err() && unknown {
            self.stats.unresolved_names += 1;
            tracing::info!(
                path = %p,
                "a call through a name removed before it was read, inside a gap window, may have changed a file under other names: journaling a gap and a new base to heal it"
            );
            self.gap_after(out, GapReason::UnresolvedName);
            return;
        }
        targets.dedup();
        for t in targets.into_iter().filter(|t| !t.as_bytes().is_empty()) {
            self.restate_later(t, GapReason::ConcurrentWriters, out);
        }
    }

    /// `p` is at or below a name waiting for its re-statement, or being re-stated: the replica
    /// does not hold the source's entry there (yet), and skips calls on it.
    fn not_held_by_the_replica(&self, p: &RelPath) -> bool {
        self.races.waiting_at_or_above(p)
            || self
                .restating
                .as_ref()
                .is_some_and(|r| r.names.iter().any(|n| crate::races::at_or_below(p, n)))
    }

    /// The replica is inside a gap window now: a gap journaled and not healed yet (its heal
    /// may be running).
    fn in_gap_window(&self) -> bool {
        !self.pending_heals.is_empty() || self.restating.is_some() || self.marks_pending()
    }

    /// Marks or raced events wait for a heal (a gap is open for them).
    fn marks_pending(&self) -> bool {
        !self.moved_marks.is_empty() || !self.chunk_marks.is_empty() || self.races.holding()
    }

    /// The size of the written file now, if it is still at its path (see `written_file`).
    fn current_size(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        out: &mut Vec<Event>,
    ) -> Option<u64> {
        self.written_file(path, key, out).map(|(_, size)| size)
    }

    /// The file an event wrote (`key`: its kernel dev and inode), opened for reading at the
    /// path the event gave, if it is still there. If the path is gone or names another inode
    /// now (renamed, replaced or removed since the write: `write big tmp; rename tmp final` is
    /// how most programs save a file), reading it would lose the bytes or journal another
    /// file's: the inode is marked instead and resynced where it is, after the records that
    /// moved it (`resync_later`).
    /// Returns the file and its size.
    fn written_file(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        out: &mut Vec<Event>,
    ) -> Option<(File, u64)> {
        use std::os::unix::fs::MetadataExt;
        let opened = self.source_file(path);
        // No inode to check: never from the probes' file events.
        let same = |md: &std::fs::Metadata| {
            key.1 == 0 || (foxing_probes::kernel_dev(md.dev()) == key.0 && md.ino() == key.1)
        };
        match opened {
            Some((f, md)) if same(&md) => return Some((f, md.len())),
            None if key.1 == 0 => return None,
            _ => {}
        }
        self.stats.moved_before_read += 1;
        tracing::debug!(path = %path, ino = key.1, "a range to re-read left its path before it was read: the inode is resynced where it went");
        self.resync_later(path, key, GapReason::MovedBeforeRead, out);
        None
    }

    /// The bytes of a change to `path` cannot be read now (its file left the path before the
    /// recorder read it, or a write's position is unknown): journal a gap (once per heal: the
    /// window stays open until then) and mark the inode, resynced whole by the next heal at the
    /// path it is then (renames journaled meanwhile are followed, see `append`; else the tree
    /// is walked for it). The heal waits until every rename in flight now has been journaled
    /// (`moved_settled`), so none of them can undo it.
    fn resync_later(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        reason: GapReason,
        out: &mut Vec<Event>,
    ) {
        self.mark_later(path, key, None, reason, out);
    }

    /// [`Recorder::resync_later`] for `chunks` of the inode only (None: all of it).
    fn mark_later(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        chunks: Option<std::ops::RangeInclusive<u64>>,
        reason: GapReason,
        out: &mut Vec<Event>,
    ) {
        if self.inode_paths.len() >= INODE_PATHS_MAX {
            self.inode_paths.clear();
        }
        self.inode_paths.insert(key, path.clone());
        self.mark_inode_later(key, chunks, reason, out);
    }

    /// [`Recorder::mark_later`] of an inode whose path is unknown: the heal walks the tree.
    fn mark_inode_later(
        &mut self,
        key: (u64, u64),
        chunks: Option<std::ops::RangeInclusive<u64>>,
        reason: GapReason,
        out: &mut Vec<Event>,
    ) {
        let first = self.no_gap_pending();
        match chunks {
            Some(cs) => self.chunk_marks.entry(key).or_default().extend(cs),
            None => {
                self.moved_marks.insert(key);
            }
        }
        self.moved_since.get_or_insert_with(Instant::now);
        self.moved_settled = false;
        if first {
            self.gap_after(out, reason);
        }
    }

    /// A regular source file under the root, opened for reading (open_source_file).
    /// With its metadata (the fstat that checked its type).
    fn source_file(&self, path: &RelPath) -> Option<(File, std::fs::Metadata)> {
        use std::os::unix::ffi::OsStrExt;
        open_source_file_meta(
            &self
                .opts
                .root
                .join(std::ffi::OsStr::from_bytes(path.as_bytes())),
        )
    }

    /// The file from `offset` to its end as it is now: its size, a hole punched over the rest,
    /// and the data ranges there re-read (holes stay holes).
    fn resync_tail(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        offset: u64,
        time_ns: u64,
        out: &mut Vec<Event>,
    ) {
        use foxing_proto::record::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE};
        let Some((f, size)) = self.written_file(path, key, out) else {
            return;
        };
        let mk = |op| Event {
            time_ns,
            writer: recorder_writer(),
            op,
        };
        out.push(mk(Op::Truncate {
            path: path.clone(),
            size,
        }));
        if size > offset {
            out.push(mk(Op::Fallocate {
                path: path.clone(),
                mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                offset,
                len: size - offset,
            }));
        }
        for (off, len) in data_ranges(&f, offset, size) {
            self.reread_into(&f, path, off, len, time_ns, out);
        }
    }

    /// Re-reads a range of a source file (a write too large to carry, or lost) as ResyncData.
    fn reread(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        offset: u64,
        len: u64,
        time_ns: u64,
        out: &mut Vec<Event>,
    ) {
        let Some((f, size)) = self.written_file(path, key, out) else {
            return;
        };
        let end = offset.saturating_add(len).min(size);
        self.reread_into(&f, path, offset, end.saturating_sub(offset), time_ns, out);
    }

    /// A base epoch: BaseBegin, every entry's metadata and content, BaseEnd. Live events keep
    /// being journaled between entries.
    pub fn base(&mut self) -> anyhow::Result<u64> {
        // A base reads by path: the path must name the watched directory before and after.
        self.check_root()?;
        let base_id = now_ns();
        let begin = self.own(Op::BaseBegin { base_id });
        self.append(vec![begin]);
        let root = self.opts.root.clone();
        let mut links: HashMap<(u64, u64), RelPath> = HashMap::new();
        let mut n = 0u64;
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(&root) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(e) => anyhow::bail!("cannot list the watched root {}: {e}", root.display()),
        };
        entries.sort();
        self.base_active = true;
        self.walk_extra.clear();
        self.walk_extra_overflowed = false;
        let walked = (|| -> anyhow::Result<u64> {
            let mut n = 0;
            for p in entries {
                n += self.resync_entry(&p, &mut links)?;
            }
            // Renames that ran during the walk have their targets walked again
            // (`walk_again`): those still in the ring, or still in flight (their events come
            // after their effect), are waited for, so that none arrives after the BaseEnd.
            // A rename's event is in the ring before its in-flight count drops: with none in
            // flight, emptying the ring sees every rename that ran. Other events drained
            // meanwhile do not hold the base's end (regression: under steady writes the ring
            // is never empty for long).
            for _ in 0..BASE_SETTLE_ROUNDS_MAX {
                while let Some(p) = self.walk_extra.pop() {
                    n += self.resync_entry(&p, &mut links)?;
                }
                let quiet = self.probes.ns_changes_in_flight()? == 0;
                let mut emptied = false;
                for _ in 0..RESTATE_DRAIN_BATCHES_MAX {
                    if self.pump_nested_count()? == 0 {
                        emptied = true;
                        break;
                    }
                }
                if !self.walk_extra.is_empty() {
                    continue;
                }
                if quiet && emptied {
                    return Ok(n);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            self.walk_extra_overflowed = true;
            Ok(n)
        })();
        self.base_active = false;
        n += walked?;
        self.check_root()?;
        if self.journal_down() {
            // Cut short: the next heal starts a new base.
            self.base_walked = 0;
            tracing::warn!(base_id, "base abandoned: the journal cannot be written");
            return Ok(base_id);
        }
        let end = self.own(Op::BaseEnd { base_id });
        self.append(vec![end]);
        if std::mem::take(&mut self.walk_extra_overflowed) {
            // Renames kept coming: the base may lack what they moved. Another base heals it.
            tracing::warn!(
                base_id,
                "renames kept running through the base: a gap and another base follow"
            );
            self.walk_extra.clear();
            self.full_heal = true;
            self.gap_after(&mut Vec::new(), GapReason::ConcurrentWriters);
        }
        self.stats.bases += 1;
        self.stats.base_entries += n;
        self.base_walked = 0;
        self.publish_stats();
        tracing::info!(base_id, entries = n, "base complete");
        Ok(base_id)
    }

    /// During a base: `p`, the target of a rename journaled while the base walks, is walked
    /// again (see `walk_extra`); at most BASE_REWALK_MAX wait at once (past it, the base is
    /// followed by another).
    fn walk_again(&mut self, p: PathBuf) {
        if self.walk_extra.contains(&p) {
            return;
        }
        if self.walk_extra.len() >= BASE_REWALK_MAX {
            self.walk_extra_overflowed = true;
            return;
        }
        self.walk_extra.push(p);
    }

    /// Journals `p` (Resync + content) and, for a directory, everything below it; drains live
    /// events before each entry so they keep their place. Returns the entries journaled.
    fn resync_entry(
        &mut self,
        p: &Path,
        links: &mut HashMap<(u64, u64), RelPath>,
    ) -> anyhow::Result<u64> {
        let root = self.opts.root.clone();
        let mut stack = vec![p.to_path_buf()];
        let mut n = 0;
        while let Some(p) = stack.pop() {
            if self.journal_down() {
                break;
            }
            self.pump_nested()?;
            stack.append(&mut self.walk_extra);
            let Some(rp) = rel(&root, &p) else { continue };
            // Reached through its directory, opened without following a symlink: `at` cannot
            // lead elsewhere (one on the way now a symlink: not an entry, skipped).
            let Some((_dir, at)) = beneath(&p) else {
                continue;
            };
            let Ok(md) = std::fs::symlink_metadata(&at) else {
                continue;
            }; // gone: its removal is journaled live
            let Ok(meta) = entry_meta(&at, &md) else {
                continue;
            };
            n += 1;
            self.base_walked += 1;
            let key = (foxing_probes::kernel_dev(md.dev()), md.ino());
            // The Resync journals the mode: a setuid/setgid file is remembered with it.
            self.special_modes.journaled(key, md.mode());
            // The name seen before for this inode: another name of a hard-linked file.
            let seen_before = if self.inode_paths.len() < INODE_PATHS_MAX {
                self.inode_paths.insert(key, rp.clone())
            } else {
                self.inode_paths.get(&key).cloned()
            };
            if self.base_walked.is_multiple_of(256) {
                if let Ok(mut sh) = self.shared.lock() {
                    sh.0.base_entries = self.stats.base_entries + self.base_walked;
                }
            }
            if !md.is_dir() && md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    let ev = self.own(Op::Link {
                        existing: first.clone(),
                        new: rp.clone(),
                    });
                    self.append(vec![ev]);
                    if let Some(seen) = self
                        .restating
                        .as_mut()
                        .and_then(|p| p.unplaced.get_mut(&key))
                    {
                        seen.1.push(rp.clone());
                    }
                    continue;
                }
                if self.restating.is_some() {
                    // A re-statement pass: the file's other names may be on the replica
                    // already, outside what this pass re-states.
                    match self.other_name_outside_pass(&md, &rp, seen_before) {
                        Some(other) => {
                            // Remembered for the inode, not `rp`: a pass that runs again finds
                            // it there.
                            self.inode_paths.insert(key, other.clone());
                            links.insert((md.dev(), md.ino()), other.clone());
                            let ev = self.own(Op::Link {
                                existing: other,
                                new: rp.clone(),
                            });
                            self.append(vec![ev]);
                            continue;
                        }
                        None => {
                            // Its other names may still come in this pass.
                            tracing::debug!(path = %rp, nlink = md.nlink(), "a re-stated file's other names are not placed yet");
                            if let Some(p) = &mut self.restating {
                                p.unplaced.insert(key, (md.nlink(), vec![rp.clone()]));
                            }
                        }
                    }
                }
                links.insert((md.dev(), md.ino()), rp.clone());
            }
            let mut evs = vec![self.own(Op::Resync {
                path: rp.clone(),
                meta: Some(meta),
            })];
            if md.is_file() {
                if let Some(f) = open_source_file(&at) {
                    for (off, len) in data_ranges(&f, 0, md.size()) {
                        self.reread_into(&f, &rp, off, len, now_ns(), &mut evs);
                    }
                }
            } else if md.is_dir() {
                // A re-stated directory's entries are made on the replica after its record,
                // which moves its mtime there: the times sweep states it again afterwards (a
                // base does this at its end).
                if self.restating.is_some() && !self.touched_all {
                    self.touched.insert(rp.clone());
                    self.first_touch.get_or_insert_with(Instant::now);
                }
                if let Ok(rd) = std::fs::read_dir(&at) {
                    let mut kids: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| p.join(e.file_name()))
                        .collect();
                    kids.sort();
                    stack.extend(kids.into_iter().rev());
                }
            }
            self.append(evs);
        }
        Ok(n)
    }

    /// The names of the hard-linked files a re-statement pass re-stated (`RestatePass::unplaced`)
    /// that the pass did not reach: found by a stat-only walk of the tree, each linked to the
    /// copy the pass made (the replica may hold there the file's old inode, or a copy of it).
    /// Returns those names, and how many files could not have their names linked because the
    /// re-stated name no longer holds the file.
    fn place_other_names(&mut self) -> anyhow::Result<(Vec<RelPath>, usize)> {
        use std::os::unix::fs::MetadataExt;
        let Some(pass) = &self.restating else {
            return Ok((Vec::new(), 0));
        };
        let mut wanted: HashMap<(u64, u64), u64> = pass
            .unplaced
            .iter()
            .filter(|(_, (nlink, names))| (names.len() as u64) < *nlink)
            .map(|(key, (nlink, _))| (*key, *nlink))
            .collect();
        if wanted.is_empty() || wanted.len() > TARGETED_HEAL_MAX_INODES {
            return Ok((Vec::new(), wanted.len()));
        }
        // Live events first: the links state what the walk finds, after them.
        self.pump_nested()?;
        let root = self.opts.root.clone();
        let found = find_names(&root, &mut wanted);
        let mut linked = Vec::new();
        let mut unsure: HashSet<(u64, u64)> = HashSet::new();
        let now = Instant::now();
        for (key, full) in found {
            let Some(rp) = rel(&root, &full) else {
                continue;
            };
            let Some((_, names)) = self
                .restating
                .as_mut()
                .and_then(|p| p.unplaced.get_mut(&key))
            else {
                continue;
            };
            if names.contains(&rp) || unsure.contains(&key) {
                continue;
            }
            // The copy the pass made: still this file on the source (else an event not
            // journaled yet may remove it before the link on the replica).
            let anchor = names[0].clone();
            let at_anchor = std::fs::symlink_metadata(
                root.join(std::ffi::OsStr::from_bytes(anchor.as_bytes())),
            )
            .is_ok_and(|md| (foxing_probes::kernel_dev(md.dev()), md.ino()) == key);
            if !at_anchor {
                unsure.insert(key);
                continue;
            }
            names.push(rp.clone());
            let ev = self.own(Op::Link {
                existing: anchor,
                new: rp.clone(),
            });
            self.append(vec![ev]);
            // Its directory's mtime moves with the link on the replica.
            self.touch_parent(&rp, now);
            linked.push(rp);
        }
        if !linked.is_empty() {
            tracing::info!(
                names = linked.len(),
                "other names of re-stated hard-linked files found by walking the tree: linked"
            );
        }
        Ok((linked, unsure.len()))
    }

    /// The directory of `p` (below the root) gets its times stated again by the next sweep:
    /// records journaled for `p` out of their place moved its mtime on the replica.
    fn touch_parent(&mut self, p: &RelPath, now: Instant) {
        if let Some(i) = p.as_bytes().iter().rposition(|&c| c == b'/') {
            if !self.touched_all {
                self.touched.insert(RelPath::new(&p.as_bytes()[..i]));
                self.first_touch.get_or_insert(now);
            }
        }
    }

    /// During a re-statement pass, another name of the hard-linked file `md` (found at `rp`)
    /// that the replica holds already: `seen_before`, the last name seen for its inode, if the
    /// source has the inode there now and the pass does not re-state it. None when the other
    /// names are outside the root, or unknown (never seen, or forgotten).
    fn other_name_outside_pass(
        &self,
        md: &std::fs::Metadata,
        rp: &RelPath,
        seen_before: Option<RelPath>,
    ) -> Option<RelPath> {
        let pass = self.restating.as_ref()?;
        let other = seen_before.filter(|o| o != rp)?;
        if pass.names.iter().any(|n| crate::races::related(n, &other)) {
            return None;
        }
        let full = self
            .opts
            .root
            .join(std::ffi::OsStr::from_bytes(other.as_bytes()));
        let o = std::fs::symlink_metadata(full).ok()?;
        (o.dev() == md.dev() && o.ino() == md.ino()).then_some(other)
    }

    /// Journals pending live events while a base or subtree resync is running (not recursing
    /// into another resync: moved-in subtrees found meanwhile are read by this walk or the next).
    fn pump_nested(&mut self) -> anyhow::Result<()> {
        self.pump_nested_count().map(|_| ())
    }

    /// [`Recorder::pump_nested`], returning the events drained (0 also when nested).
    fn pump_nested_count(&mut self) -> anyhow::Result<usize> {
        if self.in_resync {
            return Ok(0);
        }
        self.in_resync = true;
        let r = self.pump(Duration::ZERO);
        self.in_resync = false;
        r
    }

    /// A shared writable mapping: remember the file; its pages are re-read as they turn dirty.
    fn note_mmap(&mut self, ev: &RawEvent) {
        let h = &ev.header;
        let path = RelPath::new(ev.path.clone());
        if path.as_bytes().is_empty() || path.check().is_err() {
            return;
        }
        let full = self
            .opts
            .root
            .join(std::ffi::OsStr::from_bytes(path.as_bytes()));
        // tmpfs (shmem) does not report dirty pages: poll its mapped ranges instead.
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        // f_type's integer type varies by architecture.
        #[allow(clippy::unnecessary_cast)]
        let poll = rustix::fs::statfs(&full).is_ok_and(|st| st.f_type as i64 == TMPFS_MAGIC);
        self.stats.mapped_files += 1;
        tracing::debug!(path = %path, offset = h.offset, len = h.len, poll, "shared writable mapping");
        let now = Instant::now();
        self.mapped
            .on_mmap(path.clone(), (h.dev, h.ino), h.offset, h.len, poll, now);
        self.mapped_active = true;
        // Pages dirty when it was mapped report nothing when stored to (tmpfs is polled).
        if !poll && h.arg & (FX_MMAP_DIRTY_PAGES | FX_MMAP_WRITEBACK) != 0 {
            // Written back since (the whole inode, as writeback does): which pages were dirty
            // is unknown, so the mapped range is read once.
            let cleaned = h.arg & FX_MMAP_WRITEBACK != 0;
            self.settle_if_dirty(&path, (h.dev, h.ino), h.offset, h.len, cleaned, now);
        }
    }

    /// Pages of a newly noted mapping that are dirty already report nothing when stored to
    /// (until writeback cleans them): the chunks of the range with dirty pages now (all of
    /// them if `all` or if none is dirty now: cleaned since the mapping) are re-read until
    /// they are clean (`MappedFiles::settle`).
    fn settle_if_dirty(
        &mut self,
        path: &RelPath,
        key: (u64, u64),
        offset: u64,
        len: u64,
        all: bool,
        now: Instant,
    ) {
        use crate::mapped::MAPPED_SETTLE_CHUNK_BYTES as CHUNK;
        if self.mapped.inode_of(path) != Some(key) {
            return;
        }
        let Some(f) = self.mapped_source(path) else {
            return;
        };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let chunks = offset / CHUNK..offset.saturating_add(len).min(size).div_ceil(CHUNK);
        // Unknown (no cachestat before Linux 6.5): taken as dirty.
        let mut dirty: std::collections::BTreeSet<u64> = chunks
            .clone()
            .filter(|c| all || dirty_pages(&f, c * CHUNK, CHUNK).is_none_or(|n| n > 0))
            .collect();
        if dirty.is_empty() {
            dirty.extend(chunks);
        }
        if !dirty.is_empty() {
            self.stats.mapped_settling += 1;
            tracing::debug!(path = %path, chunks = dirty.len(), "mapping over pages dirty already: re-reading them until writeback cleans them");
            self.mapped.settle(path, dirty, now);
        }
    }

    /// Pages of a file under the root turned dirty outside every hooked syscall (a mapping made
    /// before the recorder started or whose mmap event was lost, a kernel thread writing it):
    /// track the file like a shared mapping from now on, so those pages are re-read.
    fn note_unannounced_mapping(&mut self, ev: &RawEvent) {
        let h = &ev.header;
        if self.mapped.knows((h.dev, h.ino)) {
            return;
        }
        let path = RelPath::new(ev.path.clone());
        if path.as_bytes().is_empty() || path.check().is_err() {
            return;
        }
        self.stats.mapped_files += 1;
        self.stats.unannounced_dirty_files += 1;
        tracing::info!(path = %path, "pages dirtied outside any write syscall (a mapping older than the recorder, or a kernel writer): the file is tracked like a shared mapping");
        let now = Instant::now();
        self.mapped
            .on_mmap(path.clone(), (h.dev, h.ino), 0, h.arg, false, now);
        self.mapped_active = true;
        // Its other pages may be dirty already too (and silent when stored to).
        self.settle_if_dirty(&path, (h.dev, h.ino), 0, h.arg, false, now);
    }

    /// A page of an inode the probes know as mapped turned dirty, but the recorder tracks no
    /// file of it (its name was removed while another name or the mapping kept it, or it was
    /// evicted past MAPPED_MAX_FILES): the page is resynced where the inode is (the heal walks
    /// the tree for it), and the probes forget the inode, so its next reports carry its path
    /// and track it again (`note_unannounced_mapping`).
    fn unknown_mapped_page(&mut self, ev: &RawEvent, out: &mut Vec<Event>) {
        let h = &ev.header;
        self.stats.unannounced_dirty_files += 1;
        tracing::debug!(
            ino = h.ino,
            offset = h.offset,
            "a mapped page of an untracked inode turned dirty: resynced by a heal"
        );
        if let Err(e) = self.probes.forget_mapped((h.dev, h.ino)) {
            tracing::warn!(error = %e, "cannot update the probes' mapped inodes");
        }
        let chunk = foxing_probes::CHUNK_BYTES;
        let first = h.offset / chunk;
        let last = h.offset.saturating_add(h.len.max(1) - 1) / chunk;
        // As for a re-read range whose name left: a targeted heal, not a base.
        self.mark_inode_later(
            (h.dev, h.ino),
            Some(first..=last),
            GapReason::MovedBeforeRead,
            out,
        );
    }

    /// Re-reads the hot pages of shared-mapped files; journals the pages that changed.
    fn reread_mapped(&mut self, out: &mut Vec<Event>) {
        let now = Instant::now();
        self.last_mapped_read = now;
        for (path, ranges) in self.mapped.due(now) {
            if let Some(f) = self.mapped_source(&path) {
                self.read_mapped(&path, &f, ranges, now, out);
            }
        }
        for (path, ranges, last) in self.mapped.settling() {
            use crate::mapped::MAPPED_SETTLE_CHUNK_BYTES as CHUNK;
            let Some(f) = self.mapped_source(&path) else {
                continue;
            };
            // Up to the file's size (a mapping may reach far beyond it), and the chunks dirty
            // at the last pass (the file may have shrunk since).
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            let mut chunks = last.clone();
            for (start, end) in ranges {
                chunks.extend(start / CHUNK..end.min(size).div_ceil(CHUNK));
            }
            let mut dirty = std::collections::BTreeSet::new();
            let mut read = Vec::new();
            for c in chunks {
                let (off, len) = (c.saturating_mul(CHUNK), CHUNK);
                // Checked before it is read: a chunk cleaned after this check is read again
                // at the next pass.
                let dirty_now = dirty_pages(&f, off, len).is_none_or(|n| n > 0);
                if dirty_now {
                    dirty.insert(c);
                }
                if dirty_now || last.contains(&c) {
                    read.push((off, len));
                }
            }
            self.read_mapped(&path, &f, read, now, out);
            self.mapped.settle_pass(&path, dirty);
        }
        self.mapped.expire(now);
        self.mapped_active = self.mapped.active();
    }

    /// The mapped file tracked at `path`, if that path still names its inode. Renamed away
    /// (its rename not journaled yet) and maybe replaced: reading the path would journal
    /// another file's pages. Its pages stay due: they are read at its new path once the rename
    /// is journaled (`MappedFiles::renamed`).
    fn mapped_source(&self, path: &RelPath) -> Option<File> {
        let (f, md) = self.source_file(path)?;
        let key = self.mapped.inode_of(path);
        let same = key.is_none_or(|k| (foxing_probes::kernel_dev(md.dev()), md.ino()) == k);
        same.then_some(f)
    }

    /// Reads `ranges` of the mapped file `path` and journals the pages that changed since
    /// the journal last gave them.
    fn read_mapped(
        &mut self,
        path: &RelPath,
        f: &File,
        ranges: Vec<(u64, u64)>,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let mut any = false;
        for (off, len) in ranges {
            let mut buf = vec![0u8; len as usize];
            let n = match f.read_at(&mut buf, off) {
                Ok(n) => n,
                Err(_) => continue,
            };
            buf.truncate(n);
            for (at, data) in self.mapped.changed(path, off, &buf, now) {
                self.stats.mapped_bytes += data.len() as u64;
                any = true;
                out.push(self.own(Op::ResyncData {
                    path: path.clone(),
                    offset: at,
                    data,
                }));
            }
        }
        if any && !self.touched_all {
            self.touched.insert(path.clone());
            self.first_touch.get_or_insert(now);
        }
    }

    /// Reads `len` bytes of `f` at `offset` as ResyncData chunks into `out`. Whenever this read
    /// has added PUMP_FLUSH_BYTES, `out` (everything before, in order) goes to the journal: a
    /// large range never sits in memory whole.
    fn reread_into(
        &mut self,
        f: &File,
        path: &RelPath,
        offset: u64,
        len: u64,
        time_ns: u64,
        out: &mut Vec<Event>,
    ) {
        let mut pos = offset;
        let end = offset.saturating_add(len);
        let mut held = 0usize;
        while pos < end {
            let n = ((end - pos) as usize).min(RESYNC_CHUNK_BYTES);
            let mut buf = vec![0u8; n];
            match f.read_at(&mut buf, pos) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    buf.truncate(k);
                    out.push(Event {
                        time_ns,
                        writer: recorder_writer(),
                        op: Op::ResyncData {
                            path: path.clone(),
                            offset: pos,
                            data: buf,
                        },
                    });
                    pos += k as u64;
                    held += k;
                    if held > PUMP_FLUSH_BYTES {
                        self.append(std::mem::take(out));
                        held = 0;
                    }
                }
            }
        }
    }

    /// Base first, then live events until `stop` is set; then a final drain and sync.
    pub fn run(&mut self, stop: &AtomicBool, base_requested: &AtomicBool) -> anyhow::Result<()> {
        let r = self.run_until_stopped(stop, base_requested);
        if r.as_ref().is_err_and(|e| e.is::<RootReplaced>()) {
            // What was journaled came from the watched directory while the path named it:
            // made durable; the batch that found it replaced was not journaled.
            self.sync();
            self.publish_stats();
        }
        r
    }

    fn run_until_stopped(
        &mut self,
        stop: &AtomicBool,
        base_requested: &AtomicBool,
    ) -> anyhow::Result<()> {
        if self.durable_seq() > 0 {
            // A restart: the tree may have changed while no recorder ran. Until the first base
            // ends, the journal's tree is a mix of old entries and resynced ones: a gap window
            // (no restore point is offered inside it), healed by that base. So are the gaps
            // the previous recorder journaled and did not live to heal.
            if let Some(j) = &self.journal {
                let open = j.unhealed_gaps()?;
                if !open.is_empty() {
                    tracing::warn!(
                        gaps = open.len(),
                        first_seq = open[0],
                        "the journal holds gaps the previous recorder did not heal: the first base heals them"
                    );
                }
                self.pending_heals.extend(open);
            }
            let gap = self.own(Op::Gap {
                lost: 0,
                reason: GapReason::RecorderDown,
            });
            self.append_gap(gap);
            self.heal_pending()?;
        } else {
            self.base()?;
        }
        self.sync();
        while !stop.load(Ordering::Relaxed) {
            self.recover();
            if base_requested.swap(false, Ordering::Relaxed) {
                if self.journal_down() {
                    tracing::warn!("base requested while the journal cannot be written: one follows when it can");
                } else {
                    self.base()?;
                }
            }
            if self.prune_requested.swap(false, Ordering::Relaxed) {
                self.prune_on_request();
            }
            let mut wait = match self.journal.as_ref().and_then(|j| j.sync_deadline()) {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(IDLE_POLL_MS),
            };
            if self.first_touch.is_some() {
                wait = wait.min(Duration::from_millis(TIMES_SWEEP_QUIET_MS));
            }
            if self.mapped_active {
                wait = wait.min(Duration::from_millis(MAPPED_REREAD_MS));
            }
            if self.pump(wait.min(Duration::from_millis(IDLE_POLL_MS)))? > 0 {
                self.last_event = Instant::now();
            }
            if self.mapped_active
                && self.last_mapped_read.elapsed() >= Duration::from_millis(MAPPED_REREAD_MS)
            {
                let mut out = Vec::new();
                self.reread_mapped(&mut out);
                self.append_untracked(out);
            }
            self.publish_stats();
            if let Some(first) = self.first_touch {
                let quiet =
                    self.last_event.elapsed() >= Duration::from_millis(TIMES_SWEEP_QUIET_MS);
                let overdue = first.elapsed() >= Duration::from_millis(TIMES_SWEEP_MAX_INTERVAL_MS);
                if quiet || overdue {
                    self.sweep_times();
                }
            }
        }
        // Final drain: whatever the kernel handed over before we stopped.
        while self.pump(Duration::from_millis(10))? > 0 {}
        // A skipped probe run since the last check, and heals still waiting: done now.
        self.check_missed_runs()?;
        self.heal_pending()?;
        let mut out = Vec::new();
        self.reread_mapped(&mut out);
        self.append_untracked(out);
        self.sweep_times();
        self.sync();
        if let Some(d) = &self.degraded {
            anyhow::bail!(
                "stopped while the journal {} could not be written: {} records were not journaled; the next start begins with a base, which covers them",
                self.opts.journal.display(),
                d.lost
            );
        }
        Ok(())
    }

    /// Refreshes the copy of the statistics the metrics endpoint reads.
    fn publish_stats(&self) {
        if let Ok(mut sh) = self.shared.lock() {
            *sh = (self.stats.clone(), self.durable_seq());
        }
    }

    /// Executes a prune request left by `foxing-journal prune` (which planned it: base- and
    /// replica-aware) and answers in PRUNE_RESULT_FILE. Failures are reported, not fatal.
    fn prune_on_request(&mut self) {
        let dir = self.opts.journal.clone();
        let req = dir.join(PRUNE_REQUEST_FILE);
        let answer = match std::fs::read_to_string(&req)
            .map_err(|e| e.to_string())
            .and_then(|t| t.trim().parse::<u64>().map_err(|e| e.to_string()))
        {
            Ok(keep_from) => match self
                .journal
                .as_mut()
                .ok_or_else(|| "the journal cannot be written now (full disk?)".to_string())
                .and_then(|j| j.prune_before(keep_from).map_err(|e| e.to_string()))
            {
                Ok(removed) => {
                    tracing::info!(keep_from, segments = removed.len(), "pruned on request");
                    format!(
                        "ok {}",
                        removed
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
                Err(e) => format!("error {e}"),
            },
            Err(e) => format!("error bad request {}: {e}", req.display()),
        };
        let _ = std::fs::write(dir.join(PRUNE_RESULT_FILE), answer);
        let _ = std::fs::remove_file(&req);
    }

    /// Journals the current modification time of every path whose mtime changed since the last
    /// sweep (SetTimes, mtime only). The applier's own writes move the replica's mtimes; these
    /// records, journaled after the changes, bring them back to the source's. A change racing
    /// the sweep is touched again and swept next time, so once the source is quiet the replica's
    /// mtimes equal the source's (guarantee 1). Directories' times need this too: creating or
    /// removing entries moves them.
    pub fn sweep_times(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let root = self.opts.root.clone();
        let mut paths: Vec<RelPath> = std::mem::take(&mut self.touched).into_iter().collect();
        if std::mem::take(&mut self.touched_all) {
            paths.clear();
            let mut stack = vec![root.clone()];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd.flatten() {
                    let p = e.path();
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(p.clone());
                    }
                    if let Some(r) = rel(&root, &p) {
                        paths.push(r);
                    }
                }
            }
        }
        self.first_touch = None;
        let mut out = Vec::with_capacity(paths.len());
        let root_abs = root.as_os_str().as_bytes().to_vec();
        let mut targets = HashSet::new();
        let mut i = 0;
        while let Some(p) = paths.get(i).cloned() {
            i += 1;
            let full = root.join(std::ffi::OsStr::from_bytes(p.as_bytes()));
            // Gone since: its removal is journaled; nothing to set.
            let Ok(md) = std::fs::symlink_metadata(&full) else {
                continue;
            };
            // A symlink touched by a call that followed it (utimes, truncate by path) changed
            // its target's times: sweep the target too, if it is under the root.
            if md.file_type().is_symlink() {
                if let Some(t) = physical(&full).and_then(|c| {
                    resolve_under(&root_abs, b"", c.as_os_str().as_bytes()).map(RelPath::new)
                }) {
                    // Resolved whole (never a symlink itself); each target once.
                    if !t.as_bytes().is_empty() && targets.insert(t.clone()) {
                        paths.push(t);
                    }
                }
            }
            out.push(self.own(Op::SetTimes {
                path: p,
                atime_ns: None,
                mtime_ns: Some(md.mtime() * 1_000_000_000 + md.mtime_nsec()),
            }));
        }
        self.append_untracked(out);
    }

    /// Journals the recorder's own follow-up records (times, mapped pages) without noting
    /// their paths for the next times sweep (they would sweep themselves forever).
    fn append_untracked(&mut self, out: Vec<Event>) {
        if out.is_empty() {
            return;
        }
        self.journal_append(out);
        self.maybe_sync();
    }
}

/// Events that neither journal file bytes where they stand nor mark a restore point: the
/// dirty-page reports of mappings (re-read on their own schedule). A sync point must end the
/// sharing: a replica or restore at that point has to hold the earlier write's bytes (pinned by
/// postgres_dr: WAL pages rewritten across an fdatasync).
fn journals_no_bytes(op: u32) -> bool {
    op == FX_OP_DIRTY_MAPPED
}

/// Later re-read ranges remembered per inode within a batch (a file rewritten in up to this
/// many distinct chunks at once, e.g. 1 MiB writes over 256 MiB, shares them all).
const REREAD_RANGES_PER_INODE: usize = 256;

/// For each event of a batch (sorted by seq): true for an inexact write whose range a later
/// inexact write to the same inode covers, with only data writes (or events that journal no
/// bytes) in between. Its re-read would read the same current bytes as the later one's, which
/// is made later still, so only the later one re-reads (its `Dirty` record is still
/// journaled). Exact writes of the inode may sit between: the later re-read is journaled after
/// them. Under a flood of large rewrites this turns a full ring of 1 MiB re-reads of the same
/// chunks into one re-read per chunk per batch (regression:
/// `recorder_memory_stays_bounded_under_large_rewrites` took >60 s to stop under CI load).
/// The chunks (of CHUNK_BYTES) a write at a known position touched, when they are few (else
/// None: the whole inode).
fn written_chunks(h: &FxEvent) -> Option<std::ops::RangeInclusive<u64>> {
    if h.op != FX_OP_WRITE || h.flags & FX_F_POS_UNKNOWN != 0 {
        return None;
    }
    let first = h.offset / foxing_probes::CHUNK_BYTES;
    let last = h.offset.saturating_add(h.len.max(1) - 1) / foxing_probes::CHUNK_BYTES;
    (last - first < RACY_CHUNKS_MAX).then_some(first..=last)
}

/// Ops of an open file (by descriptor, a mapping or writeback) that change its content or
/// metadata: nothing to journal when the file has no name left (`FX_F_UNLINKED`).
fn changes_an_open_file(op: u32) -> bool {
    matches!(
        op,
        FX_OP_WRITE
            | FX_OP_TRUNCATE
            | FX_OP_CREATE
            | FX_OP_FCHMOD
            | FX_OP_FCHOWN
            | FX_OP_FALLOCATE
            | FX_OP_FUTIMES
            | FX_OP_FSETXATTR
            | FX_OP_FREMOVEXATTR
            | FX_OP_MMAP_SHARED
            | FX_OP_DIRTY_MAPPED
    )
}

fn covered_rereads(evs: &[RawEvent]) -> Vec<bool> {
    let mut covered = vec![false; evs.len()];
    // (dev, ino) -> the ranges of later inexact writes that re-read (the nearest last).
    let mut later: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    for (i, ev) in evs.iter().enumerate().rev() {
        let h = &ev.header;
        if h.op != FX_OP_WRITE {
            if !journals_no_bytes(h.op) {
                later.clear();
            }
            continue;
        }
        if h.flags & FX_F_INEXACT == 0 || h.flags & FX_F_UNLINKED != 0 {
            continue;
        }
        let end = h.offset.saturating_add(h.len);
        let v = later.entry((h.dev, h.ino)).or_default();
        if v.iter().any(|&(o, e)| o <= h.offset && end <= e) {
            covered[i] = true;
        } else {
            if v.len() >= REREAD_RANGES_PER_INODE {
                v.remove(0);
            }
            v.push((h.offset, end));
        }
    }
    covered
}

#[cfg(test)]
mod tests {
    use super::resolve_under;

    /// A base's walk reaches entries only through directories, never through a symlink that
    /// replaced one (see `beneath`).
    #[test]
    fn entries_are_not_reached_through_a_symlink_on_the_way() {
        use super::beneath;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("d", root.join("l")).unwrap();
        std::os::unix::fs::symlink("f", root.join("d/sub/s")).unwrap();
        // Through directories: the entry itself, a symlink not followed.
        let (_dir, at) = beneath(&root.join("d/sub/f")).unwrap();
        assert!(std::fs::symlink_metadata(&at).unwrap().is_file());
        let (_dir, at) = beneath(&root.join("d/sub/s")).unwrap();
        assert!(std::fs::symlink_metadata(&at).unwrap().is_symlink());
        let (_dir, at) = beneath(&root.join("l")).unwrap();
        assert!(std::fs::symlink_metadata(&at).unwrap().is_symlink());
        // Through the symlink `l`: not an entry.
        assert!(beneath(&root.join("l/sub/f")).is_none());
        assert!(beneath(&root.join("l/sub")).is_none());
    }

    #[test]
    fn an_open_of_an_existing_fifo_or_device_is_no_create() {
        use super::regular_or_unknown;
        assert!(regular_or_unknown(0o100644));
        assert!(regular_or_unknown(0), "unknown: as before");
        assert!(!regular_or_unknown(0o010644), "fifo");
        assert!(!regular_or_unknown(0o020666), "char device");
        assert!(!regular_or_unknown(0o060660), "block device");
        assert!(!regular_or_unknown(0o140755), "socket");
    }

    #[test]
    fn fallocate_modes_are_journaled_so_any_replica_can_replay_them() {
        use super::{portable_fallocate_mode, shifts_bytes};
        use foxing_proto::record::*;
        assert_eq!(
            portable_fallocate_mode(FALLOC_FL_WRITE_ZEROES),
            FALLOC_FL_ZERO_RANGE
        );
        let punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        assert_eq!(portable_fallocate_mode(punch), punch);
        assert_eq!(
            portable_fallocate_mode(FALLOC_FL_KEEP_SIZE),
            FALLOC_FL_KEEP_SIZE
        );
        assert!(shifts_bytes(FALLOC_FL_COLLAPSE_RANGE));
        assert!(shifts_bytes(FALLOC_FL_INSERT_RANGE));
        assert!(!shifts_bytes(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE));
        assert!(!shifts_bytes(FALLOC_FL_UNSHARE_RANGE));
    }

    #[test]
    fn covered_rereads_skip_only_ranges_a_later_reread_covers_with_only_writes_between() {
        use foxing_probes::layout::*;
        use foxing_probes::RawEvent;
        let ev = |op, flags, ino, offset, len| RawEvent {
            header: FxEvent {
                op,
                flags,
                dev: 1,
                ino,
                offset,
                len,
                ..Default::default()
            },
            path: b"f".to_vec(),
            data: Vec::new(),
        };
        let w = |ino, off, len| ev(FX_OP_WRITE, FX_F_INEXACT, ino, off, len);
        let evs = vec![
            w(7, 0, 1 << 20),             // covered by the next write to 7
            ev(FX_OP_WRITE, 0, 7, 10, 5), // an exact write between: still covered
            w(8, 0, 1 << 20),             // another inode: not covered
            w(7, 0, 2 << 20),             // re-reads (covers the first)
            w(7, 4096, 4096),             // followed by a truncate: must re-read
            ev(FX_OP_TRUNCATE, 0, 7, 0, 0),
            w(7, 0, 1 << 20), // a later write covers only part of it: re-reads
            w(7, 0, 4096),
            w(9, 0, 4096), // a sync point follows: must re-read
            ev(FX_OP_FDATASYNC, 0, 9, 0, 0),
            w(9, 0, 4096),
            w(10, 0, 4096), // the next write found the file unlinked: it re-reads nothing
            ev(FX_OP_WRITE, FX_F_INEXACT | FX_F_UNLINKED, 10, 0, 1 << 20),
        ];
        assert_eq!(
            super::covered_rereads(&evs),
            vec![
                true, false, false, false, false, false, false, false, false, false, false, false,
                false
            ]
        );
    }

    #[test]
    fn a_seq_reordered_across_batches_is_not_a_loss() {
        use super::SeqTracker;
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut s = SeqTracker::default();
        assert_eq!(s.observe(1, t0), 0);
        // 3 arrives before 2 (another CPU): 2 is pending, not lost.
        assert_eq!(s.observe(3, t0), 0);
        assert_eq!(s.expire(t0), 0);
        assert_eq!(s.observe(2, t0 + Duration::from_millis(5)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(1)), 0, "2 arrived late");
        // 4 never comes: lost after the grace period.
        assert_eq!(s.observe(5, t0), 0);
        assert_eq!(s.expire(t0 + Duration::from_millis(1)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(1)), 1);
        // A jump too large to wait for is a loss at once.
        assert_eq!(s.observe(6 + 10_000, t0), 10_000);
    }

    /// Regression (stress-ng symlink/link stressors, recorder seconds behind): a heal began
    /// while the ring still held events older than the lost ones; journaled after the heal's
    /// read, they re-created entries whose (lost) removals nothing replayed. A heal now waits
    /// until every seq below the highest lost one has arrived or been given up.
    #[test]
    fn a_heal_waits_for_every_seq_below_the_highest_lost_one() {
        use super::SeqTracker;
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut s = SeqTracker::default();
        assert!(!s.settled_below(1), "nothing seen yet");
        for q in 1..=10 {
            s.observe(q, t0);
        }
        // The kernel dropped 15 and 16 (the lost seqs end at 17); 11..=14 are still in the ring.
        assert!(!s.settled_below(17));
        s.observe(11, t0);
        s.observe(14, t0); // 12 and 13 from another CPU, late
        assert!(!s.settled_below(17));
        s.observe(12, t0);
        s.observe(13, t0);
        assert!(!s.settled_below(17), "15 and 16 are not given up yet");
        s.observe(17, t0); // 15 and 16 missing
        assert!(
            !s.settled_below(17),
            "within the grace period they may still come"
        );
        assert_eq!(s.expire(t0 + Duration::from_secs(1)), 2);
        assert!(s.settled_below(17));
    }

    #[test]
    fn times_sweep_paths_follow_directory_renames() {
        use foxing_proto::RelPath;
        let set = |v: &[&str]| -> std::collections::BTreeSet<RelPath> {
            v.iter().map(|p| RelPath::new(*p)).collect()
        };
        let mut t = set(&["a", "a/c", "a/c/f", "ab", "x/g"]);
        super::move_touched(&mut t, &RelPath::new("a"), &RelPath::new("b"), false);
        assert_eq!(t, set(&["a", "b/c", "b/c/f", "ab", "x/g"]));
        super::move_touched(&mut t, &RelPath::new("b"), &RelPath::new("x"), true);
        assert_eq!(t, set(&["a", "x/c", "x/c/f", "ab", "b/g"]));
    }

    #[test]
    fn paths_resolve_against_the_root() {
        let r = |d: &str, n: &str| {
            resolve_under(b"/srv/data", d.as_bytes(), n.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(r("/srv/data", "a"), Some("a".into()));
        assert_eq!(r("/srv/data/x", "../y/./z"), Some("y/z".into()));
        assert_eq!(r("/", "/srv/data/a/b"), Some("a/b".into()));
        assert_eq!(r("/srv", "data/a"), Some("a".into()));
        assert_eq!(r("/srv/data", "../other"), None);
        assert_eq!(r("/srv/data", "."), None, "the root itself");
        assert_eq!(
            r("/srv/database", "x"),
            None,
            "a sibling with a common prefix is outside"
        );
        assert_eq!(r("/tmp", "a"), None);
        // Directories the probes found under the root through another mount (a bind mount).
        assert_eq!(r("\u{1}", "a"), Some("a".into()));
        assert_eq!(r("\u{1}/x/y", "z"), Some("x/y/z".into()));
        assert_eq!(r("\u{1}/x", "../../data/b"), Some("b".into()));
        assert_eq!(r("\u{1}", ".."), None);
    }
}
