//! The frame codec: a batch of consecutive records -> postcard -> (zstd) -> frame with a fixed
//! header and a crc32c. Frames are the unit the journal stores and the shipper sends as they are.
//!
//! Layout (little-endian), specified in docs/journal-format.md ("Frame"):
//!
//! ```text
//! off len field
//!   0   4 magic          b"FXFR"
//!   4   1 version        FRAME_VERSION (1)
//!   5   1 codec          0 = raw postcard, 1 = zstd
//!   6   2 flags          FLAG_* summary of the records inside (the index decodes flagged frames)
//!   8   4 body_len       bytes of body after the header
//!  12   4 raw_len        bytes of postcard after decompression
//!  16   8 first_seq
//!  24   4 record_count
//!  28   4 reserved       0
//!  32   8 min_time_ns
//!  40   8 max_time_ns
//!  48   4 crc32c         over bytes 0..48, then the body
//!  52     body
//! ```

use crate::record::{Op, Record};

pub const FRAME_MAGIC: [u8; 4] = *b"FXFR";
pub const FRAME_VERSION: u8 = 1;
pub const FRAME_HEADER_LEN: usize = 52;
/// Largest body (compressed or raw) a frame may carry.
pub const MAX_FRAME_BODY_BYTES: usize = 64 << 20;
/// Largest postcard payload a frame may decompress to: bounds decoder memory.
pub const MAX_FRAME_RAW_BYTES: usize = 64 << 20;
/// Most records in one frame.
pub const MAX_FRAME_RECORDS: u32 = 1 << 20;

pub const CODEC_RAW: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

pub const FLAG_SYNC: u16 = 1 << 0;
pub const FLAG_BASE_BEGIN: u16 = 1 << 1;
pub const FLAG_BASE_END: u16 = 1 << 2;
pub const FLAG_GAP: u16 = 1 << 3;
pub const FLAG_INEXACT: u16 = 1 << 4;
const KNOWN_FLAGS: u16 = FLAG_SYNC | FLAG_BASE_BEGIN | FLAG_BASE_END | FLAG_GAP | FLAG_INEXACT;

/// Zstd level used unless told otherwise: level 1 keeps up with the disk on one core.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is incomplete: have {have} bytes, need {need}")]
    Incomplete { have: usize, need: usize },
    #[error("bad frame magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    #[error("unknown flags {0:#06x}")]
    UnknownFlags(u16),
    #[error("reserved header field is not zero")]
    Reserved,
    #[error("frame field {field} = {value} exceeds the limit {limit}")]
    TooLarge {
        field: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("decompressed {got} bytes, header says {expected}")]
    RawLenMismatch { got: usize, expected: usize },
    #[error("record decode failed: {0}")]
    Decode(String),
    #[error("frame holds {got} records, header says {expected}")]
    CountMismatch { got: usize, expected: u32 },
    #[error("record {index} has seq {got}, expected {expected}")]
    SeqMismatch {
        index: usize,
        got: u64,
        expected: u64,
    },
    #[error("header summary does not match the records ({what})")]
    SummaryMismatch { what: &'static str },
    #[error("cannot encode an empty batch")]
    Empty,
    #[error("record encode failed: {0}")]
    Encode(String),
}

/// The parsed, validated fixed header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub codec: u8,
    pub flags: u16,
    pub body_len: u32,
    pub raw_len: u32,
    pub first_seq: u64,
    pub record_count: u32,
    pub min_time_ns: u64,
    pub max_time_ns: u64,
    pub crc: u32,
}

