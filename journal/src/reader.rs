//! Read-only access to a journal, safe beside a running writer: frames and records from any seq or
//! time, follow mode, and the index facts (bases, sync points, gaps, segments).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foxing_proto::frame::{check_frame, decode_body, FrameHeader, FRAME_HEADER_LEN};
use foxing_proto::Record;
use redb::{ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::error::{DbContext, IoContext, JournalError, Result};
use crate::index;
use crate::segment::segment_file_name;
use crate::{Layout, Meta};

/// A frame as stored: the bytes the shipper sends unchanged.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub header: FrameHeader,
    pub bytes: Vec<u8>,
}

impl RawFrame {
    pub fn records(&self) -> std::result::Result<Vec<Record>, foxing_proto::FrameError> {
        decode_body(&self.header, &self.bytes[FRAME_HEADER_LEN..])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEntry {
    pub first_seq: u64,
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub max_time_ns: u64,
}

impl FrameEntry {
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count as u64 - 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseInfo {
    pub id: u64,
    pub begin_seq: u64,
    /// None while the base is still running (or was cut short by a crash).
    pub end_seq: Option<u64>,
    pub begin_time_ns: u64,
    pub end_time_ns: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPoint {
    pub seq: u64,
    pub time_ns: u64,
    pub kind: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapInfo {
    pub seq: u64,
    pub lost: u64,
    pub reason: u8,
    pub healed_seq: Option<u64>,
    pub time_ns: u64,
}

/// Gap windows `(gap seq, end)`: the tree as of a seq `s` with `gap <= s < end` is not a state
/// the source had. A window ends at its `GapHealed`, or earlier at the `BaseEnd` of the first
/// complete base begun after the gap: a whole-tree base re-reads everything the loss could have
/// touched, so its end is consistent even though the recorder journals the `GapHealed` records
/// after it. `end` is `u64::MAX` while neither exists. A base end inside a window (the loss
/// happened during that base) is not consistent.
pub fn gap_windows(gaps: &[GapInfo], bases: &[BaseInfo]) -> Vec<(u64, u64)> {
    gaps.iter()
        .map(|g| {
            let healed = g.healed_seq.unwrap_or(u64::MAX);
            let base_end = bases
                .iter()
                .filter(|b| b.begin_seq > g.seq)
                .filter_map(|b| b.end_seq)
                .min()
                .unwrap_or(u64::MAX);
            (g.seq, healed.min(base_end))
        })
        .collect()
}

/// Bytes [`JournalReader::unindexed_frames`] reads at most per call (a group commit rarely holds
/// more; the rest waits for the index).
pub const UNINDEXED_MAX_BYTES: u64 = 16 << 20;

pub struct JournalReader {
    layout: Layout,
    db: ReadOnlyDatabase,
}

impl JournalReader {
    /// Opens the journal in `dir` read-only. A writer may be running.
    pub fn open(dir: impl AsRef<Path>) -> Result<JournalReader> {
        let layout = Layout::new(dir.as_ref());
        if !layout.index.exists() {
            return Err(JournalError::NoIndex(layout.dir.clone()));
        }
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .open_read_only(&layout.index)
            .map_err(|e| match e {
                redb::DatabaseError::RepairAborted => {
                    JournalError::IndexNeedsRepair(layout.index.clone())
                }
                e => JournalError::Index {
                    path: layout.index.clone(),
                    source: e.into(),
                },
            })?;
        let r = JournalReader { layout, db };
        let meta = r.meta()?;
        if meta.format_version != index::INDEX_FORMAT_VERSION {
            return Err(JournalError::IndexVersion {
                found: meta.format_version,
                supported: index::INDEX_FORMAT_VERSION,
            });
        }
        Ok(r)
    }

    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The index's current meta values (a fresh read: follows the writer's commits).
    pub fn meta(&self) -> Result<Meta> {
        crate::read_meta(&self.db, &self.layout.index)
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction> {
        self.db.begin_read().db(&self.layout.index)
    }

    /// The indexed frame holding `seq`, if any.
    pub fn locate(&self, seq: u64) -> Result<Option<FrameEntry>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::FRAMES).db(p)?;
        let found = t.range(..=seq).db(p)?.next_back();
        match found {
            Some(e) => {
                let (k, v) = e.db(p)?;
                let fe = entry(k.value(), v.value());
                Ok((fe.last_seq() >= seq).then_some(fe))
            }
            None => Ok(None),
        }
    }

    /// Indexed frames whose records intersect `from..=until`, in order.
    pub fn frame_entries(&self, from: u64, until: u64) -> Result<Vec<FrameEntry>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::FRAMES).db(p)?;
        let start = t
            .range(..=from)
            .db(p)?
            .next_back()
            .transpose()
            .db(p)?
            .map(|(k, _)| k.value())
            .unwrap_or(from);
        let mut out = Vec::new();
        for e in t.range(start..=until).db(p)? {
            let (k, v) = e.db(p)?;
            let fe = entry(k.value(), v.value());
            if fe.last_seq() >= from {
                out.push(fe);
            }
        }
        Ok(out)
    }

    /// Reads and checks (crc, seq) the frame at an index entry.
    pub fn read_frame(&self, e: &FrameEntry, files: &mut SegmentFiles) -> Result<RawFrame> {
        let (path, f) = files.get(&self.layout, e.segment)?;
        let mut bytes = vec![0u8; e.len as usize];
        f.read_exact_at(&mut bytes, e.offset)
            .ctx("read segment", path)?;
        let header = check_frame(&bytes).map_err(|err| JournalError::Damaged {
            path: path.to_path_buf(),
            offset: e.offset,
            error: err.into(),
        })?;
        if header.first_seq != e.first_seq || header.frame_len() != bytes.len() {
            return Err(JournalError::Inconsistent(format!(
                "segment {} offset {}: frame seq {} does not match the index (seq {})",
                path.display(),
                e.offset,
                header.first_seq,
                e.first_seq
            )));
        }
        Ok(RawFrame { header, bytes })
    }

    /// Frames holding records `from..=until` (clamped to what is durable).
    pub fn frames(&self, from: u64, until: u64) -> Result<Vec<RawFrame>> {
        self.frames_bounded(from, until, u64::MAX)
    }

    /// Like [`JournalReader::frames`], but stops after the frame that brings the stored bytes
    /// read to `max_bytes` or more (at least one frame is returned when any holds `from`): a
    /// reader of large records keeps a bounded batch in memory.
    pub fn frames_bounded(&self, from: u64, until: u64, max_bytes: u64) -> Result<Vec<RawFrame>> {
        let mut files = SegmentFiles::default();
        let mut bytes = 0u64;
        let mut out = Vec::new();
        for e in self.frame_entries(from, until)? {
            if bytes >= max_bytes {
                break;
            }
            bytes += u64::from(e.len);
            out.push(self.read_frame(&e, &mut files)?);
        }
        Ok(out)
    }

    /// The writer's synced hint (see [`crate::synced`]), if intact.
    pub fn synced_hint(&self) -> Option<crate::synced::SyncedHint> {
        crate::synced::SyncedHint::read(&self.layout.dir)
    }

    /// The newest seq this journal can serve: the index's durable seq, or the synced hint's
    /// when the frames it names past the index check out. A shipper that sends hinted frames
    /// must judge a replica's position by this (a replica holding them is not "ahead").
    pub fn served_seq(&self) -> Result<u64> {
        let durable = self.meta()?.durable_seq;
        match self.synced_hint() {
            Some(h) if h.seq > durable => Ok(self
                .unindexed_frames(durable + 1, h.seq, &mut SegmentFiles::default())?
                .last()
                .map_or(durable, |f| f.header.last_seq())
                .max(durable)),
            _ => Ok(durable),
        }
    }

    /// Frames past the index's last frame, up to the synced hint, holding records
    /// `from..=until`: fsynced by the writer, whose index commit has not landed yet. Each is
    /// checked (crc, continuous seqs from the last indexed frame, within the hint's segment
    /// and end offset); whatever does not check out ends the list, so a torn or stale hint
    /// only costs waiting for the index. At most [`UNINDEXED_MAX_BYTES`] are read.
    pub fn unindexed_frames(
        &self,
        from: u64,
        until: u64,
        files: &mut SegmentFiles,
    ) -> Result<Vec<RawFrame>> {
        let mut out = Vec::new();
        let Some(hint) = self.synced_hint() else {
            return Ok(out);
        };
        let until = until.min(hint.seq);
        let Some((_, last)) = self.first_last_frames()? else {
            return Ok(out);
        };
        let (mut seg, mut pos, next) = (
            last.segment,
            last.offset + u64::from(last.len),
            last.last_seq() + 1,
        );
        if next > until || hint.segment < seg {
            return Ok(out);
        }
        // A rotation commits everything before it, so unindexed frames are all in the hint's
        // segment: the last indexed frame's, or the next one when that one is complete.
        if seg != hint.segment {
            if pos < self.segment_len(seg, files)? || next != hint.segment {
                return Ok(out);
            }
            seg = hint.segment;
            pos = crate::segment::SEGMENT_HEADER_LEN as u64;
        }
        let end = hint.end_offset;
        if end <= pos || end - pos > UNINDEXED_MAX_BYTES {
            return Ok(out);
        }
        let (path, f) = match files.get(&self.layout, seg) {
            Ok(x) => x,
            Err(_) => return Ok(out),
        };
        let mut buf = vec![0u8; (end - pos) as usize];
        if f.read_exact_at(&mut buf, pos).is_err() {
            return Ok(out); // shorter than the hint says: a stale hint
        }
        let scan = crate::segment::scan_frames(&buf, pos, next);
        tracing::trace!(segment = %path.display(), frames = scan.frames.len(), "read unindexed frames");
        for loc in &scan.frames {
            if loc.header.last_seq() > until {
                break;
            }
            if loc.header.last_seq() >= from {
                let s = (loc.offset - pos) as usize;
                out.push(RawFrame {
                    header: loc.header,
                    bytes: buf[s..s + loc.header.frame_len()].to_vec(),
                });
            }
        }
        Ok(out)
    }

    fn segment_len(&self, seg: u64, files: &mut SegmentFiles) -> Result<u64> {
        let (path, f) = files.get(&self.layout, seg)?;
        Ok(f.metadata().ctx("stat", path)?.len())
    }

    /// Iterates records from `from` to `until` inclusive, reading frame by frame.
    pub fn records(&self, from: u64, until: u64) -> Result<RecordIter<'_>> {
        let entries = self.frame_entries(from, until)?;
        Ok(RecordIter {
            reader: self,
            entries: entries.into_iter(),
            files: SegmentFiles::default(),
            current: Vec::new().into_iter(),
            from,
            until,
        })
    }

