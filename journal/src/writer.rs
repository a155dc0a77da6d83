//! The journal writer: appends frames to the current segment, group-commits (fsync of the segment,
//! then one redb commit) per fsync window, rotates segments by size, and recovers on open.
//!
//! Exactly one writer process per journal (`JDIR/LOCK`, and redb's SingleWriter mode); any
//! number of readers (see [`crate::reader`]) run beside it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foxing_proto::frame::{check_frame, decode_body, encode_frame, FrameHeader, FRAME_HEADER_LEN};
use foxing_proto::time::now_ns;
use foxing_proto::{Event, Op};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::commit::{commit_frames, Committer, Job, Pending};
use crate::error::{DbContext, IoContext, JournalError, Result};
use crate::index::{self, FrameFacts};
use crate::segment::{scan_frames, segment_file_name, ScanEnd, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::{list_segments, Layout};

/// Default fsync window: group commit every 5 ms while records keep coming.
pub const DEFAULT_FSYNC_WINDOW_MS: u64 = 5;
/// Default segment size before rotation.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;
/// Default upper bound on the postcard bytes of one frame (a batch is split above it).
pub const DEFAULT_FRAME_RAW_BYTES: usize = 4 << 20;
/// Per-record overhead estimate used to split batches into frames (bytes).
const RECORD_OVERHEAD_ESTIMATE_BYTES: usize = 64;

#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Appends within this window share one fsync. Zero: fsync on every append.
    pub fsync_window: Duration,
    /// Rotate to a new segment once the current one exceeds this size.
    pub segment_size_bytes: u64,
    /// zstd level for new frames; 0 stores them uncompressed.
    pub zstd_level: i32,
    /// Split batches so that one frame carries at most about this many postcard bytes.
    pub frame_raw_bytes: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            fsync_window: Duration::from_millis(DEFAULT_FSYNC_WINDOW_MS),
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            zstd_level: foxing_proto::frame::DEFAULT_ZSTD_LEVEL,
            frame_raw_bytes: DEFAULT_FRAME_RAW_BYTES,
        }
    }
}

/// What recovery found and did when the journal was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Frames found in the segments that the index did not hold yet.
    pub frames_reindexed: u64,
    /// Bytes cut from a torn tail, and where.
    pub cut_bytes: u64,
    pub cut_at: Option<(PathBuf, u64)>,
    /// Segment files removed (a prune interrupted by a crash, an empty torn new segment).
    pub segments_removed: u64,
    /// Bytes of frames past the durable point discarded by [`Journal::open_after_failure`].
    pub discarded_bytes: u64,
}

