//! The apply loop: frames from a source, records in seq order, checkpoints around namespace
//! records and after each frame, a durable checkpoint (after syncfs) every few seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foxing_journal::RawFrame;
use foxing_proto::record::{RENAME_EXCHANGE, RENAME_WHITEOUT};
use foxing_proto::{Op, Record};

use crate::apply::{is_namespace_op, Applier, ApplyError};
use crate::fs::FsTree;
use crate::state::{Resume, State, StateError};
use crate::tree::Tree;

/// How often the durable checkpoint (syncfs + redb commit) is taken while applying.
pub const DURABLE_CHECKPOINT_INTERVAL_MS: u64 = 2000;
/// A following applier whose replica filesystem is full retries the record this often
/// (doubling from the first value up to the second).
pub const NO_SPACE_RETRY_MIN_MS: u64 = 100;
pub const NO_SPACE_RETRY_MAX_MS: u64 = 5_000;
/// Most stored (compressed) frame bytes read from a journal per batch: memory stays bounded
/// whatever the record sizes (a batch of 65,536 records of 64 KiB would be 4 GiB).
pub const READ_BATCH_BYTES: u64 = 16 << 20;
/// Most records per batch read from a journal.
pub const READ_BATCH_RECORDS: u64 = 64 * 1024;
/// Decoded frames the reader thread may hold ahead of applying (catch-up and restores).
pub const PREFETCH_FRAMES: usize = 4;

/// True when `e` (or an error it wraps) is ENOSPC or EDQUOT: the replica's filesystem is full.
pub fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// Where frames come from: the local journal today, the network with the transport.
pub trait FrameSource {
    /// The next frames holding records from `next_seq` on; empty after `timeout` if none.
    fn next_frames(&mut self, next_seq: u64, timeout: Duration) -> Result<Vec<RawFrame>, RunError>;
}

/// Reads frames from a journal directory (the source's, or a replica's archive).
pub struct JournalSource<'a> {
    pub reader: &'a foxing_journal::JournalReader,
    pub poll: Duration,
}