    /// The last seq whose time, and the time of everything before it, is at or before `t`
    /// as far as the index's high-water times tell (frame granularity; callers refine by
    /// decoding the frame after it).
    pub fn seq_at_or_before_time(&self, t: u64) -> Result<Option<u64>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let tt = r.open_table(index::TIMES).db(p)?;
        let found = tt
            .range(..=t)
            .db(p)?
            .next_back()
            .transpose()
            .db(p)?
            .map(|(_, v)| v.value());
        Ok(found)
    }

    /// The first frame whose high-water time passes `t` (its records may straddle `t`).
    pub fn first_seq_after_time(&self, t: u64) -> Result<Option<u64>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let tt = r.open_table(index::TIMES).db(p)?;
        let found = tt
            .range(t + 1..)
            .db(p)?
            .next()
            .transpose()
            .db(p)?
            .map(|(_, v)| v.value());
        Ok(found)
    }

    pub fn bases(&self) -> Result<Vec<BaseInfo>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::BASES).db(p)?;
        let mut out = Vec::new();
        for e in t.iter().db(p)? {
            let (k, v) = e.db(p)?;
            let (b, end, bt, et) = v.value();
            out.push(BaseInfo {
                id: k.value(),
                begin_seq: b,
                end_seq: (end != 0).then_some(end),
                begin_time_ns: bt,
                end_time_ns: (end != 0).then_some(et),
            });
        }
        out.sort_by_key(|b| b.begin_seq);
        Ok(out)
    }

    pub fn sync_points(&self, from: u64, until: u64) -> Result<Vec<SyncPoint>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::SYNCS).db(p)?;
        let mut out = Vec::new();
        for e in t.range(from..=until).db(p)? {
            let (k, v) = e.db(p)?;
            let (time_ns, kind) = v.value();
            out.push(SyncPoint {
                seq: k.value(),
                time_ns,
                kind,
            });
        }
        Ok(out)
    }

    pub fn sync_point_count(&self) -> Result<u64> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::SYNCS).db(p)?;
        t.len().db(p)
    }

    pub fn last_sync_point(&self) -> Result<Option<SyncPoint>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::SYNCS).db(p)?;
        let last = t.last().db(p)?.map(|(k, v)| SyncPoint {
            seq: k.value(),
            time_ns: v.value().0,
            kind: v.value().1,
        });
        Ok(last)
    }

    /// Gap windows (see [`gap_windows`]). The tree as of a seq inside one is not a state the
    /// source had.
    pub fn gap_windows(&self) -> Result<Vec<(u64, u64)>> {
        Ok(gap_windows(&self.gaps()?, &self.bases()?))
    }

    pub fn gaps(&self) -> Result<Vec<GapInfo>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::GAPS).db(p)?;
        let mut out = Vec::new();
        for e in t.iter().db(p)? {
            let (k, v) = e.db(p)?;
            let (lost, reason, healed, time_ns) = v.value();
            out.push(GapInfo {
                seq: k.value(),
                lost,
                reason,
                healed_seq: (healed != 0).then_some(healed),
                time_ns,
            });
        }
        Ok(out)
    }

    /// (first seq, created time) of each indexed segment.
    pub fn segments(&self) -> Result<Vec<(u64, u64)>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::SEGMENTS).db(p)?;
        let mut out = Vec::new();
        for e in t.iter().db(p)? {
            let (k, v) = e.db(p)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// The first and last indexed frame entries.
    pub fn first_last_frames(&self) -> Result<Option<(FrameEntry, FrameEntry)>> {
        let p = &self.layout.index;
        let r = self.read_txn()?;
        let t = r.open_table(index::FRAMES).db(p)?;
        let first = t.first().db(p)?.map(|(k, v)| entry(k.value(), v.value()));
        let last = t.last().db(p)?.map(|(k, v)| entry(k.value(), v.value()));
        let both = first.zip(last);
        Ok(both)
    }

    /// Where a replica with nothing applied starts: 1 while the journal is whole, else the
    /// begin of its oldest base still held (a base rebuilds the whole tree), else its first seq.
    pub fn fresh_start_seq(&self) -> Result<u64> {
        let m = self.meta()?;
        if m.first_seq <= 1 {
            return Ok(1);
        }
        Ok(self
            .bases()?
            .iter()
            .map(|b| b.begin_seq)
            .filter(|&s| s >= m.first_seq)
            .min()
            .unwrap_or(m.first_seq))
    }

    /// Follows the journal from `next_seq`: each call returns the durable frames that appeared
    /// since the last one, waiting up to `timeout` for at least one.
    pub fn follow(&self, next_seq: u64) -> Follower<'_> {
        Follower {
            reader: self,
            next_seq,
            files: SegmentFiles::default(),
            poll_interval: DEFAULT_FOLLOW_POLL,
        }
    }
}