impl FrameHeader {
    /// Total frame length (header + body).
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body_len as usize
    }

    /// Seq of the last record in the frame.
    pub fn last_seq(&self) -> u64 {
        // record_count >= 1 and first_seq + count cannot overflow: checked by parse().
        self.first_seq + u64::from(self.record_count) - 1
    }

    /// Parses and validates the fixed header from the start of `buf` (crc is not checked here:
    /// it covers the body too, see [`check_frame`]).
    pub fn parse(buf: &[u8]) -> Result<FrameHeader, FrameError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Err(FrameError::Incomplete {
                have: buf.len(),
                need: FRAME_HEADER_LEN,
            });
        }
        let magic: [u8; 4] = arr(buf, 0);
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if buf[4] != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion(buf[4]));
        }
        let codec = buf[5];
        if codec != CODEC_RAW && codec != CODEC_ZSTD {
            return Err(FrameError::UnknownCodec(codec));
        }
        let flags = u16::from_le_bytes(arr(buf, 6));
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags(flags));
        }
        let body_len = u32::from_le_bytes(arr(buf, 8));
        let raw_len = u32::from_le_bytes(arr(buf, 12));
        let first_seq = u64::from_le_bytes(arr(buf, 16));
        let record_count = u32::from_le_bytes(arr(buf, 24));
        if u32::from_le_bytes(arr(buf, 28)) != 0 {
            return Err(FrameError::Reserved);
        }
        let min_time_ns = u64::from_le_bytes(arr(buf, 32));
        let max_time_ns = u64::from_le_bytes(arr(buf, 40));
        let crc = u32::from_le_bytes(arr(buf, 48));
        limit("body_len", body_len as u64, MAX_FRAME_BODY_BYTES as u64)?;
        limit("raw_len", raw_len as u64, MAX_FRAME_RAW_BYTES as u64)?;
        limit(
            "record_count",
            record_count as u64,
            MAX_FRAME_RECORDS as u64,
        )?;
        if record_count == 0 {
            return Err(FrameError::SummaryMismatch {
                what: "record_count is 0",
            });
        }
        if first_seq == 0 || first_seq.checked_add(u64::from(record_count)).is_none() {
            return Err(FrameError::SummaryMismatch {
                what: "first_seq out of range",
            });
        }
        if codec == CODEC_RAW && raw_len != body_len {
            return Err(FrameError::SummaryMismatch {
                what: "raw frame with raw_len != body_len",
            });
        }
        if min_time_ns > max_time_ns {
            return Err(FrameError::SummaryMismatch {
                what: "min_time_ns > max_time_ns",
            });
        }
        Ok(FrameHeader {
            codec,
            flags,
            body_len,
            raw_len,
            first_seq,
            record_count,
            min_time_ns,
            max_time_ns,
            crc,
        })
    }

    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&FRAME_MAGIC);
        out[4] = FRAME_VERSION;
        out[5] = self.codec;
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.body_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..28].copy_from_slice(&self.record_count.to_le_bytes());
        out[28..32].copy_from_slice(&0u32.to_le_bytes());
        out[32..40].copy_from_slice(&self.min_time_ns.to_le_bytes());
        out[40..48].copy_from_slice(&self.max_time_ns.to_le_bytes());
        out[48..52].copy_from_slice(&self.crc.to_le_bytes());
    }
}

fn arr<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&buf[off..off + N]);
    a
}

fn limit(field: &'static str, value: u64, limit: u64) -> Result<(), FrameError> {
    if value > limit {
        Err(FrameError::TooLarge {
            field,
            value,
            limit,
        })
    } else {
        Ok(())
    }
}

/// The summary flags a batch of records produces.
pub fn summary_flags(records: &[Record]) -> u16 {
    records.iter().fold(0, |f, r| {
        f | match r.op {
            Op::Sync { .. } => FLAG_SYNC,
            Op::BaseBegin { .. } => FLAG_BASE_BEGIN,
            Op::BaseEnd { .. } => FLAG_BASE_END,
            Op::Gap { .. } | Op::GapHealed { .. } => FLAG_GAP,
            Op::Dirty { .. } => FLAG_INEXACT,
            _ => 0,
        }
    })
}

fn crc_of(header_without_crc: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header_without_crc), body)
}

