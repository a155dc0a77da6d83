//! Full verification of a journal: every segment header, every frame's crc and decode, seq
//! continuity within and across segments, and agreement between index and segments. Read-only;
//! safe beside a running writer (an incomplete tail past the durable point is reported as such,
//! not as damage).

use std::path::{Path, PathBuf};

use foxing_proto::frame::{decode_body, FRAME_HEADER_LEN};

use crate::error::Result;
use crate::reader::{FrameEntry, JournalReader};
use crate::segment::{scan_frames, ScanEnd, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::{list_segments, Layout};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    pub what: String,
}

#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub segments: u64,
    pub frames: u64,
    pub records: u64,
    pub bytes: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub durable_seq: Option<u64>,
    pub index_present: bool,
    pub damage: Vec<Damage>,
    /// Not damage: e.g. an unsynced tail a running (or crashed) writer left past the durable point.
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Verifies the journal in `dir`.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let layout = Layout::new(dir);
    let mut rep = VerifyReport::default();
    let reader = if layout.index.exists() {
        match JournalReader::open(dir) {
            Ok(r) => Some(r),
            Err(e @ crate::JournalError::IndexNeedsRepair(_)) => {
                rep.notes.push(format!("{e}; checked the segments only"));
                None
            }
            Err(e) => {
                rep.damage.push(Damage {
                    segment: layout.index.clone(),
                    offset: 0,
                    what: format!("index unreadable: {e}"),
                });
                None
            }
        }
    } else {
        rep.notes
            .push("no index.redb: checked the segments only".into());
        None
    };
    rep.index_present = reader.is_some();
    let meta = match &reader {
        Some(r) => Some(r.meta()?),
        None => None,
    };
    rep.durable_seq = meta.map(|m| m.durable_seq);
    let durable = meta.map(|m| m.durable_seq).unwrap_or(0);
    let index_entries: Vec<FrameEntry> = match &reader {
        Some(r) => r.frame_entries(0, u64::MAX)?,
        None => Vec::new(),
    };
    let mut by_seq = std::collections::BTreeMap::new();
    for e in &index_entries {
        by_seq.insert(e.first_seq, *e);
    }

    let segments = list_segments(&layout)?;
    rep.segments = segments.len() as u64;
    let mut expected: Option<u64> = meta.map(|m| m.first_seq);
    let n = segments.len();
    for (i, (seg_seq, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == n;
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                rep.damage.push(Damage {
                    segment: path.clone(),
                    offset: 0,
                    what: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        rep.bytes += data.len() as u64;
        let header = match SegmentHeader::parse(&data) {
            Ok(h) => h,
            Err(e) => {
                rep.damage.push(Damage {
                    segment: path.clone(),
                    offset: 0,
                    what: format!("segment header: {e}"),
                });
                expected = None;
                continue;
            }
        };
        if header.first_seq != *seg_seq {
            rep.damage.push(Damage {
                segment: path.clone(),
                offset: 16,
                what: format!(
                    "header first_seq {} does not match the file name",
                    header.first_seq
                ),
            });
        }
        match expected {
            // The first segment may start before meta.first_seq only if a prune was interrupted.
            Some(exp) if i > 0 && header.first_seq != exp => rep.damage.push(Damage {
                segment: path.clone(),
                offset: 16,
                what: format!(
                    "segment starts at seq {}, expected {exp} (missing or extra records)",
                    header.first_seq
                ),
            }),
            _ => {}
        }
        let start = header.first_seq;
        if i == 0 {
            rep.first_seq = Some(start);
        }
        let scan = scan_frames(
            &data[SEGMENT_HEADER_LEN..],
            SEGMENT_HEADER_LEN as u64,
            start,
        );
        for loc in &scan.frames {
            let s = loc.offset as usize + FRAME_HEADER_LEN;
            let body = &data[s..s + loc.header.body_len as usize];
            if let Err(e) = decode_body(&loc.header, body) {
                rep.damage.push(Damage {
                    segment: path.clone(),
                    offset: loc.offset,
                    what: format!("frame decode: {e}"),
                });
            }
            rep.frames += 1;
            rep.records += loc.header.record_count as u64;
            if reader.is_some() {
                match by_seq.remove(&loc.header.first_seq) {
                    Some(e) if e.segment == *seg_seq && e.offset == loc.offset && e.len as usize == loc.header.frame_len() => {}
                    Some(e) => rep.damage.push(Damage {
                        segment: path.clone(),
                        offset: loc.offset,
                        what: format!(
                            "index places seq {} at segment {} offset {} ({} bytes), the segment has it here ({} bytes)",
                            e.first_seq,
                            e.segment,
                            e.offset,
                            e.len,
                            loc.header.frame_len()
                        ),
                    }),
                    None if loc.header.last_seq() <= durable => rep.damage.push(Damage {
                        segment: path.clone(),
                        offset: loc.offset,
                        what: format!("frame at seq {} is durable but missing from the index", loc.header.first_seq),
                    }),
                    None => {}
                }
            }
        }
        rep.last_seq = Some(scan.next_seq - 1);
        expected = Some(scan.next_seq);
        match scan.end {
            ScanEnd::Clean => {}
            ScanEnd::Incomplete { offset } | ScanEnd::Invalid { offset, .. }
                if is_last
                    && scan.next_seq > durable
                    && (rep.index_present || matches!(scan.end, ScanEnd::Incomplete { .. })) =>
            {
                rep.notes.push(format!(
                    "{}: {} bytes at offset {offset} past the durable point (seq {durable}) are an unsynced tail ({:?}); the next writer open cuts them",
                    path.display(),
                    data.len() as u64 - offset,
                    scan.end
                ));
            }
            ScanEnd::Incomplete { offset } => {
                expected = None;
                rep.damage.push(Damage {
                    segment: path.clone(),
                    offset,
                    what: format!(
                        "frame at seq {} is cut short ({} bytes left in the file)",
                        scan.next_seq,
                        data.len() as u64 - offset
                    ),
                })
            }
            ScanEnd::Invalid { offset, error } => {
                expected = None;
                rep.damage.push(Damage {
                    segment: path.clone(),
                    offset,
                    what: format!("frame at seq {}: {error}", scan.next_seq),
                })
            }
        }
    }
    // Index entries that point at nothing valid.
    for e in by_seq.values() {
        rep.damage.push(Damage {
            segment: layout
                .segments
                .join(crate::segment::segment_file_name(e.segment)),
            offset: e.offset,
            what: format!(
                "the index holds seq {}..={} here, but no valid frame does",
                e.first_seq,
                e.last_seq()
            ),
        });
    }
    if let (Some(m), Some(last)) = (meta, rep.last_seq) {
        if m.durable_seq > last {
            rep.damage.push(Damage {
                segment: layout.segments.clone(),
                offset: 0,
                what: format!("records up to seq {} were reported durable, but the segments end at seq {last}", m.durable_seq),
            });
        }
    }
    if rep.segments == 0 && durable > 0 {
        rep.damage.push(Damage {
            segment: layout.segments.clone(),
            offset: 0,
            what: format!("no segments, but records up to seq {durable} were reported durable"),
        });
    }
    Ok(rep)
}
