//! The record model: one record per observed mutation, in a total order given by `seq`.
//!
//! Every field is documented in docs/journal-format.md ("Records"). The serialized form is
//! postcard; the enum variant order below is therefore part of the on-disk format: append new
//! variants at the end only, never reorder or remove.

use serde::{Deserialize, Serialize};

/// Largest file offset + length a record may address: the kernel's MAX_LFS_FILESIZE
/// (i64::MAX), which xfs, btrfs and tmpfs allow (ext4 stops at 16 TiB with 4 KiB blocks);
/// appliers refuse records beyond it. (It was 2^60 until 2026-11-30: a replica refused
/// stress-ng's fsize stressor's fallocate at 2^61 on xfs, which the source had accepted.)
pub const MAX_FILE_BYTES: u64 = i64::MAX as u64;

/// A path relative to the watched root, as raw bytes (Linux paths are not UTF-8).
///
/// The recorder produces it; the applier must never trust it: see [`RelPath::check`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelPath(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// Longest path the applier accepts, in bytes (Linux PATH_MAX including the NUL).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single path component, in bytes (Linux NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a [`RelPath`] is not acceptable as a path beneath a root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is absolute")]
    Absolute,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path has a `..` component")]
    DotDot,
    #[error("path has an empty or `.` component")]
    DotOrEmpty,
    #[error("path is {0} bytes, longer than {MAX_PATH_BYTES}")]
    TooLong(usize),
    #[error("a path component is {0} bytes, longer than {MAX_NAME_BYTES}")]
    NameTooLong(usize),
}

