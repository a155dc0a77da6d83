//! The redb index beside the segments (`JDIR/index.redb`). Every table is described in
//! docs/journal-format.md ("Index"). The index is derived data: it can always be rebuilt from the
//! segments, except the `meta.durable_seq` promise, which recovery checks against them.

use foxing_proto::frame::{FrameHeader, FLAG_BASE_BEGIN, FLAG_BASE_END, FLAG_GAP, FLAG_SYNC};
use foxing_proto::{Op, Record};
use redb::{ReadableTable, TableDefinition};

/// frame first_seq -> (segment first_seq, offset, frame_len, record_count, max_time_ns)
pub const FRAMES: TableDefinition<u64, (u64, u64, u32, u32, u64)> = TableDefinition::new("frames");
/// segment first_seq -> (created_time_ns)
pub const SEGMENTS: TableDefinition<u64, u64> = TableDefinition::new("segments");
/// high-water time ns (max record time so far, strictly increasing) -> last seq at that time
pub const TIMES: TableDefinition<u64, u64> = TableDefinition::new("times");
/// sync point seq -> (time_ns, SyncKind code)
pub const SYNCS: TableDefinition<u64, (u64, u8)> = TableDefinition::new("syncs");
/// base_id -> (begin_seq, end_seq or 0 while open, begin_time_ns, end_time_ns)
pub const BASES: TableDefinition<u64, (u64, u64, u64, u64)> = TableDefinition::new("bases");
/// gap record seq -> (lost records, GapReason code, healed at seq or 0, time_ns)
pub const GAPS: TableDefinition<u64, (u64, u8, u64, u64)> = TableDefinition::new("gaps");
/// name -> value; keys are the META_* constants.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const META_FORMAT_VERSION: &str = "format_version";
/// Every record with seq <= durable_seq was fsynced before this value was committed.
pub const META_DURABLE_SEQ: &str = "durable_seq";
/// Wall time (ns) of the commit that last advanced durable_seq.
pub const META_DURABLE_TIME: &str = "durable_time_ns";
/// Oldest seq still held (prune moves it forward); 1 on a new journal.
pub const META_FIRST_SEQ: &str = "first_seq";
/// Max record time seen so far (the TIMES high-water mark).
pub const META_HW_TIME: &str = "hw_time_ns";

/// Random identity of the journal's history, made when the journal is created; a replica's
/// archive carries its source's id (the same seqs mean the same records).
pub const META_JOURNAL_ID: &str = "journal_id";

/// 1 once the journal adopted another journal's identity (a replica archive), see
/// `Journal::adopt`.
pub const META_ADOPTED: &str = "adopted";

/// Index format version stored in META.
pub const INDEX_FORMAT_VERSION: u64 = 1;

/// Everything the index learns from one frame.
#[derive(Clone, Debug, Default)]
pub struct FrameFacts {
    pub syncs: Vec<(u64, u64, u8)>,
    pub base_begins: Vec<(u64, u64, u64)>,
    pub base_ends: Vec<(u64, u64, u64)>,
    pub gaps: Vec<(u64, u64, u8, u64)>,
    pub gap_heals: Vec<(u64, u64)>,
}

/// Whether the frame holds records the index tracks beyond its location (so it must be decoded).
pub fn needs_facts(h: &FrameHeader) -> bool {
    h.flags & (FLAG_SYNC | FLAG_BASE_BEGIN | FLAG_BASE_END | FLAG_GAP) != 0
}

pub fn sync_kind_code(k: foxing_proto::SyncKind) -> u8 {
    use foxing_proto::SyncKind::*;
    match k {
        Fsync => 0,
        Fdatasync => 1,
        SyncFileRange => 2,
        Syncfs => 3,
        Sync => 4,
        Msync => 5,
    }
}

pub fn sync_kind_name(code: u8) -> &'static str {
    [
        "fsync",
        "fdatasync",
        "sync_file_range",
        "syncfs",
        "sync",
        "msync",
    ]
    .get(code as usize)
    .copied()
    .unwrap_or("unknown")
}

pub fn gap_reason_code(r: foxing_proto::GapReason) -> u8 {
    use foxing_proto::GapReason::*;
    match r {
        RingFull => 0,
        SeqGap => 1,
        DirtyMapFull => 2,
        RecorderDown => 3,
        ConcurrentWriters => 4,
        MovedIn => 5,
        JournalFailed => 6,
        Untracked => 7,
        ProbeMissed => 8,
        UnresolvedName => 9,
        MovedBeforeRead => 10,
    }
}

