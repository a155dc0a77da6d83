//! Rust mirrors of the records in bpf/foxing.h. `tests/layout.rs` compiles a C program with the
//! header and checks every offset and size against these.

pub const FX_COMM_LEN: usize = 16;
pub const FX_PATH_MAX: usize = 4096;
/// First byte of a path op's directory found under the watched root: the rest is its path
/// below the root (bpf/foxing.h).
pub const FX_DIR_ROOTED: u8 = 1;
pub const FX_PAYLOAD_MAX: usize = 256 * 1024;

pub const FX_OP_WRITE: u32 = 1;
pub const FX_OP_TRUNCATE: u32 = 2;
pub const FX_OP_FSYNC: u32 = 3;
pub const FX_OP_FDATASYNC: u32 = 4;
pub const FX_OP_CREATE: u32 = 5;
pub const FX_OP_FCHMOD: u32 = 6;
pub const FX_OP_FCHOWN: u32 = 7;
pub const FX_OP_FALLOCATE: u32 = 8;
pub const FX_OP_SYNC_FILE_RANGE: u32 = 9;
pub const FX_OP_SYNCFS: u32 = 10;
pub const FX_OP_SYNC: u32 = 11;
pub const FX_OP_FUTIMES: u32 = 12;
pub const FX_OP_FSETXATTR: u32 = 13;
pub const FX_OP_FREMOVEXATTR: u32 = 14;
pub const FX_OP_MMAP_SHARED: u32 = 15;
pub const FX_OP_PATH_UNLINK: u32 = 16;
pub const FX_OP_PATH_MKDIR: u32 = 17;
pub const FX_OP_PATH_RENAME: u32 = 18;
pub const FX_OP_PATH_LINK: u32 = 19;
pub const FX_OP_PATH_SYMLINK: u32 = 20;
pub const FX_OP_PATH_CHMOD: u32 = 21;
pub const FX_OP_PATH_CHOWN: u32 = 22;
pub const FX_OP_PATH_TRUNCATE: u32 = 23;
pub const FX_OP_PATH_UTIMES: u32 = 24;
pub const FX_OP_PATH_SETXATTR: u32 = 25;
pub const FX_OP_PATH_REMOVEXATTR: u32 = 26;
pub const FX_OP_PATH_MKNOD: u32 = 27;
pub const FX_OP_MSYNC: u32 = 28;
pub const FX_OP_DIRTY_MAPPED: u32 = 29;
pub const FX_OP_UNTRACKED: u32 = 30;
pub const FX_OP_PATH_MOUNT: u32 = 31;

pub const FX_F_INEXACT: u32 = 1;
pub const FX_F_TRUNC: u32 = 2;
pub const FX_F_CREATED: u32 = 4;
pub const FX_F_RMDIR: u32 = 8;
pub const FX_F_NOFOLLOW: u32 = 16;
pub const FX_F_ATIME_OMIT: u32 = 32;
pub const FX_F_ATIME_NOW: u32 = 64;
pub const FX_F_MTIME_OMIT: u32 = 128;
pub const FX_F_MTIME_NOW: u32 = 256;
pub const FX_F_CATCHALL: u32 = 512;
/// Another write to the inode was in flight: sent as a re-read range (with FX_F_INEXACT).
pub const FX_F_CONCURRENT: u32 = 1024;
/// A path op with an absolute name: `dev` is the caller's mount namespace (its 64-bit id, as
/// the NS_GET_MNTNS_ID ioctl gives it),
/// `ino` its root directory's inode; the recorder resolves the name in that view.
pub const FX_F_ABS_VIEW: u32 = 2048;
/// A write at the file position whose position another user of the same open file moved
/// meanwhile: where its bytes went is unknown; the recorder resyncs the whole file.
pub const FX_F_POS_UNKNOWN: u32 = 4096;
/// A rename or mount change ran between the moment the event's names were taken
/// (`seq_named`) and its seq: the two may be journaled in the other order than they happened.
pub const FX_F_PATH_RACY: u32 = 8192;
/// The inode had no name left when the event was taken (removed while open, or an O_TMPFILE
/// not linked yet): its change reaches no entry of the tree.
pub const FX_F_UNLINKED: u32 = 16384;
/// The file's dentry was unlinked (removed while open, an O_TMPFILE's "#ino" dentry): the
/// event's path names no entry or another file.
pub const FX_F_NAME_GONE: u32 = 32768;
/// The file has other names (i_nlink > 1, not a directory): a change through a name the
/// replica does not hold yet reaches them too.
pub const FX_F_LINKED: u32 = 65536;
/// The call failed but may have changed the file (fallocate: ext4 and xfs update mtime before
/// they validate a collapse or insert range; ext4 keeps the size a preallocation reached
/// before ENOSPC). The recorder re-states what such a failure can change.
pub const FX_F_FAILED: u32 = 131072;

