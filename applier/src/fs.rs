//! The replica directory as a [`Tree`]. Containment: every parent directory is resolved with
//! openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) from an O_PATH handle
//! of the root, and every last component is used through *at calls that do not follow symlinks
//! (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, unlinkat/renameat/linkat). Metadata of special files is set
//! through /proc/self/fd of an O_PATH|O_NOFOLLOW handle, so nothing is ever opened for I/O
//! except regular files and directories. No path from a record can reach outside the root.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use foxing_proto::record::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use foxing_proto::RelPath;
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;

use crate::tree::{NodeKind, Stat, Tree, TreeError, TreeResult};

pub struct FsTree {
    root_path: PathBuf,
    root: Arc<OwnedFd>,
    /// Regular files recently opened for writing, by path (at most WRITE_CACHE_FILES). Emptied by
    /// every call that can change what a name refers to (unlink, rmdir, rename), so a hit is
    /// always the file the name means.
    cached: std::collections::HashMap<RelPath, File>,
    /// O_PATH handles of directories resolved beneath the root, by path (at most
    /// DIR_CACHE_ENTRIES). Emptied by every call that can change what a directory path refers
    /// to (rmdir, rename), so a hit is always the directory the path means.
    dirs: std::collections::HashMap<Vec<u8>, Arc<OwnedFd>>,
}

fn err(e: Errno) -> TreeError {
    match e {
        Errno::NOENT => TreeError::NotFound,
        Errno::EXIST => TreeError::Exists,
        Errno::NOTDIR => TreeError::NotDir,
        Errno::ISDIR => TreeError::IsDir,
        Errno::NOTEMPTY => TreeError::NotEmpty,
        // RESOLVE_BENEATH / NO_SYMLINKS / O_NOFOLLOW refusals.
        Errno::LOOP | Errno::XDEV => {
            TreeError::Refused("the path goes through a symlink or leaves the root".into())
        }
        e => TreeError::Io(e.into()),
    }
}

/// Most files kept open for writing between records.
pub const WRITE_CACHE_FILES: usize = 64;
/// Most directory handles kept between records (parents of the paths being applied).
pub const DIR_CACHE_ENTRIES: usize = 256;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn nsec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

const UTIME_OMIT: i64 = (1 << 30) - 2;