/// Bytes a record takes besides its payload, for sizing the encode buffer: header fields,
/// writer, path (a typical path; longer ones only cost one reallocation).
const RECORD_OVERHEAD_ESTIMATE_BYTES: usize = 256;

/// postcard output into a presized vector, appending slices with `extend_from_slice`.
/// (postcard's `to_extend` appends through `Extend<u8>` one byte at a time: in an unoptimized
/// build that encoded ~100 MB/s of payload, the recorder fell behind `pgbench -i` and lost
/// 38k ring events; regression test `encode_frame_copies_payloads_at_memcpy_speed`.)
struct SliceAppend(Vec<u8>);

impl postcard::ser_flavors::Flavor for SliceAppend {
    type Output = Vec<u8>;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Encodes a non-empty batch of records with consecutive seqs into one frame.
///
/// `zstd_level` 0 disables compression; otherwise the body is zstd-compressed at that level and
/// stored raw instead when compression saves less than 1/16 of the bytes (incompressible data
/// does not pay for decompression downstream).
pub fn encode_frame(records: &[Record], zstd_level: i32) -> Result<Vec<u8>, FrameError> {
    let first = records.first().ok_or(FrameError::Empty)?;
    for (i, r) in records.iter().enumerate() {
        let expected = first.seq + i as u64;
        if r.seq != expected {
            return Err(FrameError::SeqMismatch {
                index: i,
                got: r.seq,
                expected,
            });
        }
    }
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    limit("record_count", count as u64, MAX_FRAME_RECORDS as u64)?;
    if first.seq == 0 {
        return Err(FrameError::SeqMismatch {
            index: 0,
            got: 0,
            expected: 1,
        });
    }
    // Sized up front (payloads plus a generous per-record allowance for the rest): growing the
    // vector while serializing copied every payload several times (perf, docs/benchmarks.md).
    let estimate = records
        .iter()
        .map(|r| r.op.payload_len() + RECORD_OVERHEAD_ESTIMATE_BYTES)
        .sum::<usize>();
    let raw = postcard::serialize_with_flavor(records, SliceAppend(Vec::with_capacity(estimate)))
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    limit("raw_len", raw.len() as u64, MAX_FRAME_RAW_BYTES as u64)?;
    let raw_len = raw.len() as u32;
    let (codec, body) = if zstd_level != 0 && worth_compressing(&raw, zstd_level) {
        match compress(&raw, zstd_level) {
            Ok(c) if c.len() < raw.len() - raw.len() / 16 => (CODEC_ZSTD, c),
            _ => (CODEC_RAW, raw),
        }
    } else {
        (CODEC_RAW, raw)
    };
    let min_time_ns = records.iter().map(|r| r.time_ns).min().unwrap_or(0);
    let max_time_ns = records.iter().map(|r| r.time_ns).max().unwrap_or(0);
    let mut h = FrameHeader {
        codec,
        flags: summary_flags(records),
        body_len: body.len() as u32,
        raw_len,
        first_seq: first.seq,
        record_count: count,
        min_time_ns,
        max_time_ns,
        crc: 0,
    };
    let mut out = vec![0u8; FRAME_HEADER_LEN + body.len()];
    h.write(&mut out[..FRAME_HEADER_LEN]);
    h.crc = crc_of(&out[..FRAME_HEADER_LEN - 4], &body);
    h.write(&mut out[..FRAME_HEADER_LEN]);
    out[FRAME_HEADER_LEN..].copy_from_slice(&body);
    Ok(out)
}

/// Bodies at least this large are sampled before being compressed whole.
const COMPRESSION_SAMPLE_MIN_BYTES: usize = 32 << 10;
const COMPRESSION_SAMPLE_BYTES: usize = 4 << 10;

/// Whether compressing `raw` is likely to pay: large bodies are sampled (three 4 KiB slices,
/// start, middle, end) and compressed whole only if the sample shrinks by at least 1/16.
/// Incompressible payloads (already compressed or encrypted files) then cost one small trial.
fn worth_compressing(raw: &[u8], level: i32) -> bool {
    if raw.len() < COMPRESSION_SAMPLE_MIN_BYTES {
        return true;
    }
    let n = COMPRESSION_SAMPLE_BYTES;
    let mid = raw.len() / 2 - n / 2;
    let mut sample = Vec::with_capacity(3 * n);
    sample.extend_from_slice(&raw[..n]);
    sample.extend_from_slice(&raw[mid..mid + n]);
    sample.extend_from_slice(&raw[raw.len() - n..]);
    match compress(&sample, level) {
        Ok(c) => c.len() < sample.len() - sample.len() / 16,
        Err(_) => false,
    }
}

thread_local! {
    /// One zstd compression context per thread and level: creating a context per frame (what
    /// `zstd::bulk::compress` does) allocates and clears its tables each time, which dominated
    /// the cost of compressing small frames.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match c.as_mut() {
            Some((_, z)) => z.compress(data),
            None => zstd::bulk::compress(data, level),
        }
    })
}