/// `FX_OP_MMAP_SHARED`'s arg: the inode had dirty pages when it was mapped (stores to those
/// report nothing until writeback cleans them).
pub const FX_MMAP_DIRTY_PAGES: u64 = 1;
/// `FX_OP_MMAP_SHARED`'s arg: the inode was being written back when it was mapped.
pub const FX_MMAP_WRITEBACK: u64 = 2;

/// `struct fx_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FxEvent {
    pub seq: u64,
    pub time_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; FX_COMM_LEN],
    pub op: u32,
    pub flags: u32,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    pub len: u64,
    pub arg: u64,
    pub path_len: u32,
    pub data_len: u32,
    pub mode: u32,
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub umask: u32,
    /// `fx_seq` when the event's names were taken (file events: the path; path ops: syscall
    /// enter). See `FX_F_PATH_RACY`.
    pub seq_named: u64,
}

pub const FX_EVENT_LEN: usize = std::mem::size_of::<FxEvent>();

impl FxEvent {
    /// Reads the header from the start of a ring buffer record (bounds-checked, no alignment
    /// assumptions).
    pub fn parse(b: &[u8]) -> Option<FxEvent> {
        use std::mem::offset_of;
        if b.len() < FX_EVENT_LEN {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let mut comm = [0u8; FX_COMM_LEN];
        let c = offset_of!(FxEvent, comm);
        comm.copy_from_slice(&b[c..c + FX_COMM_LEN]);
        Some(FxEvent {
            seq: u64_at(offset_of!(FxEvent, seq)),
            time_ns: u64_at(offset_of!(FxEvent, time_ns)),
            pid: u32_at(offset_of!(FxEvent, pid)),
            tgid: u32_at(offset_of!(FxEvent, tgid)),
            uid: u32_at(offset_of!(FxEvent, uid)),
            gid: u32_at(offset_of!(FxEvent, gid)),
            cgroup_id: u64_at(offset_of!(FxEvent, cgroup_id)),
            comm,
            op: u32_at(offset_of!(FxEvent, op)),
            flags: u32_at(offset_of!(FxEvent, flags)),
            dev: u64_at(offset_of!(FxEvent, dev)),
            ino: u64_at(offset_of!(FxEvent, ino)),
            offset: u64_at(offset_of!(FxEvent, offset)),
            len: u64_at(offset_of!(FxEvent, len)),
            arg: u64_at(offset_of!(FxEvent, arg)),
            path_len: u32_at(offset_of!(FxEvent, path_len)),
            data_len: u32_at(offset_of!(FxEvent, data_len)),
            mode: u32_at(offset_of!(FxEvent, mode)),
            owner_uid: u32_at(offset_of!(FxEvent, owner_uid)),
            owner_gid: u32_at(offset_of!(FxEvent, owner_gid)),
            umask: u32_at(offset_of!(FxEvent, umask)),
            seq_named: u64_at(offset_of!(FxEvent, seq_named)),
        })
    }
}