pub struct Journal {
    layout: Layout,
    _lock: File,
    db: Arc<Database>,
    committer: Committer,
    last_commit_start: Option<Instant>,
    seg: Arc<File>,
    seg_path: PathBuf,
    seg_first_seq: u64,
    seg_len: u64,
    new_segments: Vec<(u64, u64)>,
    next_seq: u64,
    pending: Vec<Pending>,
    unsynced_since: Option<Instant>,
    opts: JournalOptions,
    recovery: Recovery,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` for writing, recovering from a crash:
    /// frames past the index are re-indexed, a torn tail is cut, and the result is made durable.
    pub fn open(dir: impl AsRef<Path>, opts: JournalOptions) -> Result<Journal> {
        Self::open_inner(dir.as_ref(), opts, None)
    }

    /// Opens the journal again after a write or group commit failed (a full disk, an I/O
    /// error): frames past the last durable seq are discarded instead of being re-indexed.
    /// After a failed fsync the kernel may have dropped their pages while they still read back
    /// from the page cache, so they cannot be trusted; they were never indexed, hence never
    /// shipped or acknowledged. Their seqs are given again to the next records. Frames up to
    /// `synced_seq` (the failed journal's [`Journal::synced_seq`]: fsynced, possibly
    /// acknowledged, not yet indexed) or up to the synced hint (possibly shipped) are kept and
    /// re-indexed.
    pub fn open_after_failure(
        dir: impl AsRef<Path>,
        opts: JournalOptions,
        synced_seq: u64,
    ) -> Result<Journal> {
        Self::open_inner(dir.as_ref(), opts, Some(synced_seq))
    }

    /// `discard_past`: None keeps every valid frame; Some(s) cuts frames past the larger of the
    /// index's durable seq and s.
    fn open_inner(dir: &Path, opts: JournalOptions, discard_past: Option<u64>) -> Result<Journal> {
        let layout = Layout::new(dir);
        std::fs::create_dir_all(&layout.segments).ctx("create directory", &layout.segments)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&layout.lock)
            .ctx("open lock file", &layout.lock)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    dir: layout.dir.clone(),
                    lock: layout.lock.clone(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock", &layout.lock),
        }
        let creating = crate::newdb::creating(&layout.index).ctx("create", &layout.index)?;
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .create(creating.path())
            .db(&layout.index)?;
        let txn = db.begin_write().db(&layout.index)?;
        index::create_tables(&txn).db(&layout.index)?;
        {
            let mut t = txn.open_table(index::META).db(&layout.index)?;
            if t.get(index::META_JOURNAL_ID).db(&layout.index)?.is_none() {
                t.insert(index::META_JOURNAL_ID, crate::new_journal_id()?)
                    .db(&layout.index)?;
            }
        }
        txn.commit().db(&layout.index)?;
        creating.finish().ctx("create", &layout.index)?;
        let meta = crate::read_meta(&db, &layout.index)?;
        if meta.format_version != index::INDEX_FORMAT_VERSION {
            return Err(JournalError::IndexVersion {
                found: meta.format_version,
                supported: index::INDEX_FORMAT_VERSION,
            });
        }

        let mut recovery = Recovery::default();
        let mut segments = list_segments(&layout)?;
        // A prune commits the new first_seq before unlinking files: finish one a crash cut short.
        while segments.len() > 1 && segments[1].0 <= meta.first_seq {
            let (_, p) = segments.remove(0);
            std::fs::remove_file(&p).ctx("remove pruned segment", &p)?;
            recovery.segments_removed += 1;
        }
        if let Some(synced) = discard_past {
            // Frames up to the synced hint were fsynced and may have been shipped.
            let hinted = crate::synced::SyncedHint::read(&layout.dir).map_or(0, |h| h.seq);
            let keep = meta.durable_seq.max(synced).max(hinted);
            let (bytes, removed) = discard_undurable(&layout, &mut segments, keep)?;
            recovery.discarded_bytes = bytes;
            recovery.segments_removed += removed;
        }

        let last_indexed = {
            let r = db.begin_read().db(&layout.index)?;
            let t = r.open_table(index::FRAMES).db(&layout.index)?;
            let last = t.last().db(&layout.index)?;
            last.map(|(k, v)| (k.value(), v.value()))
        };

        let mut pending: Vec<Pending> = Vec::new();
        let mut new_segments = Vec::new();
        let indexed_upto = last_indexed
            .map(|(first, v)| first + v.3 as u64 - 1)
            .unwrap_or(0);
        let (mut next_seq, start_seg_idx, mut start_offset) = match last_indexed {
            Some((first, (seg, ..))) => {
                let idx = segments
                    .iter()
                    .position(|(s, _)| *s == seg)
                    .ok_or_else(|| {
                        JournalError::Inconsistent(format!(
                            "the index places seq {first} in segment {}, which is missing",
                            segment_file_name(seg)
                        ))
                    })?;
                // Rescan the whole segment holding the last indexed frame: its frames are
                // checked again (the promise the index made), then anything after them is new.
                (segments[idx].0, idx, SEGMENT_HEADER_LEN as u64)
            }
            None => {
                if segments.is_empty() {
                    let first = meta.durable_seq + 1;
                    let p = create_segment(&layout, first)?;
                    segments.push((first, p));
                    new_segments.push((first, now_ns()));
                }
                (segments[0].0, 0, SEGMENT_HEADER_LEN as u64)
            }
        };

        let mut end_offset = start_offset;
        let n = segments.len();
        for i in start_seg_idx..n {
            let (seg_seq, ref path) = segments[i];
            let is_last = i + 1 == n;
            let data = std::fs::read(path).ctx("read segment", path)?;
            let header = match SegmentHeader::parse(&data) {
                Ok(h) => h,
                Err(e) => {
                    if is_last && i > start_seg_idx && seg_seq > meta.durable_seq {
                        // A new segment whose creation was torn by the crash: nothing in it.
                        tracing::warn!(segment = %path.display(), error = %e, "removing a torn new segment");
                        std::fs::remove_file(path).ctx("remove torn segment", path)?;
                        recovery.segments_removed += 1;
                        segments.pop();
                        break;
                    }
                    return Err(JournalError::SegmentHeader {
                        path: path.clone(),
                        source: e,
                    });
                }
            };
            if header.first_seq != seg_seq || (i > start_seg_idx && header.first_seq != next_seq) {
                return Err(JournalError::Inconsistent(format!(
                    "segment {} starts at seq {} but seq {next_seq} was expected",
                    path.display(),
                    header.first_seq
                )));
            }
            if i > start_seg_idx {
                start_offset = SEGMENT_HEADER_LEN as u64;
            }
            let from = (start_offset as usize).min(data.len());
            let scan = scan_frames(&data[from..], start_offset, next_seq);
            for loc in &scan.frames {
                if loc.header.last_seq() <= indexed_upto {
                    continue; // already indexed
                }
                let facts = if index::needs_facts(&loc.header) {
                    let s = loc.offset as usize + FRAME_HEADER_LEN;
                    let body = &data[s..s + loc.header.body_len as usize];
                    let recs =
                        decode_body(&loc.header, body).map_err(|e| JournalError::Damaged {
                            path: path.clone(),
                            offset: loc.offset,
                            error: e.into(),
                        })?;
                    index::frame_facts(&recs)
                } else {
                    FrameFacts::default()
                };
                pending.push(Pending {
                    segment: seg_seq,
                    offset: loc.offset,
                    header: loc.header,
                    facts,
                });
            }
            recovery.frames_reindexed += scan
                .frames
                .iter()
                .filter(|l| l.header.last_seq() > indexed_upto)
                .count() as u64;
            let stopped_in_durable = scan.next_seq <= meta.durable_seq.max(indexed_upto);
            match scan.end {
                // The scan stopped inside what was reported durable: damage, not a torn tail.
                ScanEnd::Invalid { offset, error } if stopped_in_durable => {
                    return Err(JournalError::Damaged {
                        path: path.clone(),
                        offset,
                        error,
                    })
                }
                ScanEnd::Incomplete { offset } if stopped_in_durable => {
                    return Err(JournalError::Damaged {
                        path: path.clone(),
                        offset,
                        error: crate::segment::ScanError::Frame(
                            foxing_proto::FrameError::Incomplete {
                                have: data.len() - offset as usize,
                                need: FRAME_HEADER_LEN,
                            },
                        ),
                    })
                }
                _ => {}
            }
            next_seq = scan.next_seq;
            end_offset = scan.valid_end;
            match scan.end {
                ScanEnd::Clean => {}
                ScanEnd::Incomplete { offset } | ScanEnd::Invalid { offset, .. } if is_last => {
                    let cut = data.len() as u64 - offset;
                    tracing::warn!(segment = %path.display(), offset, bytes = cut, reason = ?scan.end,
                        "cutting the torn tail left by a crash");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .ctx("open segment", path)?;
                    f.set_len(offset).ctx("truncate torn tail of", path)?;
                    f.sync_all().ctx("fsync", path)?;
                    recovery.cut_bytes = cut;
                    recovery.cut_at = Some((path.clone(), offset));
                }
                ScanEnd::Incomplete { offset } => {
                    return Err(JournalError::Damaged {
                        path: path.clone(),
                        offset,
                        error: crate::segment::ScanError::Frame(
                            foxing_proto::FrameError::Incomplete {
                                have: data.len() - offset as usize,
                                need: FRAME_HEADER_LEN,
                            },
                        ),
                    })
                }
                ScanEnd::Invalid { offset, error } => {
                    return Err(JournalError::Damaged {
                        path: path.clone(),
                        offset,
                        error,
                    })
                }
            }
        }
        if next_seq <= meta.durable_seq {
            return Err(JournalError::Inconsistent(format!(
                "records up to seq {} were reported durable, but the segments end at seq {}",
                meta.durable_seq,
                next_seq - 1
            )));
        }

        let (seg_first_seq, seg_path) = segments
            .last()
            .cloned()
            .ok_or_else(|| JournalError::Inconsistent("no segment left after recovery".into()))?;
        let seg = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg_path)
            .ctx("open segment", &seg_path)?;
        let seg_len = seg.metadata().ctx("stat", &seg_path)?.len();
        debug_assert_eq!(seg_len, end_offset.max(SEGMENT_HEADER_LEN as u64));
        // Make whatever survived in the page cache durable before promising it.
        seg.sync_all().ctx("fsync", &seg_path)?;
        {
            let known: Vec<u64> = {
                let r = db.begin_read().db(&layout.index)?;
                let t = r.open_table(index::SEGMENTS).db(&layout.index)?;
                let mut v = Vec::new();
                for e in t.iter().db(&layout.index)? {
                    v.push(e.db(&layout.index)?.0.value());
                }
                v
            };
            for (s, p) in &segments {
                if !known.contains(s) && !new_segments.iter().any(|(n, _)| n == s) {
                    let created = std::fs::read(p)
                        .ok()
                        .and_then(|d| SegmentHeader::parse(&d).ok())
                        .map(|h| h.created_time_ns)
                        .unwrap_or(0);
                    new_segments.push((*s, created));
                }
            }
        }
        if last_indexed.is_none() {
            // A new or rebuilt index: it starts where the oldest segment does.
            let txn = db.begin_write().db(&layout.index)?;
            txn.open_table(index::META)
                .db(&layout.index)?
                .insert(index::META_FIRST_SEQ, segments[0].0)
                .db(&layout.index)?;
            txn.commit().db(&layout.index)?;
        }
        // Everything kept is durable now (fsynced above): index it before accepting appends.
        commit_frames(&db, &layout.index, &pending, &new_segments, next_seq - 1)?;
        let db = Arc::new(db);
        // The synced hint starts at what is durable now (a stale one from before a crash or a
        // discard must not outlive this open).
        let hint = reset_synced_hint(&layout, next_seq - 1, seg_first_seq, seg_len)?;
        let committer =
            Committer::start(db.clone(), layout.index.clone(), Some(hint), next_seq - 1)?;
        let j = Journal {
            layout,
            _lock: lock,
            db,
            committer,
            last_commit_start: None,
            seg: Arc::new(seg),
            seg_path,
            seg_first_seq,
            seg_len,
            new_segments: Vec::new(),
            next_seq,
            pending: Vec::new(),
            unsynced_since: None,
            opts,
            recovery,
        };
        if j.recovery != Recovery::default() {
            tracing::info!(recovery = ?j.recovery, "journal recovered");
        }
        Ok(j)
    }

    /// The journal's identity (see [`crate::index::META_JOURNAL_ID`]).
    pub fn journal_id(&self) -> Result<u64> {
        Ok(crate::read_meta(self.db.as_ref(), &self.layout.index)?.journal_id)
    }

    /// Whether this journal took another journal's identity (it is a replica's archive).
    pub fn is_adopted(&self) -> Result<bool> {
        let r = self.db.begin_read().db(&self.layout.index)?;
        let t = r.open_table(index::META).db(&self.layout.index)?;
        Ok(t.get(index::META_ADOPTED)
            .db(&self.layout.index)?
            .is_some_and(|v| v.value() == 1))
    }

    /// Seqs of the Gap records whose GapHealed the journal does not hold (a recorder that
    /// stopped or died before healing them: the next one heals them with its first base).
    pub fn unhealed_gaps(&self) -> Result<Vec<u64>> {
        let p = &self.layout.index;
        let r = self.db.begin_read().db(p)?;
        let t = r.open_table(index::GAPS).db(p)?;
        let mut out = Vec::new();
        for e in t.iter().db(p)? {
            let (k, v) = e.db(p)?;
            if v.value().2 == 0 {
                out.push(k.value());
            }
        }
        Ok(out)
    }

    /// Whether nothing was ever appended (the journal holds no frame).
    pub fn is_empty(&self) -> bool {
        self.next_seq == self.seg_first_seq
            && self.seg_len == SEGMENT_HEADER_LEN as u64
            && self.pending.is_empty()
            && list_segments(&self.layout)
                .map(|s| s.len() == 1)
                .unwrap_or(false)
    }

    /// Makes an empty journal the archive of another one: it takes that journal's id and starts
    /// at `start_seq` (a replica that joins after older records were pruned). Durable on return.
    pub fn adopt(&mut self, journal_id: u64, start_seq: u64) -> Result<()> {
        assert!(
            journal_id != 0 && start_seq >= 1,
            "adopt: id and start seq must be set"
        );
        self.sync()?;
        if !self.is_empty() {
            return Err(JournalError::Inconsistent(format!(
                "cannot adopt journal {journal_id:016x} in {}: it already holds records",
                self.layout.dir.display()
            )));
        }
        if start_seq != self.seg_first_seq {
            // Old segment first: a crash in between leaves no segment (recreated empty on open)
            // or only the new one; either is an empty journal that can be adopted again.
            std::fs::remove_file(&self.seg_path).ctx("remove empty segment", &self.seg_path)?;
            fsync_dir(&self.layout.segments)?;
            let path = create_segment(&self.layout, start_seq)?;
            let seg = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .ctx("open segment", &path)?;
            self.seg_path = path;
            self.seg = Arc::new(seg);
        }
        let txn = self.db.begin_write().db(&self.layout.index)?;
        {
            let mut segs = txn.open_table(index::SEGMENTS).db(&self.layout.index)?;
            segs.retain(|_, _| false).db(&self.layout.index)?;
            segs.insert(start_seq, now_ns()).db(&self.layout.index)?;
            let mut t = txn.open_table(index::META).db(&self.layout.index)?;
            t.insert(index::META_JOURNAL_ID, journal_id)
                .db(&self.layout.index)?;
            t.insert(index::META_FIRST_SEQ, start_seq)
                .db(&self.layout.index)?;
            t.insert(index::META_DURABLE_SEQ, start_seq - 1)
                .db(&self.layout.index)?;
            t.insert(index::META_ADOPTED, 1).db(&self.layout.index)?;
        }
        txn.commit().db(&self.layout.index)?;
        reset_synced_hint(
            &self.layout,
            start_seq - 1,
            start_seq,
            SEGMENT_HEADER_LEN as u64,
        )?;
        self.seg_first_seq = start_seq;
        self.next_seq = start_seq;
        self.seg_len = SEGMENT_HEADER_LEN as u64;
        self.new_segments.clear();
        self.committer.reset_durable(start_seq - 1);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// What recovery did on open.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The seq the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The current segment (its first seq) and its length in bytes. Right after
    /// [`Journal::sync`], everything before this position is durable.
    pub fn position(&self) -> (u64, u64) {
        (self.seg_first_seq, self.seg_len)
    }

    /// Every record up to this seq is on stable storage and indexed.
    pub fn durable_seq(&self) -> u64 {
        self.committer.durable_seq()
    }

    /// Appends events, giving them consecutive seqs; returns the seqs given. The records are
    /// written to the segment at once and become durable at the next group commit (see
    /// [`Journal::maybe_sync`], [`Journal::sync`]).
    pub fn append(&mut self, events: Vec<Event>) -> Result<std::ops::Range<u64>> {
        self.committer.check()?;
        let first = self.next_seq;
        let mut batch = Vec::new();
        let mut est = 0usize;
        for (seq, ev) in (self.next_seq..).zip(events) {
            let size = ev.op.payload_len() + RECORD_OVERHEAD_ESTIMATE_BYTES;
            if !batch.is_empty() && est + size > self.opts.frame_raw_bytes {
                self.write_records(&std::mem::take(&mut batch))?;
                est = 0;
            }
            est += size;
            batch.push(ev.with_seq(seq));
        }
        if !batch.is_empty() {
            self.write_records(&batch)?;
        }
        if self.opts.fsync_window.is_zero() {
            self.sync()?;
        } else {
            self.maybe_sync()?;
        }
        Ok(first..self.next_seq)
    }

    fn write_records(&mut self, records: &[foxing_proto::Record]) -> Result<()> {
        let bytes =
            encode_frame(records, self.opts.zstd_level).map_err(|source| JournalError::Frame {
                seq: records[0].seq,
                source,
            })?;
        let h = check_frame(&bytes).map_err(|source| JournalError::Frame {
            seq: records[0].seq,
            source,
        })?;
        let facts = if index::needs_facts(&h) {
            index::frame_facts(records)
        } else {
            FrameFacts::default()
        };
        self.write_frame_bytes(&bytes, h, facts)
    }

    /// Appends a frame received as bytes (a replica archiving what the shipper sent). The frame
    /// is validated (header, crc, seqs; the body is decoded when the index needs its facts) and
    /// must continue the journal exactly.
    pub fn append_frame(&mut self, bytes: &[u8]) -> Result<FrameHeader> {
        self.committer.check()?;
        let h = check_frame(bytes).map_err(|source| JournalError::Frame {
            seq: self.next_seq,
            source,
        })?;
        if h.frame_len() != bytes.len() {
            return Err(JournalError::Frame {
                seq: h.first_seq,
                source: foxing_proto::FrameError::Decode(format!(
                    "{} bytes after the frame",
                    bytes.len() - h.frame_len()
                )),
            });
        }
        if h.first_seq != self.next_seq {
            return Err(JournalError::OutOfOrder {
                got: h.first_seq,
                expected: self.next_seq,
            });
        }
        // The crc proves these are the bytes the source stored. Bodies are decoded only when
        // the index needs their facts (sync points, bases, gaps, as the summary flags say);
        // every other frame is decoded when it is applied.
        let facts = if index::needs_facts(&h) {
            let recs = decode_body(&h, &bytes[FRAME_HEADER_LEN..]).map_err(|source| {
                JournalError::Frame {
                    seq: h.first_seq,
                    source,
                }
            })?;
            index::frame_facts(&recs)
        } else {
            FrameFacts::default()
        };
        self.write_frame_bytes(bytes, h, facts)?;
        if self.opts.fsync_window.is_zero() {
            self.sync()?;
        } else {
            self.maybe_sync()?;
        }
        Ok(h)
    }

    fn write_frame_bytes(&mut self, bytes: &[u8], h: FrameHeader, facts: FrameFacts) -> Result<()> {
        assert_eq!(
            h.first_seq, self.next_seq,
            "frame out of order: journal would be corrupt"
        );
        if self.seg_len > SEGMENT_HEADER_LEN as u64
            && self.seg_len + bytes.len() as u64 > self.opts.segment_size_bytes
        {
            self.rotate()?;
        }
        if let Err(e) = self.seg.write_all_at(bytes, self.seg_len) {
            // Leave no partial frame behind: the journal stays appendable after ENOSPC.
            let _ = self.seg.set_len(self.seg_len);
            return Err(e).ctx("append to segment", &self.seg_path);
        }
        self.pending.push(Pending {
            segment: self.seg_first_seq,
            offset: self.seg_len,
            header: h,
            facts,
        });
        self.seg_len += bytes.len() as u64;
        self.next_seq = h.last_seq() + 1;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        self.sync()?;
        let first = self.next_seq;
        let path = create_segment(&self.layout, first)?;
        self.seg = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .ctx("open segment", &path)?,
        );
        self.seg_path = path;
        self.seg_first_seq = first;
        self.seg_len = SEGMENT_HEADER_LEN as u64;
        self.new_segments.push((first, now_ns()));
        Ok(())
    }

    /// Hands what was written to the group-commit thread if it is idle and at least one fsync
    /// window has passed since its last commit started. Never waits for an fsync.
    pub fn maybe_sync(&mut self) -> Result<bool> {
        self.committer.check()?;
        if self.unsynced_since.is_none() || !self.committer.idle() {
            return Ok(false);
        }
        if let Some(t) = self.last_commit_start {
            if t.elapsed() < self.opts.fsync_window {
                return Ok(false);
            }
        }
        self.submit()?;
        Ok(true)
    }

    fn submit(&mut self) -> Result<()> {
        let job = Job {
            seg: self.seg.clone(),
            seg_path: self.seg_path.clone(),
            frames: std::mem::take(&mut self.pending),
            new_segments: std::mem::take(&mut self.new_segments),
            durable_seq: self.next_seq - 1,
        };
        self.committer.submit(job)?;
        self.last_commit_start = Some(Instant::now());
        self.unsynced_since = None;
        Ok(())
    }

    /// Calls `hook` on the group-commit thread each time [`Journal::synced_seq`] or
    /// [`Journal::durable_seq`] moves or a commit fails: an event loop that acknowledges records
    /// wakes at once instead of polling. `None` removes it.
    pub fn set_commit_hook(&self, hook: Option<crate::commit::CommitHook>) {
        self.committer.set_hook(hook);
    }

    /// Last seq whose frames are fsynced in their segment, ahead of [`Journal::durable_seq`] by
    /// at most the index commit in flight. Safe to acknowledge to a peer: should the process die
    /// before the index commit, opening the journal re-indexes these frames from the segment
    /// (and [`Journal::open_after_failure`] keeps them when given this seq).
    pub fn synced_seq(&self) -> u64 {
        self.committer.synced_seq()
    }

    /// When [`Journal::maybe_sync`] should next be called, if anything waits for a commit.
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.unsynced_since?;
        let now = Instant::now();
        if !self.committer.idle() {
            return Some(now + Duration::from_millis(1));
        }
        Some(
            self.last_commit_start
                .map(|t| (t + self.opts.fsync_window).max(now))
                .unwrap_or(now),
        )
    }

    /// Makes everything appended so far durable (fsync + index commit) and waits for it.
    pub fn sync(&mut self) -> Result<u64> {
        self.committer.wait_idle()?;
        if self.unsynced_since.is_some()
            || !self.pending.is_empty()
            || !self.new_segments.is_empty()
        {
            self.submit()?;
            self.committer.wait_idle()?;
        }
        Ok(self.committer.durable_seq())
    }

    /// Deletes whole segments that hold only records before `keep_from_seq`. The newest segment
    /// is never deleted. Returns the segments removed (first seqs). Crash-safe: the index moves
    /// first, files go after; a crash in between is finished on the next open.
    pub fn prune_before(&mut self, keep_from_seq: u64) -> Result<Vec<u64>> {
        self.sync()?;
        let segments = list_segments(&self.layout)?;
        let mut doomed = Vec::new();
        for w in segments.windows(2) {
            // Segment w[0] holds seqs w[0].0 ..= w[1].0 - 1.
            if w[1].0 <= keep_from_seq {
                doomed.push(w[0].clone());
            }
        }
        let Some(new_first) = segments.get(doomed.len()).map(|s| s.0) else {
            return Ok(Vec::new());
        };
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let p = &self.layout.index;
        let txn = self.db.begin_write().db(p)?;
        {
            txn.open_table(index::FRAMES)
                .db(p)?
                .retain(|k, _| k >= new_first)
                .db(p)?;
            txn.open_table(index::SEGMENTS)
                .db(p)?
                .retain(|k, _| k >= new_first)
                .db(p)?;
            txn.open_table(index::TIMES)
                .db(p)?
                .retain(|_, seq| seq >= new_first)
                .db(p)?;
            txn.open_table(index::SYNCS)
                .db(p)?
                .retain(|k, _| k >= new_first)
                .db(p)?;
            txn.open_table(index::GAPS)
                .db(p)?
                .retain(|k, _| k >= new_first)
                .db(p)?;
            txn.open_table(index::BASES)
                .db(p)?
                .retain(|_, (b, _, _, _)| b >= new_first)
                .db(p)?;
            txn.open_table(index::META)
                .db(p)?
                .insert(index::META_FIRST_SEQ, new_first)
                .db(p)?;
        }
        txn.commit().db(p)?;
        for (_, path) in &doomed {
            std::fs::remove_file(path).ctx("remove pruned segment", path)?;
        }
        fsync_dir(&self.layout.segments)?;
        Ok(doomed.into_iter().map(|d| d.0).collect())
    }

    /// Records that are sync points, bases and gaps are indexed; this is a convenience for
    /// callers that build events.
    pub fn is_indexed_op(op: &Op) -> bool {
        matches!(
            op,
            Op::Sync { .. }
                | Op::BaseBegin { .. }
                | Op::BaseEnd { .. }
                | Op::Gap { .. }
                | Op::GapHealed { .. }
        )
    }

    /// The index database (read access for stat and prune planning in this process).
    pub fn db(&self) -> &Database {
        &self.db
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(journal = %self.layout.dir.display(), error = %crate::error::chain(&e), "final journal sync failed");
        }
    }
}

/// Cuts every frame holding seqs past `durable_seq` (see [`Journal::open_after_failure`]):
/// whole segments that start past it are removed, the one holding the durable point is
/// truncated after it. Returns the bytes cut and the segments removed.
fn discard_undurable(
    layout: &Layout,
    segments: &mut Vec<(u64, PathBuf)>,
    durable_seq: u64,
) -> Result<(u64, u64)> {
    let (mut bytes, mut removed) = (0u64, 0u64);
    while let Some((first, p)) = segments.last() {
        if *first <= durable_seq {
            break;
        }
        bytes += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(p).ctx("remove undurable segment", p)?;
        removed += 1;
        segments.pop();
    }
    if removed > 0 {
        fsync_dir(&layout.segments)?;
    }
    if let Some((first, p)) = segments.last() {
        let data = std::fs::read(p).ctx("read segment", p)?;
        if data.len() > SEGMENT_HEADER_LEN {
            let scan = scan_frames(
                &data[SEGMENT_HEADER_LEN..],
                SEGMENT_HEADER_LEN as u64,
                *first,
            );
            if let Some(f) = scan
                .frames
                .iter()
                .find(|f| f.header.first_seq > durable_seq)
            {
                let f2 = OpenOptions::new()
                    .write(true)
                    .open(p)
                    .ctx("open segment", p)?;
                f2.set_len(f.offset).ctx("discard undurable frames of", p)?;
                f2.sync_all().ctx("fsync", p)?;
                bytes += data.len() as u64 - f.offset;
            }
        }
    }
    if bytes > 0 {
        tracing::warn!(journal = %layout.dir.display(), durable_seq, bytes, segments = removed,
            "discarded records past the durable point after a failed write");
    }
    Ok((bytes, removed))
}

fn create_segment(layout: &Layout, first_seq: u64) -> Result<PathBuf> {
    let path = layout.segments.join(segment_file_name(first_seq));
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .ctx("create segment", &path)?;
    let h = SegmentHeader {
        first_seq,
        created_time_ns: now_ns(),
    };
    f.write_all_at(&h.encode(), 0)
        .ctx("write segment header", &path)?;
    f.sync_all().ctx("fsync", &path)?;
    fsync_dir(&layout.segments)?;
    Ok(path)
}

/// Sets the synced hint to `seq` (the journal's durable point, ending at `end_offset` in the
/// segment starting at `segment`) and returns the open hint file for the commit thread.
fn reset_synced_hint(layout: &Layout, seq: u64, segment: u64, end_offset: u64) -> Result<File> {
    let path = layout.dir.join(crate::synced::SYNCED_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx("open", &path)?;
    crate::synced::SyncedHint {
        seq,
        segment,
        end_offset,
    }
    .write(&f)
    .ctx("write", &path)?;
    Ok(f)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}
