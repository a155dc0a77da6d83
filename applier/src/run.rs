//! The apply loop: frames from a source, records in seq order, checkpoints around namespace
//! records and after each frame, a durable checkpoint (after syncfs) every few seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foxing_journal::RawFrame;
use foxing_proto::record::RENAME_EXCHANGE;
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
                let until = durable.min(next_seq.saturating_add(64 * 1024));
                return Ok(self.reader.frames(next_seq, until)?);
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
                Op::Rename { from, to, flags } if flags & RENAME_EXCHANGE != 0 => {
                    let ino =
                        |t: &mut FsTree, p| t.stat(p).ok().flatten().map(|s| s.ino).unwrap_or(0);
                    (ino(&mut self.tree, from), ino(&mut self.tree, to))
                }
                _ => (0, 0),
            };
            // A record that was in flight when the last run died: an exchange that already
            // happened must not be applied twice (the other namespace records are idempotent).
            if let Some((seq, ino_a, ino_b)) = self.inflight.take() {
                if seq == r.seq && ino_a != 0 && a == ino_b && b == ino_a {
                    tracing::info!(
                        seq,
                        "exchange in flight at the crash had been applied; not applying it again"
                    );
                    self.state.applied(r.seq)?;
                    self.cursor = r.seq;
                    return Ok(());
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
    /// with `follow` keeps waiting) from `src`.
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
            let frames = src.next_frames(
                next,
                if follow {
                    Duration::from_millis(200)
                } else {
                    Duration::ZERO
                },
            )?;
            if frames.is_empty() {
                if !follow {
                    break;
                }
                self.maybe_durable()?;
                continue;
            }
            for f in frames {
                if f.header.first_seq > self.cursor + 1 {
                    return Err(RunError::Missing {
                        want: self.cursor + 1,
                        have: f.header.first_seq,
                    });
                }
                let recs = f.records().map_err(|source| RunError::Frame {
                    seq: f.header.first_seq,
                    source,
                })?;
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
                if self.cursor >= stop_seq || self.stopping() {
                    break;
                }
            }
            self.maybe_durable()?;
        }
        Ok(())
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

    fn maybe_durable(&mut self) -> Result<(), RunError> {
        if self.last_durable.elapsed() >= Duration::from_millis(DURABLE_CHECKPOINT_INTERVAL_MS) {
            match self.durable() {
                // A full filesystem under the replica or its state: the durable checkpoint
                // stays where it was (restarts replay from it); try again next interval.
                Err(e) if is_out_of_space(&e) => {
                    tracing::warn!(error = %foxing_journal::error::chain(&e), "durable checkpoint postponed: no space left");
                    self.last_durable = Instant::now();
                }
                r => r?,
            }
        }
        Ok(())
    }

    /// syncfs the replica, then commit the checkpoint durably.
    pub fn durable(&mut self) -> Result<(), RunError> {
        self.tree.syncfs().map_err(|source| RunError::Sync {
            path: self.tree.root_path().display().to_string(),
            source,
        })?;
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
