//! The group-commit thread. Appends never wait for an fsync: when the committer is idle (and at
//! least one fsync window has passed since its last commit started), the frames written so far
//! are handed to it; it fdatasyncs the segment, then commits their index entries and the new
//! `durable_seq` in one redb transaction. Frames appended meanwhile form the next group.
//! The first record after a quiet period is therefore committed at once, and under load commits
//! follow each other back to back, each covering everything written during the previous one.
//!
//! Two points move per commit: `synced_seq` once the segment's fdatasync returns (the records
//! are on disk; a crash before the index commit re-indexes them from the segment on open, so a
//! replica may acknowledge them), then `durable_seq` once the index commit returns (what other
//! processes see through the index).

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use foxing_proto::frame::FrameHeader;
use foxing_proto::time::now_ns;
use redb::Database;

use crate::error::{DbContext, IoContext, JournalError, Result};
use crate::index::{self, FrameFacts};

pub(crate) struct Pending {
    pub segment: u64,
    pub offset: u64,
    pub header: FrameHeader,
    pub facts: FrameFacts,
}

pub(crate) struct Job {
    pub seg: Arc<File>,
    pub seg_path: PathBuf,
    pub frames: Vec<Pending>,
    pub new_segments: Vec<(u64, u64)>,
    pub durable_seq: u64,
}

/// Called on the group-commit thread when `synced_seq` or `durable_seq` moved or a commit
/// failed.
pub type CommitHook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct St {
    synced_seq: u64,
    durable_seq: u64,
    in_flight: bool,
    error: Option<String>,
    hook: Option<CommitHook>,
}

pub(crate) struct Committer {
    tx: Option<mpsc::Sender<Job>>,
    shared: Arc<(Mutex<St>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

/// Writes the index entries of `frames` and the new durable point in one transaction.
pub(crate) fn commit_frames(
    db: &Database,
    path: &std::path::Path,
    frames: &[Pending],
    new_segments: &[(u64, u64)],
    durable_seq: u64,
) -> Result<()> {
    let txn = db.begin_write().db(path)?;
    for pf in frames {
        index::insert_frame(&txn, pf.segment, pf.offset, &pf.header, &pf.facts).db(path)?;
    }
    {
        let mut segs = txn.open_table(index::SEGMENTS).db(path)?;
        for &(s, created) in new_segments {
            segs.insert(s, created).db(path)?;
        }
        let mut meta = txn.open_table(index::META).db(path)?;
        meta.insert(index::META_DURABLE_SEQ, durable_seq).db(path)?;
        meta.insert(index::META_DURABLE_TIME, now_ns()).db(path)?;
    }
    txn.commit().db(path)
}

fn run_job(
    db: &Database,
    index_path: &std::path::Path,
    hint: Option<&File>,
    job: &Job,
    synced: impl FnOnce(),
) -> Result<()> {
    job.seg.sync_data().ctx("fsync", &job.seg_path)?;
    if let (Some(f), Some(last)) = (hint, job.frames.last()) {
        let h = crate::synced::SyncedHint {
            seq: job.durable_seq,
            segment: last.segment,
            end_offset: last.offset + last.header.frame_len() as u64,
        };
        debug_assert_eq!(last.header.last_seq(), job.durable_seq);
        // Only a hint (readers check what it names): a failed write costs an index commit's
        // worth of latency, nothing else.
        if let Err(e) = h.write(f) {
            tracing::debug!(error = %e, "cannot write the synced hint");
        }
    }
    synced();
    commit_frames(
        db,
        index_path,
        &job.frames,
        &job.new_segments,
        job.durable_seq,
    )
}

impl Committer {
    /// `hint`: the journal's synced-hint file, written after each segment fdatasync.
    pub fn start(
        db: Arc<Database>,
        index_path: PathBuf,
        hint: Option<File>,
        durable_seq: u64,
    ) -> Result<Committer> {
        let shared = Arc::new((
            Mutex::new(St {
                synced_seq: durable_seq,
                durable_seq,
                ..St::default()
            }),
            Condvar::new(),
        ));
        let (tx, rx) = mpsc::channel::<Job>();
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("foxing-commit".into())
            .spawn(move || {
                let (m, cv) = &*sh;
                let lock = || m.lock().unwrap_or_else(|e| e.into_inner());
                let call_hook = |st: MutexGuard<'_, St>| {
                    let hook = st.hook.clone();
                    drop(st);
                    if let Some(h) = hook {
                        h();
                    }
                };
                for job in rx {
                    let res = run_job(&db, &index_path, hint.as_ref(), &job, || {
                        let mut st = lock();
                        debug_assert!(job.durable_seq >= st.synced_seq);
                        st.synced_seq = job.durable_seq;
                        call_hook(st);
                    });
                    let mut st = lock();
                    match res {
                        Ok(()) => {
                            tracing::trace!(durable_seq = job.durable_seq, "committed");
                            st.durable_seq = job.durable_seq
                        }
                        Err(e) => {
                            // Like PostgreSQL after a failed fsync: never pretend; stop committing.
                            let e = crate::error::chain(&e);
                            tracing::error!(error = %e, "group commit failed; the journal accepts no more records");
                            st.error.get_or_insert(e);
                        }
                    }
                    st.in_flight = false;
                    cv.notify_all();
                    call_hook(st);
                }
            })
            .map_err(|e| JournalError::Io { op: "start group-commit thread", path: PathBuf::new(), source: e })?;
        Ok(Committer {
            tx: Some(tx),
            shared,
            handle: Some(handle),
        })
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn durable_seq(&self) -> u64 {
        self.lock().durable_seq
    }

    pub fn synced_seq(&self) -> u64 {
        self.lock().synced_seq
    }

    pub fn set_hook(&self, hook: Option<CommitHook>) {
        self.lock().hook = hook;
    }

    /// Sets the durable seq of an empty journal that was re-based (see `Journal::adopt`).
    pub fn reset_durable(&self, durable_seq: u64) {
        let mut st = self.lock();
        debug_assert!(!st.in_flight);
        st.durable_seq = durable_seq;
        st.synced_seq = durable_seq;
    }

    pub fn idle(&self) -> bool {
        !self.lock().in_flight
    }

    pub fn check(&self) -> Result<()> {
        match &self.lock().error {
            Some(e) => Err(JournalError::CommitFailed(e.clone())),
            None => Ok(()),
        }
    }

    pub fn submit(&self, job: Job) -> Result<()> {
        self.check()?;
        let mut st = self.lock();
        debug_assert!(!st.in_flight);
        st.in_flight = true;
        drop(st);
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            self.lock().in_flight = false;
            return Err(JournalError::Inconsistent(
                "the group-commit thread is gone".into(),
            ));
        }
        Ok(())
    }

    /// Waits until no commit is in flight; returns its error if it failed.
    pub fn wait_idle(&self) -> Result<()> {
        let (m, cv) = &*self.shared;
        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
        while st.in_flight {
            st = cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        self.check()
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