impl FrameSource for JournalSource<'_> {
    fn next_frames(&mut self, next_seq: u64, timeout: Duration) -> Result<Vec<RawFrame>, RunError> {
        let deadline = Instant::now() + timeout;
        loop {
            let durable = self.reader.meta()?.durable_seq;
            if durable >= next_seq {
                let until = durable.min(next_seq.saturating_add(READ_BATCH_RECORDS));
                return Ok(self
                    .reader
                    .frames_bounded(next_seq, until, READ_BATCH_BYTES)?);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            std::thread::sleep(self.poll.min(deadline - now));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Journal(#[from] foxing_journal::JournalError),
    #[error("frame source: {0}")]
    Source(String),
    #[error("the replica was re-seeded: applying continues at the base starting at seq {0}")]
    Reseed(u64),
    #[error("frame holding seq {seq} is damaged")]
    Frame {
        seq: u64,
        #[source]
        source: foxing_proto::FrameError,
    },
    #[error("the journal does not hold seq {want} (its records start at {have}): the replica fell behind what was pruned; re-seed it from a base")]
    Missing { want: u64, have: u64 },
    #[error("syncfs of the replica {path}")]
    Sync {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Engine<'a> {
    pub tree: FsTree,
    pub state: State,
    pub applier: Applier,
    pub last_record: Option<(u64, u64)>,
    /// Last seq applied in this process (the slot may lag behind it until the frame ends).
    cursor: u64,
    inflight: Option<(u64, u64, u64)>,
    last_durable: Instant,
    stop: Option<&'a AtomicBool>,
    /// Set while applying waits for room on a full replica filesystem (shared with the
    /// metrics endpoint).
    pub stalled: std::sync::Arc<AtomicBool>,
    /// The thread that runs the periodic syncfs while applying goes on (started lazily).
    syncer: Option<Syncer>,
}

/// A helper thread running syncfs on request, so the periodic durable checkpoint does not stop
/// applying while the replica's dirty pages are written back. Everything applied before a
/// request was issued is on disk when its answer arrives (syncfs flushes all dirty data present
/// when it starts); the checkpoint then records the seq applied at the request.
struct Syncer {
    request: Option<std::sync::mpsc::Sender<()>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The seq whose checkpoint waits for the sync in flight.
    pending: Option<u64>,
}

impl Syncer {
    fn start(fd: std::os::fd::OwnedFd) -> std::io::Result<Syncer> {
        let (request, rx) = std::sync::mpsc::channel::<()>();
        let (tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("replica-syncfs".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let r = rustix::fs::syncfs(&fd).map_err(std::io::Error::from);
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Syncer {
            request: Some(request),
            done,
            thread: Some(thread),
            pending: None,
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.request = None; // the thread ends after the sync in flight, if any
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<'a> Engine<'a> {
    pub fn new(
        tree: FsTree,
        state: State,
        resume: Resume,
        stop: Option<&'a AtomicBool>,
    ) -> Engine<'a> {
        if resume.after_reboot {
            tracing::warn!(
                applied_seq = resume.applied_seq,
                "the machine restarted since the last run: resuming from the durable checkpoint; changes after it may have been partly lost with the page cache and are replayed"
            );
        }
        Engine {
            tree,
            state,
            applier: Applier::default(),
            last_record: None,
            cursor: resume.applied_seq,
            inflight: resume.inflight,
            last_durable: Instant::now(),
            stop,
            stalled: Default::default(),
            syncer: None,
        }
    }

    pub fn applied_seq(&self) -> u64 {
        self.cursor
    }

    fn stopping(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Applies one record at applied_seq + 1.
    fn apply_record(&mut self, r: &Record) -> Result<(), RunError> {
        assert_eq!(
            r.seq,
            self.cursor + 1,
            "records must be applied in seq order"
        );
        if is_namespace_op(&r.op) {
            let (a, b) = match &r.op {
                Op::Rename { from, to, flags }
                    if flags & (RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 =>
                {
                    let ino =
                        |t: &mut FsTree, p| t.stat(p).ok().flatten().map(|s| s.ino).unwrap_or(0);
                    (ino(&mut self.tree, from), ino(&mut self.tree, to))
                }
                _ => (0, 0),
            };
            // A record that was in flight when the last run died: an exchange or a whiteout
            // rename that already happened must not be applied twice (it would swap back, or
            // move the whiteout over the renamed object); the other namespace records are
            // idempotent.
            if let Some((seq, ino_a, ino_b)) = self.inflight.take() {
                if let (true, Op::Rename { from, flags, .. }) = (seq == r.seq && ino_a != 0, &r.op)
                {
                    let exchanged = flags & RENAME_EXCHANGE != 0 && a == ino_b && b == ino_a;
                    let moved = flags & RENAME_WHITEOUT != 0 && b == ino_a;
                    if exchanged || moved {
                        tracing::info!(
                            seq,
                            "rename in flight at the crash had been applied; not applying it again"
                        );
                        if moved && a == 0 {
                            // Killed between the rename and the whiteout's mknod.
                            self.applier
                                .whiteout(&mut self.tree, from, r.writer.uid, r.writer.gid)
                                .map_err(|source| ApplyError::Tree {
                                    seq,
                                    op: "rename",
                                    path: from.to_string(),
                                    source,
                                })?;
                        }
                        self.state.applied(r.seq)?;
                        self.cursor = r.seq;
                        return Ok(());
                    }
                }
            }
            self.state.begin_namespace(r.seq, a, b)?;
            self.applier.apply(&mut self.tree, r)?;
            self.state.applied(r.seq)?;
        } else {
            self.applier.apply(&mut self.tree, r)?;
        }
        self.cursor = r.seq;
        self.last_record = Some((r.seq, r.time_ns));
        Ok(())
    }

    /// Applies records from applied_seq + 1 through `stop_seq` (or everything available, and
    /// with `follow` keeps waiting) from `src`, reading and applying on this thread (no hop
    /// between a frame's arrival and its apply). [`Engine::catch_up`] is faster without follow.
    pub fn run(
        &mut self,
        src: &mut dyn FrameSource,
        stop_seq: u64,
        follow: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), RunError> {
        loop {
            if self.stopping() {
                break;
            }
            let next = self.cursor + 1;
            if next > stop_seq {
                break;
            }
            let wait = if follow {
                Duration::from_millis(200)
            } else {
                Duration::ZERO
            };
            let frames = src.next_frames(next, wait)?;
            if frames.is_empty() {
                if !follow {
                    break;
                }
                self.maybe_durable()?;
                continue;
            }
            for f in frames {
                let recs = f.records().map_err(|source| RunError::Frame {
                    seq: f.header.first_seq,
                    source,
                });
                if self.apply_frame(f.header.first_seq, recs?, stop_seq, follow, &mut progress)? {
                    break;
                }
            }
            self.maybe_durable()?;
        }
        Ok(())
    }

    /// Applies everything `src` holds from applied_seq + 1 through `stop_seq` (`run` without
    /// follow), with a helper thread reading and decoding frames (at most PREFETCH_FRAMES
    /// ahead) while this one applies. Errors of the helper surface in order, at the frame where
    /// they happened.
    pub fn catch_up(
        &mut self,
        src: &mut (dyn FrameSource + Send),
        stop_seq: u64,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), RunError> {
        let first = self.cursor + 1;
        if first > stop_seq || self.stopping() {
            return Ok(());
        }
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, Vec<Record>), RunError>>(
                PREFETCH_FRAMES,
            );
            std::thread::Builder::new()
                .name("frame-prefetch".into())
                .spawn_scoped(scope, move || {
                    let mut next = first;
                    while next <= stop_seq {
                        let frames = match src.next_frames(next, Duration::ZERO) {
                            Ok(f) if f.is_empty() => return,
                            Ok(f) => f,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        };
                        for f in frames {
                            let first_seq = f.header.first_seq;
                            next = next.max(f.header.last_seq() + 1);
                            let decoded =
                                f.records().map(|recs| (first_seq, recs)).map_err(|source| {
                                    RunError::Frame {
                                        seq: first_seq,
                                        source,
                                    }
                                });
                            let failed = decoded.is_err();
                            // A closed channel: the applying side stopped.
                            if tx.send(decoded).is_err() || failed {
                                return;
                            }
                        }
                    }
                })
                .map_err(|e| RunError::Source(format!("starting the frame reader thread: {e}")))?;
            for decoded in rx {
                let (first_seq, recs) = decoded?;
                if self.apply_frame(first_seq, recs, stop_seq, false, &mut progress)? {
                    break;
                }
                self.maybe_durable()?;
            }
            Ok(())
        })
    }

    /// Applies the records of one frame after the cursor (up to `stop_seq`), then checkpoints.
    /// True when applying should stop (stop_seq reached, or asked to stop).
    fn apply_frame(
        &mut self,
        first_seq: u64,
        recs: Vec<Record>,
        stop_seq: u64,
        follow: bool,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<bool, RunError> {
        if first_seq > self.cursor + 1 {
            return Err(RunError::Missing {
                want: self.cursor + 1,
                have: first_seq,
            });
        }
        let mut any = false;
        for r in &recs {
            if r.seq <= self.cursor {
                continue;
            }
            if r.seq > stop_seq {
                break;
            }
            if follow {
                self.apply_or_stall(r)?;
            } else {
                self.apply_record(r)?;
            }
            any = true;
        }
        if any {
            tracing::trace!(seq = self.cursor, "frame applied");
            if self.cursor > self.state.applied_seq() {
                self.state.applied(self.cursor)?;
            }
            progress(self.cursor, self.last_record.map(|r| r.1).unwrap_or(0));
        }
        Ok(self.cursor >= stop_seq || self.stopping())
    }

    /// Applies `r`; while the replica's filesystem is full, says so once and retries (applying
    /// is idempotent) until there is room again or the applier is stopped. Nothing after `r`
    /// is applied meanwhile, so the replica stays a prefix of the source.
    fn apply_or_stall(&mut self, r: &Record) -> Result<(), RunError> {
        let mut wait = NO_SPACE_RETRY_MIN_MS;
        let mut since: Option<Instant> = None;
        loop {
            match self.apply_record(r) {
                Err(e) if is_out_of_space(&e) && !self.stopping() => {
                    if since.is_none() {
                        tracing::error!(seq = r.seq, root = %self.tree.root_path().display(), error = %foxing_journal::error::chain(&e),
                            "the replica's filesystem is full: applying stalls here and resumes by itself when space is freed");
                    }
                    since.get_or_insert_with(Instant::now);
                    self.stalled.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(wait));
                    wait = (wait * 2).min(NO_SPACE_RETRY_MAX_MS);
                }
                res => {
                    if let Some(t) = since {
                        self.stalled.store(false, Ordering::Relaxed);
                        if res.is_ok() {
                            tracing::warn!(
                                seq = r.seq,
                                stalled_ms = t.elapsed().as_millis() as u64,
                                "the replica's filesystem has room again: applying resumed"
                            );
                        }
                    }
                    return res;
                }
            }
        }
    }

    /// Takes the periodic durable checkpoint: every DURABLE_CHECKPOINT_INTERVAL_MS a syncfs
    /// starts on the helper thread; when it has finished, the seq applied when it started is
    /// committed. Applying goes on meanwhile.
    fn maybe_durable(&mut self) -> Result<(), RunError> {
        if let Some(seq) = self.syncer.as_ref().and_then(|s| s.pending) {
            let Some(syncer) = self.syncer.as_mut() else {
                return Ok(());
            };
            let res = match syncer.done.try_recv() {
                Ok(r) => r,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(std::io::Error::other(
                    "the syncfs helper thread ended unexpectedly",
                )),
            };
            syncer.pending = None;
            self.finish_durable(seq, res)?;
        }
        if self.last_durable.elapsed() >= Duration::from_millis(DURABLE_CHECKPOINT_INTERVAL_MS) {
            if self.syncer.is_none() {
                let fd = self
                    .tree
                    .sync_handle()
                    .map_err(|source| self.sync_error(source))?;
                self.syncer = Some(Syncer::start(fd).map_err(|source| self.sync_error(source))?);
            }
            let seq = self.state.applied_seq();
            let Some(syncer) = self.syncer.as_mut() else {
                return Ok(());
            };
            let sent = syncer.request.as_ref().is_some_and(|r| r.send(()).is_ok());
            if !sent {
                let e = std::io::Error::other("the syncfs helper thread ended unexpectedly");
                return Err(self.sync_error(e));
            }
            syncer.pending = Some(seq);
            self.last_durable = Instant::now();
        }
        Ok(())
    }

    /// Commits `seq` as the durable checkpoint once the syncfs started after it returned `res`.
    fn finish_durable(&mut self, seq: u64, res: std::io::Result<()>) -> Result<(), RunError> {
        let res = res
            .map_err(|source| self.sync_error(source))
            .and_then(|()| Ok(self.state.commit_durable_at(seq)?));
        match res {
            // A full filesystem under the replica or its state: the durable checkpoint stays
            // where it was (restarts replay from it); try again next interval.
            Err(e) if is_out_of_space(&e) => {
                tracing::warn!(error = %foxing_journal::error::chain(&e), "durable checkpoint postponed: no space left");
                Ok(())
            }
            r => r,
        }
    }

    fn sync_error(&self, source: std::io::Error) -> RunError {
        RunError::Sync {
            path: self.tree.root_path().display().to_string(),
            source,
        }
    }

    /// syncfs the replica, then commit the checkpoint durably (waits for a periodic sync in
    /// flight first).
    pub fn durable(&mut self) -> Result<(), RunError> {
        if let Some(syncer) = self.syncer.as_mut() {
            if syncer.pending.take().is_some() {
                // Its outcome is superseded by the sync below.
                let _ = syncer.done.recv();
            }
        }
        self.tree
            .syncfs()
            .map_err(|source| self.sync_error(source))?;
        self.state.commit_durable()?;
        self.last_durable = Instant::now();
        Ok(())
    }

    /// Skips to `seq` without applying (a restore that starts at a base).
    pub fn skip_to(&mut self, seq: u64) -> Result<(), RunError> {
        self.state.applied(seq)?;
        self.cursor = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::NodeKind;
    use foxing_proto::{RelPath, Writer};
    use std::os::unix::fs::MetadataExt;

    /// A kill between a whiteout rename and the whiteout's mknod (or after both) must neither
    /// lose the whiteout nor, replaying the rename, move the whiteout over the renamed file.
    #[test]
    fn whiteout_rename_in_flight_at_a_crash_is_completed_not_repeated() {
        if !nix_root() {
            assert!(
                std::env::var("FOXING_REQUIRE_BPF").is_err(),
                "FOXING_REQUIRE_BPF is set but this test needs root (mknod of a whiteout)"
            );
            eprintln!("skipped: mknod of a whiteout needs root");
            return;
        }
        for whiteout_made in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let (root, sdir) = (d.path().join("r"), d.path().join("s"));
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("a"), b"moved").unwrap();
            std::fs::write(root.join("b"), b"replaced").unwrap();
            let ino_a = std::fs::metadata(root.join("a")).unwrap().ino();
            let ino_b = std::fs::metadata(root.join("b")).unwrap().ino();
            {
                // The run that died: in flight, renamed, maybe the whiteout made.
                let (mut st, _) = State::open(&sdir).unwrap();
                st.begin_namespace(1, ino_a, ino_b).unwrap();
                std::fs::rename(root.join("a"), root.join("b")).unwrap();
                if whiteout_made {
                    let mut t = FsTree::open(&root).unwrap();
                    t.mknod(&RelPath::new("a"), &NodeKind::CharDevice(0), 0)
                        .unwrap();
                }
            }
            let (st, resume) = State::open(&sdir).unwrap();
            assert_eq!(resume.inflight, Some((1, ino_a, ino_b)));
            let mut e = Engine::new(FsTree::open(&root).unwrap(), st, resume, None);
            let r = Record {
                seq: 1,
                time_ns: 1,
                writer: Writer::default(),
                op: Op::Rename {
                    from: RelPath::new("a"),
                    to: RelPath::new("b"),
                    flags: RENAME_WHITEOUT,
                },
            };
            e.apply_record(&r).unwrap();
            assert_eq!(
                std::fs::read(root.join("b")).unwrap(),
                b"moved",
                "made={whiteout_made}"
            );
            let w = std::fs::symlink_metadata(root.join("a")).unwrap();
            use std::os::unix::fs::FileTypeExt;
            assert!(
                w.file_type().is_char_device() && w.rdev() == 0,
                "made={whiteout_made}"
            );
            assert_eq!(e.applied_seq(), 1);
        }
    }

    fn nix_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