impl FsTree {
    /// Opens the replica root (which must exist and be a directory).
    pub fn open(root: &Path) -> std::io::Result<FsTree> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(FsTree {
            root_path: root.to_path_buf(),
            root: Arc::new(fd),
            cached: std::collections::HashMap::new(),
            dirs: std::collections::HashMap::new(),
        })
    }

    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// syncfs on the replica's filesystem.
    pub fn syncfs(&self) -> std::io::Result<()> {
        Ok(rustix::fs::syncfs(self.sync_handle()?)?)
    }

    /// A handle of the root that syncfs accepts (the O_PATH root handle is not one).
    pub fn sync_handle(&self) -> std::io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// The O_PATH handle of `p`'s parent directory and `p`'s last component.
    fn parent<'a>(&mut self, p: &'a RelPath) -> TreeResult<(Parent, &'a OsStr)> {
        let b = p.as_bytes();
        match b.iter().rposition(|&c| c == b'/') {
            None => Ok((Parent(self.root.clone()), OsStr::from_bytes(b))),
            Some(i) => {
                let dir = &b[..i];
                let fd = match self.dirs.get(dir) {
                    Some(fd) => fd.clone(),
                    None => {
                        let fd = Arc::new(
                            rustix::fs::openat2(
                                &self.root,
                                OsStr::from_bytes(dir),
                                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                                Mode::empty(),
                                RESOLVE,
                            )
                            .map_err(err)?,
                        );
                        if self.dirs.len() >= DIR_CACHE_ENTRIES {
                            self.dirs.clear();
                        }
                        self.dirs.insert(dir.to_vec(), fd.clone());
                        fd
                    }
                };
                Ok((Parent(fd), OsStr::from_bytes(&b[i + 1..])))
            }
        }
    }

    fn lstat(&mut self, p: &RelPath) -> TreeResult<rustix::fs::Stat> {
        let (d, name) = self.parent(p)?;
        rustix::fs::statat(d.fd(), name, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
    }

    /// Opens a regular file for I/O, refusing anything else. The entry is looked at through an
    /// O_PATH handle first and reopened through that handle only when it is a regular file:
    /// opening a device node a journal planted runs its driver's open (a watchdog armed, a
    /// tape rewound, a terminal made the controlling one) before any check could refuse it.
    fn open_regular(&mut self, p: &RelPath, flags: OFlags) -> TreeResult<File> {
        let (fd, kind) = self.leaf(p)?;
        if kind != FileType::RegularFile {
            return Err(TreeError::Refused("not a regular file".into()));
        }
        // The same inode, whatever its name refers to by now.
        let f = rustix::fs::open(
            proc_path(&fd),
            flags | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        Ok(File::from(f))
    }

    /// The writable handle of regular file `p`, from the cache or freshly opened.
    fn writable(&mut self, p: &RelPath) -> TreeResult<&File> {
        if !self.cached.contains_key(p) {
            let f = self.open_regular(p, OFlags::WRONLY)?;
            if self.cached.len() >= WRITE_CACHE_FILES {
                self.cached.clear();
            }
            self.cached.insert(p.clone(), f);
        }
        self.cached.get(p).ok_or(TreeError::NotFound)
    }

    /// Forgets cached file handles (after a name may have changed what it refers to).
    fn forget(&mut self) {
        self.cached.clear();
    }

    /// Forgets cached file and directory handles (after a directory path may have changed).
    fn forget_dirs(&mut self) {
        self.cached.clear();
        self.dirs.clear();
    }

    /// An O_PATH handle of the entry itself (never following it) and its type.
    fn leaf(&mut self, p: &RelPath) -> TreeResult<(OwnedFd, FileType)> {
        let (d, name) = self.parent(p)?;
        let fd = rustix::fs::openat(
            d.fd(),
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let st = rustix::fs::fstat(&fd).map_err(err)?;
        Ok((fd, FileType::from_raw_mode(st.st_mode)))
    }
}

/// A directory handle beneath the root (the root itself or a cached one).
struct Parent(Arc<OwnedFd>);

impl Parent {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn proc_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl Tree for FsTree {
    fn stat(&mut self, p: &RelPath) -> TreeResult<Option<Stat>> {
        {
            if let Some(f) = self.cached.get(p) {
                let st = rustix::fs::fstat(f).map_err(err)?;
                return Ok(Some(Stat {
                    kind: NodeKind::Regular,
                    ino: st.st_ino,
                    size: st.st_size as u64,
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    nlink: st.st_nlink,
                    mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
                }));
            }
        }
        let st = match self.lstat(p) {
            Ok(st) => st,
            Err(TreeError::NotFound) | Err(TreeError::NotDir) => return Ok(None),
            Err(e) => return Err(e),
        };
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => NodeKind::Regular,
            FileType::Directory => NodeKind::Directory,
            FileType::Symlink => {
                let (d, name) = self.parent(p)?;
                let t = rustix::fs::readlinkat(d.fd(), name, Vec::new()).map_err(err)?;
                NodeKind::Symlink(t.into_bytes())
            }
            FileType::Fifo => NodeKind::Fifo,
            FileType::Socket => NodeKind::Socket,
            FileType::CharacterDevice => NodeKind::CharDevice(st.st_rdev),
            FileType::BlockDevice => NodeKind::BlockDevice(st.st_rdev),
            _ => NodeKind::Regular,
        };
        Ok(Some(Stat {
            kind,
            ino: st.st_ino,
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
        }))
    }

    fn create_file(&mut self, p: &RelPath, mode: u32) -> TreeResult<()> {
        let (d, name) = self.parent(p)?;
        let fd = rustix::fs::openat(
            d.fd(),
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o7777),
        )
        .map_err(err)?;
        // The new file is what the name means until a rename/unlink forgets it: keep it for the
        // writes and metadata records that usually follow a create.
        if self.cached.len() >= WRITE_CACHE_FILES {
            self.cached.clear();
        }
        self.cached.insert(p.clone(), File::from(fd));
        Ok(())
    }

    fn write_at(&mut self, p: &RelPath, offset: u64, data: &[u8]) -> TreeResult<()> {
        self.writable(p)?.write_all_at(data, offset)?;
        Ok(())
    }

    fn truncate(&mut self, p: &RelPath, size: u64) -> TreeResult<()> {
        self.writable(p)?.set_len(size)?;
        Ok(())
    }

    fn fallocate(&mut self, p: &RelPath, mode: u32, offset: u64, len: u64) -> TreeResult<()> {
        use foxing_proto::record::{
            FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE,
        };
        let f = self.writable(p)?;
        let flags = rustix::fs::FallocateFlags::from_bits_retain(mode);
        match rustix::fs::fallocate(f, flags, offset, len) {
            Ok(()) => Ok(()),
            // The replica's filesystem lacks the mode: write zeros / extend instead (same bytes).
            // Modes that move bytes have no such stand-in (the recorder journals their result
            // instead of the call): refuse rather than diverge.
            Err(Errno::OPNOTSUPP) if foxing_proto::record::shifts_bytes(mode) => {
                Err(TreeError::Refused(format!(
                    "fallocate mode {mode:#x} (collapse/insert range) is not supported by the replica's filesystem"
                )))
            }
            Err(Errno::OPNOTSUPP) => {
                let size = f.metadata()?.len();
                if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_WRITE_ZEROES) != 0 {
                    let end = (offset + len).min(size);
                    if offset < end {
                        f.write_all_at(&vec![0u8; (end - offset) as usize], offset)?;
                    }
                }
                if mode & FALLOC_FL_KEEP_SIZE == 0 && size < offset + len {
                    f.set_len(offset + len)?;
                }
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    fn mkdir(&mut self, p: &RelPath, mode: u32) -> TreeResult<()> {
        let (d, name) = self.parent(p)?;
        rustix::fs::mkdirat(d.fd(), name, Mode::from_raw_mode(mode & 0o7777)).map_err(err)
    }

    fn mknod(&mut self, p: &RelPath, kind: &NodeKind, mode: u32) -> TreeResult<()> {
        let (d, name) = self.parent(p)?;
        let (ft, dev) = match kind {
            NodeKind::Fifo => (FileType::Fifo, 0),
            NodeKind::Socket => (FileType::Socket, 0),
            NodeKind::CharDevice(r) => (FileType::CharacterDevice, *r),
            NodeKind::BlockDevice(r) => (FileType::BlockDevice, *r),
            _ => {
                return Err(TreeError::Refused(
                    "mknod of a regular file, directory or symlink".into(),
                ))
            }
        };
        rustix::fs::mknodat(d.fd(), name, ft, Mode::from_raw_mode(mode & 0o7777), dev).map_err(err)
    }

    fn symlink(&mut self, p: &RelPath, target: &[u8]) -> TreeResult<()> {
        let (d, name) = self.parent(p)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), d.fd(), name).map_err(err)
    }

    fn link(&mut self, existing: &RelPath, new: &RelPath) -> TreeResult<()> {
        let (d1, n1) = self.parent(existing)?;
        let (d2, n2) = self.parent(new)?;
        rustix::fs::linkat(d1.fd(), n1, d2.fd(), n2, AtFlags::empty()).map_err(err)
    }

    fn unlink(&mut self, p: &RelPath) -> TreeResult<()> {
        self.forget();
        let (d, name) = self.parent(p)?;
        rustix::fs::unlinkat(d.fd(), name, AtFlags::empty()).map_err(err)
    }

    fn rmdir(&mut self, p: &RelPath) -> TreeResult<()> {
        self.forget_dirs();
        let (d, name) = self.parent(p)?;
        rustix::fs::unlinkat(d.fd(), name, AtFlags::REMOVEDIR).map_err(err)
    }

    fn rename(&mut self, from: &RelPath, to: &RelPath, flags: u32) -> TreeResult<()> {
        self.forget_dirs();
        let (d1, n1) = self.parent(from)?;
        let (d2, n2) = self.parent(to)?;
        let mut f = RenameFlags::empty();
        if flags & RENAME_NOREPLACE != 0 {
            f |= RenameFlags::NOREPLACE;
        }
        if flags & RENAME_EXCHANGE != 0 {
            f |= RenameFlags::EXCHANGE;
        }
        rustix::fs::renameat_with(d1.fd(), n1, d2.fd(), n2, f).map_err(err)
    }

    fn chmod(&mut self, p: &RelPath, mode: u32) -> TreeResult<()> {
        if let Some(f) = self.cached.get(p) {
            return rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777)).map_err(err);
        }
        let (fd, ft) = self.leaf(p)?;
        if ft == FileType::Symlink {
            return Ok(()); // symlink modes are meaningless on Linux
        }
        rustix::fs::chmod(proc_path(&fd), Mode::from_raw_mode(mode & 0o7777)).map_err(err)
    }

    fn chown(&mut self, p: &RelPath, uid: Option<u32>, gid: Option<u32>) -> TreeResult<()> {
        let u = uid.map(rustix::fs::Uid::from_raw);
        let g = gid.map(rustix::fs::Gid::from_raw);
        if let Some(f) = self.cached.get(p) {
            return rustix::fs::fchown(f, u, g).map_err(err);
        }
        let (d, name) = self.parent(p)?;
        rustix::fs::chownat(d.fd(), name, u, g, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
    }

    fn set_xattr(&mut self, p: &RelPath, name: &[u8], value: &[u8]) -> TreeResult<()> {
        let (fd, ft) = self.leaf(p)?;
        if ft == FileType::Symlink {
            return Ok(());
        }
        rustix::fs::setxattr(
            proc_path(&fd),
            OsStr::from_bytes(name),
            value,
            XattrFlags::empty(),
        )
        .map_err(err)
    }

    fn remove_xattr(&mut self, p: &RelPath, name: &[u8]) -> TreeResult<()> {
        let (fd, ft) = self.leaf(p)?;
        if ft == FileType::Symlink {
            return Ok(());
        }
        match rustix::fs::removexattr(proc_path(&fd), OsStr::from_bytes(name)) {
            Ok(()) | Err(Errno::NODATA) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    fn list_xattrs(&mut self, p: &RelPath) -> TreeResult<Vec<Vec<u8>>> {
        let (fd, ft) = self.leaf(p)?;
        if ft == FileType::Symlink {
            return Ok(Vec::new());
        }
        let path = proc_path(&fd);
        let mut buf = vec![0u8; 4096];
        loop {
            match rustix::fs::listxattr(&path, &mut buf[..]) {
                Ok(n) => {
                    return Ok(buf[..n]
                        .split(|&c| c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.to_vec())
                        .collect())
                }
                Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(err(e)),
            }
        }
    }

    fn get_xattr(&mut self, p: &RelPath, name: &[u8]) -> TreeResult<Option<Vec<u8>>> {
        let (fd, ft) = self.leaf(p)?;
        if ft == FileType::Symlink {
            return Ok(None);
        }
        let path = proc_path(&fd);
        let mut buf = vec![0u8; 4096];
        loop {
            match rustix::fs::getxattr(&path, OsStr::from_bytes(name), &mut buf[..]) {
                Ok(n) => return Ok(Some(buf[..n].to_vec())),
                Err(Errno::NODATA) => return Ok(None),
                Err(Errno::RANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
                Err(e) => return Err(err(e)),
            }
        }
    }

    fn set_times(
        &mut self,
        p: &RelPath,
        atime_ns: Option<i64>,
        mtime_ns: Option<i64>,
    ) -> TreeResult<()> {
        let omit = Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT as _,
        };
        let ts = Timestamps {
            last_access: atime_ns.map(nsec).unwrap_or(omit),
            last_modification: mtime_ns.map(nsec).unwrap_or(omit),
        };
        if let Some(f) = self.cached.get(p) {
            return rustix::fs::futimens(f, &ts).map_err(err);
        }
        let (d, name) = self.parent(p)?;
        rustix::fs::utimensat(d.fd(), name, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
    }

    fn read_file(&mut self, p: &RelPath) -> TreeResult<Vec<u8>> {
        use std::io::Read;
        let mut f = self.open_regular(p, OFlags::RDONLY)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    }

    fn content_digest(&mut self, p: &RelPath) -> TreeResult<crate::snapshot::ContentDigest> {
        use crate::snapshot::{ContentDigest, DIGEST_BLOCK_BYTES};
        use rustix::fs::SeekFrom;
        let f = self.open_regular(p, OFlags::RDONLY)?;
        let size = rustix::fs::fstat(&f).map_err(err)?.st_size as u64;
        let mut d = ContentDigest {
            size,
            blocks: Vec::new(),
        };
        let mut buf = vec![0u8; DIGEST_BLOCK_BYTES as usize];
        let mut pos = 0u64;
        while pos < size {
            // The next data and the hole after it (a filesystem without SEEK_DATA reports
            // all of the file as data).
            let data = match rustix::fs::seek(&f, SeekFrom::Data(pos)) {
                Ok(o) => o,
                Err(Errno::NXIO) => break,
                Err(e) => return Err(err(e)),
            };
            let hole = rustix::fs::seek(&f, SeekFrom::Hole(data)).map_err(err)?;
            let mut block = data / DIGEST_BLOCK_BYTES;
            while block * DIGEST_BLOCK_BYTES < hole.min(size) {
                let at = block * DIGEST_BLOCK_BYTES;
                let mut n = 0;
                while n < buf.len() {
                    match rustix::io::pread(&f, &mut buf[n..], at + n as u64) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(Errno::INTR) => {}
                        Err(e) => return Err(err(e)),
                    }
                }
                d.add_block(block, &buf[..n]);
                block += 1;
            }
            pos = block * DIGEST_BLOCK_BYTES;
        }
        Ok(d)
    }

    fn follow(&mut self, p: &RelPath) -> TreeResult<Option<RelPath>> {
        // Symlinks inside the root are followed; any escape (absolute or `..` past the root)
        // fails with EXDEV and counts as "not beneath the root".
        let fd = match rustix::fs::openat2(
            &self.root,
            OsStr::from_bytes(p.as_bytes()),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(Errno::XDEV) | Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                return Ok(None)
            }
            Err(e) => return Err(err(e)),
        };
        let target = rustix::fs::readlink(proc_path(&fd), Vec::new())
            .map_err(err)?
            .into_bytes();
        let root = rustix::fs::readlink(proc_path(&self.root), Vec::new())
            .map_err(err)?
            .into_bytes();
        match target.strip_prefix(root.as_slice()) {
            Some(rest) if rest.first() == Some(&b'/') && rest.len() > 1 => {
                Ok(Some(RelPath::new(&rest[1..])))
            }
            _ => Ok(None),
        }
    }

    fn list_dir(&mut self, p: Option<&RelPath>) -> TreeResult<Vec<Vec<u8>>> {
        let fd = match p {
            None => rustix::fs::openat(
                &self.root,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)?,
            Some(p) => {
                let (d, name) = self.parent(p)?;
                rustix::fs::openat(
                    d.fd(),
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(err)?
            }
        };
        let mut out = Vec::new();
        let dir = rustix::fs::Dir::read_from(&fd).map_err(err)?;
        for e in dir {
            let e = e.map_err(err)?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(n.to_vec());
            }
        }
        out.sort();
        Ok(out)
    }
}