/// How often a follower checks the index for new durable frames.
pub const DEFAULT_FOLLOW_POLL: Duration = Duration::from_millis(1);

pub struct Follower<'a> {
    reader: &'a JournalReader,
    next_seq: u64,
    files: SegmentFiles,
    poll_interval: Duration,
}

impl Follower<'_> {
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn set_poll_interval(&mut self, d: Duration) {
        self.poll_interval = d;
    }

    /// Returns the next durable frames (possibly none after `timeout`). The first frame returned
    /// may start before `next_seq` if `next_seq` falls inside it; callers skip those records.
    pub fn next_frames(&mut self, timeout: Duration) -> Result<Vec<RawFrame>> {
        let deadline = Instant::now() + timeout;
        loop {
            let durable = self.reader.meta()?.durable_seq;
            if durable >= self.next_seq {
                let entries = self.reader.frame_entries(self.next_seq, durable)?;
                let mut out = Vec::with_capacity(entries.len());
                for e in &entries {
                    out.push(self.reader.read_frame(e, &mut self.files)?);
                }
                if let Some(last) = out.last() {
                    self.next_seq = last.header.last_seq() + 1;
                }
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            std::thread::sleep(self.poll_interval.min(deadline - now));
        }
    }
}

/// Open segment files, kept between frame reads.
#[derive(Default)]
pub struct SegmentFiles {
    current: Option<(u64, PathBuf, File)>,
}

