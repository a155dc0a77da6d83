//! Segment files: a fixed header, then frames back to back. Pure scanning logic lives here so it
//! is tested (and fuzzed) without a filesystem.
//!
//! Header layout (little-endian), see docs/journal-format.md ("Segment"):
//!
//! ```text
//! off len field
//!   0   8 magic            b"FOXJSEG\0"
//!   8   4 version          SEGMENT_VERSION (1)
//!  12   4 header_len       SEGMENT_HEADER_LEN (40)
//!  16   8 first_seq        seq of the first frame this segment holds (or will hold)
//!  24   8 created_time_ns
//!  32   4 reserved         0
//!  36   4 crc32c           over bytes 0..36
//! ```

use foxing_proto::frame::{check_frame, FrameError, FrameHeader};

pub const SEGMENT_MAGIC: [u8; 8] = *b"FOXJSEG\0";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 40;
/// Segment files are named `{first_seq:020}.fxseg`.
pub const SEGMENT_SUFFIX: &str = ".fxseg";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_seq: u64,
    pub created_time_ns: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentHeaderError {
    #[error("segment header is incomplete ({0} of {SEGMENT_HEADER_LEN} bytes)")]
    Incomplete(usize),
    #[error("bad segment magic")]
    BadMagic,
    #[error("unsupported segment version {0}")]
    UnsupportedVersion(u32),
    #[error("bad segment header length {0}")]
    BadHeaderLen(u32),
    #[error("segment header crc32c mismatch")]
    BadCrc,
    #[error("reserved segment header field is not zero")]
    Reserved,
    #[error("segment first_seq is 0")]
    ZeroSeq,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_time_ns.to_le_bytes());
        let crc = crc32c::crc32c(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn parse(buf: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        if buf.len() < SEGMENT_HEADER_LEN {
            return Err(SegmentHeaderError::Incomplete(buf.len()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[o..o + 8]);
            u64::from_le_bytes(a)
        };
        if buf[0..8] != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        if crc32c::crc32c(&buf[..36]) != u32_at(36) {
            return Err(SegmentHeaderError::BadCrc);
        }
        if u32_at(8) != SEGMENT_VERSION {
            return Err(SegmentHeaderError::UnsupportedVersion(u32_at(8)));
        }
        if u32_at(12) != SEGMENT_HEADER_LEN as u32 {
            return Err(SegmentHeaderError::BadHeaderLen(u32_at(12)));
        }
        if u32_at(32) != 0 {
            return Err(SegmentHeaderError::Reserved);
        }
        let first_seq = u64_at(16);
        if first_seq == 0 {
            return Err(SegmentHeaderError::ZeroSeq);
        }
        Ok(SegmentHeader {
            first_seq,
            created_time_ns: u64_at(24),
        })
    }
}

/// File name of the segment whose first seq is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back to its first seq.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A valid frame found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLoc {
    /// Byte offset of the frame within the segment file.
    pub offset: u64,
    pub header: FrameHeader,
}

/// How a scanned byte range ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid frame.
    Clean,
    /// The range ends inside a frame (or its header): what a crash mid-append leaves.
    Incomplete { offset: u64 },
    /// A complete frame at `offset` is invalid (bad crc, bad header, seq discontinuity).
    Invalid { offset: u64, error: ScanError },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("frame starts at seq {got}, expected {expected}")]
    Discontinuous { got: u64, expected: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub frames: Vec<FrameLoc>,
    /// Offset just past the last valid frame: where a torn tail would be cut.
    pub valid_end: u64,
    /// Seq the next frame must start at.
    pub next_seq: u64,
    pub end: ScanEnd,
}

/// Scans `buf`, which holds a segment's bytes from file offset `base_offset` (just after the
/// header, or after an already-known frame), expecting the first frame to start at `next_seq`.
/// Stops at the first incomplete or invalid frame. Never panics, whatever the bytes.
pub fn scan_frames(buf: &[u8], base_offset: u64, mut next_seq: u64) -> Scan {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    let end = loop {
        if pos == buf.len() {
            break ScanEnd::Clean;
        }
        let offset = base_offset + pos as u64;
        match check_frame(&buf[pos..]) {
            Ok(h) => {
                if h.first_seq != next_seq {
                    break ScanEnd::Invalid {
                        offset,
                        error: ScanError::Discontinuous {
                            got: h.first_seq,
                            expected: next_seq,
                        },
                    };
                }
                frames.push(FrameLoc { offset, header: h });
                next_seq = h.last_seq() + 1;
                pos += h.frame_len();
            }
            Err(FrameError::Incomplete { .. }) => break ScanEnd::Incomplete { offset },
            Err(e) => {
                break ScanEnd::Invalid {
                    offset,
                    error: e.into(),
                }
            }
        }
    };
    Scan {
        frames,
        valid_end: base_offset + pos as u64,
        next_seq,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foxing_proto::{encode_frame, Op, Record, Writer};

    fn frame(first: u64, n: u64) -> Vec<u8> {
        let recs: Vec<Record> = (first..first + n)
            .map(|seq| Record {
                seq,
                time_ns: seq * 10,
                writer: Writer::default(),
                op: Op::BaseBegin { base_id: seq },
            })
            .collect();
        encode_frame(&recs, 1).unwrap()
    }

    #[test]
    fn header_round_trips_and_detects_every_flip() {
        let h = SegmentHeader {
            first_seq: 77,
            created_time_ns: 123,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::parse(&b), Ok(h));
        for i in 0..b.len() {
            let mut c = b;
            c[i] ^= 0x40;
            assert!(SegmentHeader::parse(&c).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.fxseg");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.fxseg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.fxseg"), None);
    }

    #[test]
    fn scan_finds_frames_and_classifies_the_tail() {
        let mut buf = frame(1, 3);
        buf.extend(frame(4, 2));
        let s = scan_frames(&buf, 40, 1);
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.end, ScanEnd::Clean);
        assert_eq!(s.next_seq, 6);
        assert_eq!(s.valid_end, 40 + buf.len() as u64);

        let first_len = frame(1, 3).len();
        let torn = &buf[..buf.len() - 3];
        let s = scan_frames(torn, 40, 1);
        assert_eq!(s.frames.len(), 1);
        assert_eq!(
            s.end,
            ScanEnd::Incomplete {
                offset: 40 + first_len as u64
            }
        );

        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let s = scan_frames(&bad, 0, 1);
        assert!(matches!(s.end, ScanEnd::Invalid { offset, .. } if offset == first_len as u64));

        let s = scan_frames(&buf, 0, 2);
        assert!(matches!(
            s.end,
            ScanEnd::Invalid {
                error: ScanError::Discontinuous {
                    got: 1,
                    expected: 2
                },
                ..
            }
        ));
    }
}
