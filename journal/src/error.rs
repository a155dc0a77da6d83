use std::path::PathBuf;

use foxing_proto::FrameError;

use crate::segment::{ScanError, SegmentHeaderError};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal index {path}")]
    Index {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("journal {dir} is in use by another writer (lock {lock} is held); stop the other recorder or applier first")]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("segment {path}: bad header")]
    SegmentHeader {
        path: PathBuf,
        #[source]
        source: SegmentHeaderError,
    },
    #[error("journal damaged: segment {path} offset {offset}: {error}; run `foxing-journal verify` for a full report")]
    Damaged {
        path: PathBuf,
        offset: u64,
        error: ScanError,
    },
    #[error("journal damaged: {0}; run `foxing-journal verify` for a full report")]
    Inconsistent(String),
    #[error("an earlier group commit failed ({0}); nothing more is accepted until the journal is opened again")]
    CommitFailed(String),
    #[error("frame for seq {seq}")]
    Frame {
        seq: u64,
        #[source]
        source: FrameError,
    },
    #[error("frame starts at seq {got}, but the journal expects seq {expected}")]
    OutOfOrder { got: u64, expected: u64 },
    #[error("seq {seq} is not held by this journal (it holds {first}..={last})")]
    NotHeld { seq: u64, first: u64, last: u64 },
    #[error("journal {0} has no index yet: no writer has opened it (run the recorder first)")]
    NoIndex(PathBuf),
    #[error("journal index {0} was not closed cleanly (a writer was killed?); the next writer open repairs it: start the recorder or applier again, or run `foxing-journal recover --journal DIR`")]
    IndexNeedsRepair(PathBuf),
    #[error("index format version {found} is not supported (this build reads {supported})")]
    IndexVersion { found: u64, supported: u64 },
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Adds the path and operation to an io::Error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| JournalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Adds the index path to any redb error.
pub(crate) trait DbContext<T> {
    fn db(self, path: &std::path::Path) -> Result<T>;
}

impl<T, E: Into<redb::Error>> DbContext<T> for std::result::Result<T, E> {
    fn db(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| JournalError::Index {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}

/// `e` and every error beneath it, `: `-separated (what failed, then why: "append to segment
/// ...: No space left on device").
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
