//! Foxing's write-ahead change journal: append-only segment files of checksummed frames, indexed
//! by redb. One writer process ([`Journal`]), any number of readers ([`JournalReader`]).
//! The format is specified in docs/journal-format.md.

mod commit;
pub mod config;
pub mod error;
pub mod index;
#[cfg(feature = "recorder")]
pub mod links;
pub mod mapped;
pub mod metrics;
#[cfg(feature = "recorder")]
pub mod modes;
pub mod newdb;
pub mod prune;
pub mod races;
pub mod reader;
#[cfg(feature = "recorder")]
pub mod recorder;
pub mod replicas;
pub mod restart;
pub mod segment;
pub mod show;
pub mod synced;
pub mod verify;
#[cfg(feature = "recorder")]
pub mod views;
pub mod writer;

use std::path::{Path, PathBuf};

pub use commit::CommitHook;
pub use error::{JournalError, Result};
pub use reader::{JournalReader, RawFrame};
pub use writer::{Journal, JournalOptions};

use error::{DbContext, IoContext};
use redb::ReadableDatabase;

/// Where each file of a journal lives.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
    pub segments: PathBuf,
    pub index: PathBuf,
    pub lock: PathBuf,
    pub replicas: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
            segments: dir.join("segments"),
            index: dir.join("index.redb"),
            lock: dir.join("LOCK"),
            replicas: dir.join("replicas.redb"),
        }
    }
}

/// The index's META values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub format_version: u64,
    pub durable_seq: u64,
    pub durable_time_ns: u64,
    pub first_seq: u64,
    pub hw_time_ns: u64,
    pub journal_id: u64,
}

pub(crate) fn read_meta(db: &impl ReadableDatabase, path: &Path) -> Result<Meta> {
    let r = db.begin_read().db(path)?;
    let t = r.open_table(index::META).db(path)?;
    let get = |k: &str| -> Result<u64> { Ok(t.get(k).db(path)?.map(|v| v.value()).unwrap_or(0)) };
    Ok(Meta {
        format_version: get(index::META_FORMAT_VERSION)?,
        durable_seq: get(index::META_DURABLE_SEQ)?,
        durable_time_ns: get(index::META_DURABLE_TIME)?,
        first_seq: get(index::META_FIRST_SEQ)?.max(1),
        hw_time_ns: get(index::META_HW_TIME)?,
        journal_id: get(index::META_JOURNAL_ID)?,
    })
}

/// Segment files in the journal, sorted by first seq. Files that are not segments are ignored.
pub fn list_segments(layout: &Layout) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&layout.segments) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx("list", &layout.segments),
    };
    for ent in rd {
        let ent = ent.ctx("list", &layout.segments)?;
        if let Some(seq) = ent
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_file_name)
        {
            out.push((seq, ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A fresh random journal id (never 0).
pub(crate) fn new_journal_id() -> Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    let path = Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .ctx("read", path)?;
    Ok(u64::from_le_bytes(b).max(1))
}