impl RelPath {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        RelPath(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Checks that the path is a plain relative path: non-empty, not absolute, no NUL, no `..`,
    /// no `.` or empty components, within PATH_MAX and NAME_MAX. This is a syntactic check only;
    /// symlinks along the path are the resolver's business (openat2 RESOLVE_BENEATH).
    pub fn check(&self) -> Result<(), PathError> {
        let b = &self.0;
        if b.is_empty() {
            return Err(PathError::Empty);
        }
        if b.len() >= MAX_PATH_BYTES {
            return Err(PathError::TooLong(b.len()));
        }
        if b[0] == b'/' {
            return Err(PathError::Absolute);
        }
        if b.contains(&0) {
            return Err(PathError::Nul);
        }
        for comp in b.split(|&c| c == b'/') {
            match comp {
                b"" | b"." => return Err(PathError::DotOrEmpty),
                b".." => return Err(PathError::DotDot),
                c if c.len() > MAX_NAME_BYTES => return Err(PathError::NameTooLong(c.len())),
                _ => {}
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Escape non-printable bytes so a hostile name cannot drive the terminal.
        for chunk in self.0.utf8_chunks() {
            for ch in chunk.valid().chars() {
                if ch.is_control() {
                    write!(f, "{}", ch.escape_default())?;
                } else {
                    write!(f, "{ch}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Who made the change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// Task command name, NUL-padded, as the kernel's `comm` (TASK_COMM_LEN = 16).
    pub comm: [u8; 16],
}

impl Writer {
    /// The comm as text, up to the first NUL.
    pub fn comm_str(&self) -> String {
        let end = self.comm.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// A time stamp in nanoseconds since the Unix epoch (wall clock of the source).
pub type TimeNs = u64;

/// Renameat2 flags as the kernel defines them.
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

/// Fallocate mode bits as the kernel defines them.
pub const FALLOC_FL_KEEP_SIZE: u32 = 0x01;
pub const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
pub const FALLOC_FL_COLLAPSE_RANGE: u32 = 0x08;
pub const FALLOC_FL_ZERO_RANGE: u32 = 0x10;
pub const FALLOC_FL_INSERT_RANGE: u32 = 0x20;
pub const FALLOC_FL_UNSHARE_RANGE: u32 = 0x40;
/// Linux 6.17: zeroes the range by writing zeros to the device (same bytes as ZERO_RANGE).
pub const FALLOC_FL_WRITE_ZEROES: u32 = 0x80;

/// fallocate modes that move the bytes after the range (COLLAPSE_RANGE, INSERT_RANGE): the
/// recorder journals their result, not the call, and appliers refuse them.
pub fn shifts_bytes(mode: u32) -> bool {
    mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) != 0
}

/// Which call produced a sync point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncKind {
    Fsync,
    Fdatasync,
    SyncFileRange,
    Syncfs,
    Sync,
    /// msync(MS_SYNC) on a mapping of a file under the root.
    Msync,
}

/// The kind of a filesystem entry, with what is needed to recreate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
    Fifo,
    Socket,
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// The full metadata of an entry as the recorder read it (resync and base records).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub kind: EntryKind,
    /// Permission bits and setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size in bytes (regular files; 0 otherwise).
    pub size: u64,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    /// Source (device, inode), so the applier can rebuild hard-link groups.
    pub dev: u64,
    pub ino: u64,
    pub nlink: u32,
    pub xattrs: Vec<Xattr>,
}

/// Why records were lost or not captured exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GapReason {
    /// The kernel ring buffer was full.
    RingFull,
    /// A kernel-side event sequence number was missing for another reason.
    SeqGap,
    /// The per-inode dirty map overflowed: the whole tree is resynced.
    DirtyMapFull,
    /// The recorder was not running (restart after a crash or a stop).
    RecorderDown,
    /// Concurrent writers on one inode: effect order unknown, range resynced.
    ConcurrentWriters,
    /// Something arrived from outside the root (rename or link into it): its content is read by
    /// the heal that follows.
    MovedIn,
    /// The journal could not be written (full disk, I/O error): the recorder counted what it
    /// could not journal and heals it with the base that follows.
    JournalFailed,
    /// A change the probes saw but could not describe (a path operation submitted through
    /// io_uring, a write into a fixed-file slot): healed by the base that follows.
    Untracked,
    /// The kernel skipped running a probe (another BPF program was running on that CPU): a
    /// change may be unreported; healed by the base that follows.
    ProbeMissed,
    /// A path operation named its target by an absolute path the recorder could not map into
    /// the caller's view (its process and every other in its mount namespace had exited):
    /// the target may lie under the root; healed by the base that follows.
    UnresolvedName,
    /// A range the recorder had to re-read (a write whose bytes were not carried) was no
    /// longer at the written path when it read it (renamed, replaced or removed right after
    /// the write): the inode is resynced where it is then, once the ring has been drained past
    /// every rename in flight.
    MovedBeforeRead,
}

/// What a record does. Variant order is part of the on-disk format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Exact bytes written at an absolute offset.
    Write {
        path: RelPath,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A range known to have changed whose bytes were not captured (large write, mmap,
    /// io_uring, lost records). Inexact: a later `ResyncData` of the range heals it.
    Dirty {
        path: RelPath,
        offset: u64,
        len: u64,
    },
    Truncate {
        path: RelPath,
        size: u64,
    },
    Fallocate {
        path: RelPath,
        mode: u32,
        offset: u64,
        len: u64,
    },
    /// A new regular file (open with O_CREAT that created it, creat, mknod S_IFREG).
    Create {
        path: RelPath,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A special file: fifo, socket, character or block device.
    Mknod {
        path: RelPath,
        kind: EntryKind,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Mkdir {
        path: RelPath,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Unlink {
        path: RelPath,
    },
    Rmdir {
        path: RelPath,
    },
    /// rename/renameat/renameat2 with the RENAME_* flags.
    Rename {
        from: RelPath,
        to: RelPath,
        flags: u32,
    },
    Symlink {
        path: RelPath,
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
        uid: u32,
        gid: u32,
    },
    /// A hard link: `new` becomes another name of `existing`.
    Link {
        existing: RelPath,
        new: RelPath,
    },
    Chmod {
        path: RelPath,
        mode: u32,
    },
    /// `None` leaves that id unchanged (the syscall's -1).
    Chown {
        path: RelPath,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    SetXattr {
        path: RelPath,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u32,
    },
    RemoveXattr {
        path: RelPath,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
    },
    /// Set times; `None` leaves that time unchanged (UTIME_OMIT).
    SetTimes {
        path: RelPath,
        atime_ns: Option<i64>,
        mtime_ns: Option<i64>,
    },
    /// A durability point of the source: a restore point. `path` is None for sync/syncfs.
    Sync {
        path: Option<RelPath>,
        kind: SyncKind,
    },
    /// The current metadata of a path as read by the recorder; content follows as
    /// `ResyncData` records for regular files. `meta = None` means the path does not exist.
    Resync {
        path: RelPath,
        meta: Option<EntryMeta>,
    },
    /// Content read by the recorder (base, resync, or healing a `Dirty` range).
    ResyncData {
        path: RelPath,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Start of a base epoch: a resync of every entry follows, live changes interleaved.
    BaseBegin {
        base_id: u64,
    },
    /// End of a base epoch: replaying from its BaseBegin to here yields the source as of here.
    BaseEnd {
        base_id: u64,
    },
    /// `lost` records were lost (or not captured) for `reason`; the resync records that heal
    /// them follow, up to the matching `GapHealed`.
    Gap {
        lost: u64,
        reason: GapReason,
    },
    /// The resyncs that heal the gap recorded at `gap_seq` are complete.
    GapHealed {
        gap_seq: u64,
    },
    /// removexattr(2) by a path whose final symlink the kernel followed: the applier resolves
    /// it in the replica's state at this seq, as the kernel did (see [`XATTR_FOLLOW`]).
    RemoveXattrFollow {
        path: RelPath,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
    },
    /// chown(2) by a path whose final symlink the kernel followed (not lchown): as `Chown`, on
    /// what the symlink names in the replica's state at this seq.
    ChownFollow {
        path: RelPath,
        uid: Option<u32>,
        gid: Option<u32>,
    },
}

/// In `SetXattr::flags` (beside the kernel's XATTR_CREATE 1 and XATTR_REPLACE 2): the call named
/// a path whose final symlink the kernel followed (setxattr(2), not lsetxattr); the applier
/// resolves it in the replica's state at this seq. A recorder cannot resolve it itself: by the
/// time it converts the event, the symlink may be gone or point elsewhere.
pub const XATTR_FOLLOW: u32 = 1 << 31;

impl Op {
    /// A short, stable name of the operation kind (dump, metrics).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Write { .. } => "write",
            Op::Dirty { .. } => "dirty",
            Op::Truncate { .. } => "truncate",
            Op::Fallocate { .. } => "fallocate",
            Op::Create { .. } => "create",
            Op::Mknod { .. } => "mknod",
            Op::Mkdir { .. } => "mkdir",
            Op::Unlink { .. } => "unlink",
            Op::Rmdir { .. } => "rmdir",
            Op::Rename { .. } => "rename",
            Op::Symlink { .. } => "symlink",
            Op::Link { .. } => "link",
            Op::Chmod { .. } => "chmod",
            Op::Chown { .. } | Op::ChownFollow { .. } => "chown",
            Op::SetXattr { .. } => "setxattr",
            Op::RemoveXattr { .. } | Op::RemoveXattrFollow { .. } => "removexattr",
            Op::SetTimes { .. } => "settimes",
            Op::Sync { .. } => "sync",
            Op::Resync { .. } => "resync",
            Op::ResyncData { .. } => "resync_data",
            Op::BaseBegin { .. } => "base_begin",
            Op::BaseEnd { .. } => "base_end",
            Op::Gap { .. } => "gap",
            Op::GapHealed { .. } => "gap_healed",
        }
    }

    /// Every path the record names (the applier checks them before anything is applied; the
    /// recorder re-states them after a race).
    pub fn paths(&self) -> Vec<&RelPath> {
        match self {
            Op::Write { path, .. }
            | Op::Dirty { path, .. }
            | Op::Truncate { path, .. }
            | Op::Fallocate { path, .. }
            | Op::Create { path, .. }
            | Op::Mknod { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Unlink { path }
            | Op::Rmdir { path }
            | Op::Symlink { path, .. }
            | Op::Chmod { path, .. }
            | Op::Chown { path, .. }
            | Op::ChownFollow { path, .. }
            | Op::SetXattr { path, .. }
            | Op::RemoveXattr { path, .. }
            | Op::RemoveXattrFollow { path, .. }
            | Op::SetTimes { path, .. }
            | Op::Resync { path, .. }
            | Op::ResyncData { path, .. } => vec![path],
            Op::Rename { from, to, .. } => vec![from, to],
            Op::Link { existing, new } => vec![existing, new],
            Op::Sync { path, .. } => path.iter().collect(),
            Op::BaseBegin { .. } | Op::BaseEnd { .. } | Op::Gap { .. } | Op::GapHealed { .. } => {
                vec![]
            }
        }
    }

    /// Payload bytes carried (for accounting).
    pub fn payload_len(&self) -> usize {
        match self {
            Op::Write { data, .. } | Op::ResyncData { data, .. } => data.len(),
            Op::SetXattr { value, .. } => value.len(),
            _ => 0,
        }
    }
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Dense, gapless, starting at 1: the journal's total order.
    pub seq: u64,
    /// Wall-clock time of the event at the source, ns since the Unix epoch.
    pub time_ns: TimeNs,
    pub writer: Writer,
    pub op: Op,
}

/// A record before the journal has given it a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub time_ns: TimeNs,
    pub writer: Writer,
    pub op: Op,
}

impl Event {
    pub fn with_seq(self, seq: u64) -> Record {
        Record {
            seq,
            time_ns: self.time_ns,
            writer: self.writer,
            op: self.op,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpath_check_refuses_escapes() {
        let bad: &[(&[u8], PathError)] = &[
            (b"", PathError::Empty),
            (b"/etc/passwd", PathError::Absolute),
            (b"../x", PathError::DotDot),
            (b"a/../../x", PathError::DotDot),
            (b"a/./b", PathError::DotOrEmpty),
            (b"a//b", PathError::DotOrEmpty),
            (b"a/", PathError::DotOrEmpty),
            (b".", PathError::DotOrEmpty),
            (b"a\0b", PathError::Nul),
        ];
        for (p, e) in bad {
            assert_eq!(
                RelPath::new(*p).check(),
                Err(e.clone()),
                "{:?}",
                RelPath::new(*p)
            );
        }
        assert_eq!(
            RelPath::new(vec![b'a'; 256]).check(),
            Err(PathError::NameTooLong(256))
        );
        assert_eq!(
            RelPath::new(vec![b'a'; 4096]).check(),
            Err(PathError::TooLong(4096))
        );
        for ok in [
            &b"a"[..],
            b"a/b/c",
            b"..a",
            b"a..",
            b".hidden/x",
            b"\xff\xfe",
        ] {
            assert_eq!(RelPath::new(ok).check(), Ok(()));
        }
    }

    #[test]
    fn relpath_display_escapes_control_bytes() {
        assert_eq!(
            RelPath::new(&b"a\x1b[2Jb\xff"[..]).to_string(),
            "a\\u{1b}[2Jb\\xff"
        );
    }
}