/// Validates the header and crc of the frame at the start of `buf` (which may hold more bytes
/// after it) without decompressing. Returns the header; the frame is `buf[..h.frame_len()]`.
pub fn check_frame(buf: &[u8]) -> Result<FrameHeader, FrameError> {
    let h = FrameHeader::parse(buf)?;
    let need = h.frame_len();
    if buf.len() < need {
        return Err(FrameError::Incomplete {
            have: buf.len(),
            need,
        });
    }
    let computed = crc_of(&buf[..FRAME_HEADER_LEN - 4], &buf[FRAME_HEADER_LEN..need]);
    if computed != h.crc {
        return Err(FrameError::BadCrc {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Fully decodes and validates the frame at the start of `buf`: crc, decompression within the
/// declared size, record count, consecutive seqs and the header's summary fields.
pub fn decode_frame(buf: &[u8]) -> Result<(FrameHeader, Vec<Record>), FrameError> {
    let h = check_frame(buf)?;
    let body = &buf[FRAME_HEADER_LEN..h.frame_len()];
    let records = decode_body(&h, body)?;
    Ok((h, records))
}

/// Decodes a body whose crc was already checked against `h`.
pub fn decode_body(h: &FrameHeader, body: &[u8]) -> Result<Vec<Record>, FrameError> {
    let raw_owned;
    let raw: &[u8] = match h.codec {
        CODEC_ZSTD => {
            raw_owned = zstd::bulk::decompress(body, h.raw_len as usize)
                .map_err(|e| FrameError::Decompress(e.to_string()))?;
            &raw_owned
        }
        _ => body,
    };
    if raw.len() != h.raw_len as usize {
        return Err(FrameError::RawLenMismatch {
            got: raw.len(),
            expected: h.raw_len as usize,
        });
    }
    let records = decode_records(raw)?;
    if records.len() != h.record_count as usize {
        return Err(FrameError::CountMismatch {
            got: records.len(),
            expected: h.record_count,
        });
    }
    for (i, r) in records.iter().enumerate() {
        let expected = h.first_seq + i as u64;
        if r.seq != expected {
            return Err(FrameError::SeqMismatch {
                index: i,
                got: r.seq,
                expected,
            });
        }
        if r.time_ns < h.min_time_ns || r.time_ns > h.max_time_ns {
            return Err(FrameError::SummaryMismatch {
                what: "record time outside header range",
            });
        }
    }
    if summary_flags(&records) != h.flags {
        return Err(FrameError::SummaryMismatch { what: "flags" });
    }
    Ok(records)
}

/// Decodes a postcard batch of records (no frame around it). Never panics on any input.
pub fn decode_records(raw: &[u8]) -> Result<Vec<Record>, FrameError> {
    let (records, rest): (Vec<Record>, &[u8]) =
        postcard::take_from_bytes(raw).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the batch",
            rest.len()
        )));
    }
    Ok(records)
}
