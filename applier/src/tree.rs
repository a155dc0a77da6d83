//! The primitives the apply logic needs from a tree. Two implementations: [`crate::fs::FsTree`]
//! (a real directory, every path resolved beneath its root) and [`crate::model::ModelTree`] (in
//! memory, for property tests). Paths given to a `Tree` have passed [`RelPath::check`].

use foxing_proto::record::EntryKind;
use foxing_proto::RelPath;

/// What `lstat` tells the apply logic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: NodeKind,
    /// Identity of the object within this tree (inode number), to recognize hard links.
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    /// Modification time (ns since the epoch); 0 where the tree does not keep times.
    pub mtime_ns: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Regular,
    Directory,
    Symlink(Vec<u8>),
    Fifo,
    Socket,
    CharDevice(u64),
    BlockDevice(u64),
}

impl NodeKind {
    pub fn from_entry(k: &EntryKind) -> NodeKind {
        match k {
            EntryKind::Regular => NodeKind::Regular,
            EntryKind::Directory => NodeKind::Directory,
            EntryKind::Symlink { target } => NodeKind::Symlink(target.clone()),
            EntryKind::Fifo => NodeKind::Fifo,
            EntryKind::Socket => NodeKind::Socket,
            EntryKind::CharDevice { rdev } => NodeKind::CharDevice(*rdev),
            EntryKind::BlockDevice { rdev } => NodeKind::BlockDevice(*rdev),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    /// The path would leave the root (symlink on the way, absolute, `..`): refused, never retried.
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type TreeResult<T> = Result<T, TreeError>;

pub trait Tree {
    /// lstat: `None` if the path does not exist (or its parent does not).
    fn stat(&mut self, p: &RelPath) -> TreeResult<Option<Stat>>;
    /// Creates an empty regular file; fails with Exists if the name is taken.
    fn create_file(&mut self, p: &RelPath, mode: u32) -> TreeResult<()>;
    fn write_at(&mut self, p: &RelPath, offset: u64, data: &[u8]) -> TreeResult<()>;
    fn truncate(&mut self, p: &RelPath, size: u64) -> TreeResult<()>;
    fn fallocate(&mut self, p: &RelPath, mode: u32, offset: u64, len: u64) -> TreeResult<()>;
    fn mkdir(&mut self, p: &RelPath, mode: u32) -> TreeResult<()>;
    fn mknod(&mut self, p: &RelPath, kind: &NodeKind, mode: u32) -> TreeResult<()>;
    fn symlink(&mut self, p: &RelPath, target: &[u8]) -> TreeResult<()>;
    fn link(&mut self, existing: &RelPath, new: &RelPath) -> TreeResult<()>;
    fn unlink(&mut self, p: &RelPath) -> TreeResult<()>;
    fn rmdir(&mut self, p: &RelPath) -> TreeResult<()>;
    /// renameat2 with RENAME_* flags.
    fn rename(&mut self, from: &RelPath, to: &RelPath, flags: u32) -> TreeResult<()>;
    /// Permission bits; not applied to symlinks.
    fn chmod(&mut self, p: &RelPath, mode: u32) -> TreeResult<()>;
    /// lchown; `None` leaves that id.
    fn chown(&mut self, p: &RelPath, uid: Option<u32>, gid: Option<u32>) -> TreeResult<()>;
    fn set_xattr(&mut self, p: &RelPath, name: &[u8], value: &[u8]) -> TreeResult<()>;
    fn remove_xattr(&mut self, p: &RelPath, name: &[u8]) -> TreeResult<()>;
    fn list_xattrs(&mut self, p: &RelPath) -> TreeResult<Vec<Vec<u8>>>;
    /// Times in ns since the epoch; `None` leaves that time (lutimes: symlinks themselves).
    fn set_times(
        &mut self,
        p: &RelPath,
        atime_ns: Option<i64>,
        mtime_ns: Option<i64>,
    ) -> TreeResult<()>;
    fn get_xattr(&mut self, p: &RelPath, name: &[u8]) -> TreeResult<Option<Vec<u8>>>;
    /// Whole content of a regular file (comparisons and tests).
    fn read_file(&mut self, p: &RelPath) -> TreeResult<Vec<u8>>;
    /// A regular file's content as snapshots compare it (what [`Tree::read_file`] returns,
    /// digested; a filesystem reads only the data between its holes).
    fn content_digest(&mut self, p: &RelPath) -> TreeResult<crate::snapshot::ContentDigest> {
        Ok(crate::snapshot::ContentDigest::of_bytes(
            &self.read_file(p)?,
        ))
    }
    /// Where `p` leads when its symlinks are followed, if that stays beneath the root and
    /// exists (what chmod(2) or truncate(2) of `p` acted on at the source).
    fn follow(&mut self, p: &RelPath) -> TreeResult<Option<RelPath>>;
    /// Names in a directory (`None` = the root).
    fn list_dir(&mut self, p: Option<&RelPath>) -> TreeResult<Vec<Vec<u8>>>;
}

/// `parent/name` as a RelPath.
pub fn join(parent: Option<&RelPath>, name: &[u8]) -> RelPath {
    match parent {
        None => RelPath::new(name.to_vec()),
        Some(p) => {
            let mut v = p.0.clone();
            v.push(b'/');
            v.extend_from_slice(name);
            RelPath(v)
        }
    }
}

/// Removes `p` whatever it is, directories and all they hold. Absent is fine. Iterative: a
/// tree may be deeper than any thread's stack (stress-ng's dirdeep goes past 2,000 levels).
pub fn remove_all(t: &mut dyn Tree, p: &RelPath) -> TreeResult<()> {
    // (path, listed): a listed directory is removed once everything pushed above it is gone.
    let mut stack: Vec<(RelPath, bool)> = vec![(p.clone(), false)];
    while let Some((q, listed)) = stack.pop() {
        let r = if listed {
            t.rmdir(&q)
        } else {
            match t.stat(&q)? {
                None => Ok(()),
                Some(s) if s.kind == NodeKind::Directory => {
                    let names = t.list_dir(Some(&q))?;
                    stack.push((q.clone(), true));
                    stack.extend(names.iter().map(|n| (join(Some(&q), n), false)));
                    Ok(())
                }
                Some(_) => t.unlink(&q),
            }
        };
        match r {
            Ok(()) | Err(TreeError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