pub fn gap_reason_name(code: u8) -> &'static str {
    [
        "ring_full",
        "seq_gap",
        "dirty_map_full",
        "recorder_down",
        "concurrent_writers",
        "moved_in",
        "journal_failed",
        "untracked",
        "probe_missed",
        "unresolved_name",
        "moved_before_read",
    ]
    .get(code as usize)
    .copied()
    .unwrap_or("unknown")
}

/// Extracts the indexed facts from a frame's records.
pub fn frame_facts(records: &[Record]) -> FrameFacts {
    let mut f = FrameFacts::default();
    for r in records {
        match &r.op {
            Op::Sync { kind, .. } => f.syncs.push((r.seq, r.time_ns, sync_kind_code(*kind))),
            Op::BaseBegin { base_id } => f.base_begins.push((*base_id, r.seq, r.time_ns)),
            Op::BaseEnd { base_id } => f.base_ends.push((*base_id, r.seq, r.time_ns)),
            Op::Gap { lost, reason } => {
                f.gaps
                    .push((r.seq, *lost, gap_reason_code(*reason), r.time_ns))
            }
            Op::GapHealed { gap_seq } => f.gap_heals.push((*gap_seq, r.seq)),
            _ => {}
        }
    }
    f
}

/// Writes one frame's entries into an open write transaction.
pub fn insert_frame(
    txn: &redb::WriteTransaction,
    segment: u64,
    offset: u64,
    h: &FrameHeader,
    facts: &FrameFacts,
) -> Result<(), redb::Error> {
    txn.open_table(FRAMES)?.insert(
        h.first_seq,
        (
            segment,
            offset,
            h.frame_len() as u32,
            h.record_count,
            h.max_time_ns,
        ),
    )?;
    let mut meta = txn.open_table(META)?;
    let hw = meta.get(META_HW_TIME)?.map(|v| v.value()).unwrap_or(0);
    if h.max_time_ns > hw {
        meta.insert(META_HW_TIME, h.max_time_ns)?;
        txn.open_table(TIMES)?.insert(h.max_time_ns, h.last_seq())?;
    }
    if !facts.syncs.is_empty() {
        let mut t = txn.open_table(SYNCS)?;
        for &(seq, time, kind) in &facts.syncs {
            t.insert(seq, (time, kind))?;
        }
    }
    if !(facts.base_begins.is_empty() && facts.base_ends.is_empty()) {
        let mut t = txn.open_table(BASES)?;
        for &(id, seq, time) in &facts.base_begins {
            t.insert(id, (seq, 0, time, 0))?;
        }
        for &(id, seq, time) in &facts.base_ends {
            let begin = t.get(id)?.map(|v| v.value());
            if let Some((bseq, _, btime, _)) = begin {
                t.insert(id, (bseq, seq, btime, time))?;
            } else {
                // A BaseEnd without its BaseBegin (pruned or never written): not a usable base.
                tracing::warn!(base_id = id, seq, "BaseEnd without a BaseBegin; ignored");
            }
        }
    }
    if !(facts.gaps.is_empty() && facts.gap_heals.is_empty()) {
        let mut t = txn.open_table(GAPS)?;
        for &(seq, lost, reason, time) in &facts.gaps {
            t.insert(seq, (lost, reason, 0, time))?;
        }
        for &(gap_seq, healed) in &facts.gap_heals {
            let old = t.get(gap_seq)?.map(|v| v.value());
            if let Some((lost, reason, _, time)) = old {
                t.insert(gap_seq, (lost, reason, healed, time))?;
            }
        }
    }
    Ok(())
}

/// Creates every table so read-only opens find them.
pub fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(FRAMES)?;
    txn.open_table(SEGMENTS)?;
    txn.open_table(TIMES)?;
    txn.open_table(SYNCS)?;
    txn.open_table(BASES)?;
    txn.open_table(GAPS)?;
    let mut meta = txn.open_table(META)?;
    if meta.get(META_FORMAT_VERSION)?.is_none() {
        meta.insert(META_FORMAT_VERSION, INDEX_FORMAT_VERSION)?;
        meta.insert(META_DURABLE_SEQ, 0)?;
        meta.insert(META_FIRST_SEQ, 1)?;
    }
    Ok(())
}