impl SegmentFiles {
    fn get(&mut self, layout: &Layout, segment: u64) -> Result<(&Path, &File)> {
        if self.current.as_ref().map(|c| c.0) != Some(segment) {
            let path = layout.segments.join(segment_file_name(segment));
            let f = File::open(&path).ctx("open segment", &path)?;
            self.current = Some((segment, path, f));
        }
        let (_, p, f) = self
            .current
            .as_ref()
            .ok_or_else(|| JournalError::Inconsistent("segment cache".into()))?;
        Ok((p.as_path(), f))
    }
}

pub struct RecordIter<'a> {
    reader: &'a JournalReader,
    entries: std::vec::IntoIter<FrameEntry>,
    files: SegmentFiles,
    current: std::vec::IntoIter<Record>,
    from: u64,
    until: u64,
}

impl Iterator for RecordIter<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(r) = self.current.next() {
                if r.seq < self.from {
                    continue;
                }
                if r.seq > self.until {
                    return None;
                }
                return Some(Ok(r));
            }
            let e = self.entries.next()?;
            let frame = match self.reader.read_frame(&e, &mut self.files) {
                Ok(f) => f,
                Err(err) => return Some(Err(err)),
            };
            match frame.records() {
                Ok(recs) => self.current = recs.into_iter(),
                Err(err) => {
                    return Some(Err(JournalError::Damaged {
                        path: self
                            .reader
                            .layout
                            .segments
                            .join(segment_file_name(e.segment)),
                        offset: e.offset,
                        error: err.into(),
                    }))
                }
            }
        }
    }
}

fn entry(first_seq: u64, v: (u64, u64, u32, u32, u64)) -> FrameEntry {
    FrameEntry {
        first_seq,
        segment: v.0,
        offset: v.1,
        len: v.2,
        count: v.3,
        max_time_ns: v.4,
    }
}
