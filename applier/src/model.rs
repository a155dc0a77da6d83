//! An in-memory [`Tree`] with POSIX-like semantics (hard links, symlinks never followed, rename
//! rules), used as the reference in property tests.

use std::collections::{BTreeMap, HashMap};

use foxing_proto::record::{RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT};
use foxing_proto::RelPath;

use crate::tree::{NodeKind, Stat, Tree, TreeError, TreeResult};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inode {
    kind: NodeKind,
    data: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    atime_ns: i64,
    mtime_ns: i64,
}

#[derive(Clone, Debug)]
pub struct ModelTree {
    inodes: HashMap<u64, Inode>,
    dirs: HashMap<u64, BTreeMap<Vec<u8>, u64>>,
    root: u64,
    next_ino: u64,
}

impl Default for ModelTree {
    fn default() -> Self {
        let mut m = ModelTree {
            inodes: HashMap::new(),
            dirs: HashMap::new(),
            root: 1,
            next_ino: 2,
        };
        m.inodes.insert(1, Inode::new(NodeKind::Directory, 0o755));
        m.dirs.insert(1, BTreeMap::new());
        m
    }
}

impl Inode {
    fn new(kind: NodeKind, mode: u32) -> Inode {
        Inode {
            kind,
            data: Vec::new(),
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            xattrs: BTreeMap::new(),
            atime_ns: 0,
            mtime_ns: 0,
        }
    }
}

impl ModelTree {
    fn split(p: &RelPath) -> (Vec<&[u8]>, &[u8]) {
        let comps: Vec<&[u8]> = p.0.split(|&c| c == b'/').collect();
        let (last, parents) = comps
            .split_last()
            .map(|(l, ps)| (*l, ps.to_vec()))
            .unwrap_or((&[][..], Vec::new()));
        (parents, last)
    }

    /// The directory inode holding `p`'s last component.
    fn parent(&self, p: &RelPath) -> TreeResult<(u64, Vec<u8>)> {
        let (parents, last) = Self::split(p);
        let mut cur = self.root;
        for c in parents {
            let next = *self
                .dirs
                .get(&cur)
                .and_then(|d| d.get(c))
                .ok_or(TreeError::NotFound)?;
            match &self.inodes[&next].kind {
                NodeKind::Directory => cur = next,
                NodeKind::Symlink(_) => {
                    return Err(TreeError::Refused("symlink in the path".into()))
                }
                _ => return Err(TreeError::NotDir),
            }
        }
        Ok((cur, last.to_vec()))
    }

    fn lookup(&self, p: &RelPath) -> TreeResult<Option<u64>> {
        match self.parent(p) {
            Ok((d, name)) => Ok(self.dirs[&d].get(&name).copied()),
            Err(TreeError::NotFound) | Err(TreeError::NotDir) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn existing(&self, p: &RelPath) -> TreeResult<u64> {
        self.lookup(p)?.ok_or(TreeError::NotFound)
    }

    fn add(&mut self, p: &RelPath, mut inode: Inode) -> TreeResult<u64> {
        let (d, name) = self.parent(p)?;
        if self.dirs[&d].contains_key(&name) {
            return Err(TreeError::Exists);
        }
        // As Linux (inode_init_owner): in a setgid directory a new entry takes the directory's
        // group, and a new directory its setgid bit.
        if let Some(dir) = self.inodes.get(&d).filter(|i| i.mode & 0o2000 != 0) {
            inode.gid = dir.gid;
            if inode.kind == NodeKind::Directory {
                inode.mode |= 0o2000;
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        if inode.kind == NodeKind::Directory {
            self.dirs.insert(ino, BTreeMap::new());
        }
        self.inodes.insert(ino, inode);
        self.dirs
            .get_mut(&d)
            .ok_or(TreeError::NotFound)?
            .insert(name, ino);
        Ok(ino)
    }

    fn drop_link(&mut self, ino: u64) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.nlink -= 1;
            if i.nlink == 0 {
                self.inodes.remove(&ino);
                self.dirs.remove(&ino);
            }
        }
    }

    fn is_ancestor(&self, anc: u64, mut d: u64) -> bool {
        // Walk up by searching parents (the model has no parent pointers; trees are small).
        loop {
            if d == anc {
                return true;
            }
            match self.dirs.iter().find(|(_, e)| e.values().any(|&v| v == d)) {
                Some((&p, _)) => d = p,
                None => return false,
            }
        }
    }

    fn file_mut(&mut self, p: &RelPath) -> TreeResult<&mut Inode> {
        let ino = self.existing(p)?;
        let i = self.inodes.get_mut(&ino).ok_or(TreeError::NotFound)?;
        match i.kind {
            NodeKind::Regular => Ok(i),
            NodeKind::Directory => Err(TreeError::IsDir),
            _ => Err(TreeError::Refused("not a regular file".into())),
        }
    }
}

impl Tree for ModelTree {
    fn stat(&mut self, p: &RelPath) -> TreeResult<Option<Stat>> {
        Ok(self.lookup(p)?.map(|ino| {
            let i = &self.inodes[&ino];
            Stat {
                kind: i.kind.clone(),
                ino,
                size: if i.kind == NodeKind::Regular {
                    i.data.len() as u64
                } else {
                    0
                },
                mode: i.mode,
                uid: i.uid,
                gid: i.gid,
                nlink: i.nlink,
                mtime_ns: 0,
            }
        }))
    }

    fn create_file(&mut self, p: &RelPath, mode: u32) -> TreeResult<()> {
        self.add(p, Inode::new(NodeKind::Regular, mode & 0o7777))
            .map(|_| ())
    }

    fn write_at(&mut self, p: &RelPath, offset: u64, data: &[u8]) -> TreeResult<()> {
        let f = self.file_mut(p)?;
        let end = offset as usize + data.len();
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn truncate(&mut self, p: &RelPath, size: u64) -> TreeResult<()> {
        if let Some(ino) = self.lookup(p)? {
            if matches!(self.inodes[&ino].kind, NodeKind::Symlink(_)) {
                return match self.follow(p)? {
                    Some(t) if t != *p => self.truncate(&t, size),
                    _ => Err(TreeError::NotFound),
                };
            }
        }
        self.file_mut(p)?.data.resize(size as usize, 0);
        Ok(())
    }

    fn fallocate(&mut self, p: &RelPath, mode: u32, offset: u64, len: u64) -> TreeResult<()> {
        use foxing_proto::record::{
            FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE,
        };
        if foxing_proto::record::shifts_bytes(mode) {
            // As tmpfs: the recorder journals these modes' results, never the calls.
            return Err(TreeError::Refused(format!(
                "fallocate mode {mode:#x} (collapse/insert range) is not supported"
            )));
        }
        let f = self.file_mut(p)?;
        let end = (offset + len) as usize;
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_WRITE_ZEROES) != 0 {
            let stop = end.min(f.data.len());
            if (offset as usize) < stop {
                f.data[offset as usize..stop].fill(0);
            }
        }
        if !keep && f.data.len() < end {
            f.data.resize(end, 0);
        }
        Ok(())
    }

    fn mkdir(&mut self, p: &RelPath, mode: u32) -> TreeResult<()> {
        self.add(p, Inode::new(NodeKind::Directory, mode & 0o7777))
            .map(|_| ())
    }

    fn mknod(&mut self, p: &RelPath, kind: &NodeKind, mode: u32) -> TreeResult<()> {
        self.add(p, Inode::new(kind.clone(), mode & 0o7777))
            .map(|_| ())
    }

    fn symlink(&mut self, p: &RelPath, target: &[u8]) -> TreeResult<()> {
        self.add(p, Inode::new(NodeKind::Symlink(target.to_vec()), 0o777))
            .map(|_| ())
    }

    fn link(&mut self, existing: &RelPath, new: &RelPath) -> TreeResult<()> {
        let ino = self.existing(existing)?;
        if self.inodes[&ino].kind == NodeKind::Directory {
            return Err(TreeError::IsDir);
        }
        let (d, name) = self.parent(new)?;
        if self.dirs[&d].contains_key(&name) {
            return Err(TreeError::Exists);
        }
        self.dirs
            .get_mut(&d)
            .ok_or(TreeError::NotFound)?
            .insert(name, ino);
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.nlink += 1;
        }
        Ok(())
    }

    fn unlink(&mut self, p: &RelPath) -> TreeResult<()> {
        let (d, name) = self.parent(p)?;
        let ino = *self.dirs[&d].get(&name).ok_or(TreeError::NotFound)?;
        if self.inodes[&ino].kind == NodeKind::Directory {
            return Err(TreeError::IsDir);
        }
        self.dirs
            .get_mut(&d)
            .ok_or(TreeError::NotFound)?
            .remove(&name);
        self.drop_link(ino);
        Ok(())
    }

    fn rmdir(&mut self, p: &RelPath) -> TreeResult<()> {
        let (d, name) = self.parent(p)?;
        let ino = *self.dirs[&d].get(&name).ok_or(TreeError::NotFound)?;
        if self.inodes[&ino].kind != NodeKind::Directory {
            return Err(TreeError::NotDir);
        }
        if !self.dirs[&ino].is_empty() {
            return Err(TreeError::NotEmpty);
        }
        self.dirs
            .get_mut(&d)
            .ok_or(TreeError::NotFound)?
            .remove(&name);
        self.drop_link(ino);
        Ok(())
    }

    fn rename(&mut self, from: &RelPath, to: &RelPath, flags: u32) -> TreeResult<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        let src = *self.dirs[&fd].get(&fname).ok_or(TreeError::NotFound)?;
        let dst = self.dirs[&td].get(&tname).copied();
        if src == dst.unwrap_or(0) {
            return Ok(()); // same object: rename(2) does nothing
        }
        let src_dir = self.inodes[&src].kind == NodeKind::Directory;
        if src_dir && self.is_ancestor(src, td) {
            return Err(TreeError::Refused(
                "cannot move a directory into itself".into(),
            ));
        }
        if flags & RENAME_EXCHANGE != 0 && flags & RENAME_WHITEOUT != 0 {
            return Err(TreeError::Refused(
                "RENAME_EXCHANGE with RENAME_WHITEOUT".into(),
            ));
        }
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(TreeError::NotFound)?;
            if self.inodes[&dst].kind == NodeKind::Directory && self.is_ancestor(dst, fd) {
                return Err(TreeError::Refused(
                    "cannot move a directory into itself".into(),
                ));
            }
            self.dirs
                .get_mut(&fd)
                .ok_or(TreeError::NotFound)?
                .insert(fname, dst);
            self.dirs
                .get_mut(&td)
                .ok_or(TreeError::NotFound)?
                .insert(tname, src);
            return Ok(());
        }
        if let Some(dst) = dst {
            if flags & RENAME_NOREPLACE != 0 {
                return Err(TreeError::Exists);
            }
            let dst_dir = self.inodes[&dst].kind == NodeKind::Directory;
            match (src_dir, dst_dir) {
                (true, false) => return Err(TreeError::NotDir),
                (false, true) => return Err(TreeError::IsDir),
                (true, true) if !self.dirs[&dst].is_empty() => return Err(TreeError::NotEmpty),
                _ => {}
            }
            self.drop_link(dst);
        }
        self.dirs
            .get_mut(&fd)
            .ok_or(TreeError::NotFound)?
            .remove(&fname);
        self.dirs
            .get_mut(&td)
            .ok_or(TreeError::NotFound)?
            .insert(tname, src);
        if flags & RENAME_WHITEOUT != 0 {
            // As Linux: a whiteout (0:0 character device, mode 0) takes the old name.
            self.add(from, Inode::new(NodeKind::CharDevice(0), 0))?;
        }
        Ok(())
    }

    fn chmod(&mut self, p: &RelPath, mode: u32) -> TreeResult<()> {
        // As Linux: chmod of a symlink acts on what it leads to.
        let ino = self.existing(p)?;
        if matches!(self.inodes[&ino].kind, NodeKind::Symlink(_)) {
            return match self.follow(p)? {
                Some(t) if t != *p => self.chmod(&t, mode),
                _ => Err(TreeError::NotFound),
            };
        }
        if let Some(i) = self.inodes.get_mut(&ino) {
            if !matches!(i.kind, NodeKind::Symlink(_)) {
                i.mode = mode & 0o7777;
            }
        }
        Ok(())
    }

    fn chown(&mut self, p: &RelPath, uid: Option<u32>, gid: Option<u32>) -> TreeResult<()> {
        let ino = self.existing(p)?;
        if let Some(i) = self.inodes.get_mut(&ino) {
            if let Some(u) = uid {
                i.uid = u;
            }
            if let Some(g) = gid {
                i.gid = g;
            }
            // As Linux: chown of a non-directory clears setuid, and setgid when group-executable.
            if i.kind != NodeKind::Directory
                && !matches!(i.kind, NodeKind::Symlink(_))
                && (uid.is_some() || gid.is_some())
            {
                i.mode &= !0o4000;
                if i.mode & 0o010 != 0 {
                    i.mode &= !0o2000;
                }
            }
        }
        Ok(())
    }

    fn set_xattr(&mut self, p: &RelPath, name: &[u8], value: &[u8]) -> TreeResult<()> {
        let ino = self.existing(p)?;
        // As Linux (xattr_permission): user.* only on regular files and directories.
        let kind = &self.inodes[&ino].kind;
        if name.starts_with(b"user.") && !matches!(kind, NodeKind::Regular | NodeKind::Directory) {
            return Err(TreeError::Io(std::io::Error::from_raw_os_error(
                libc::EPERM,
            )));
        }
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.xattrs.insert(name.to_vec(), value.to_vec());
        }
        Ok(())
    }

    fn remove_xattr(&mut self, p: &RelPath, name: &[u8]) -> TreeResult<()> {
        let ino = self.existing(p)?;
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.xattrs.remove(name);
        }
        Ok(())
    }

    fn list_xattrs(&mut self, p: &RelPath) -> TreeResult<Vec<Vec<u8>>> {
        let ino = self.existing(p)?;
        Ok(self.inodes[&ino].xattrs.keys().cloned().collect())
    }

    fn get_xattr(&mut self, p: &RelPath, name: &[u8]) -> TreeResult<Option<Vec<u8>>> {
        let ino = self.existing(p)?;
        Ok(self.inodes[&ino].xattrs.get(name).cloned())
    }

    fn set_times(
        &mut self,
        p: &RelPath,
        atime_ns: Option<i64>,
        mtime_ns: Option<i64>,
    ) -> TreeResult<()> {
        let ino = self.existing(p)?;
        if let Some(i) = self.inodes.get_mut(&ino) {
            if let Some(a) = atime_ns {
                i.atime_ns = a;
            }
            if let Some(m) = mtime_ns {
                i.mtime_ns = m;
            }
        }
        Ok(())
    }

    fn read_file(&mut self, p: &RelPath) -> TreeResult<Vec<u8>> {
        Ok(self.file_mut(p)?.data.clone())
    }

    fn follow(&mut self, p: &RelPath) -> TreeResult<Option<RelPath>> {
        // Resolve component by component, following relative symlinks; absolute ones or `..`
        // past the root leave it.
        let mut pending: Vec<Vec<u8>> =
            p.0.split(|&c| c == b'/')
                .rev()
                .map(|c| c.to_vec())
                .collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if done.pop().is_none() {
                        return Ok(None);
                    }
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let cur = RelPath::new(done.join(&b'/'));
            let Some(ino) = self.lookup(&cur).unwrap_or(None) else {
                return Ok(None);
            };
            if let NodeKind::Symlink(t) = &self.inodes[&ino].kind {
                hops += 1;
                if hops > 40 || t.first() == Some(&b'/') {
                    return Ok(None);
                }
                done.pop();
                pending.extend(t.split(|&c| c == b'/').rev().map(|c| c.to_vec()));
            }
        }
        Ok((!done.is_empty()).then(|| RelPath::new(done.join(&b'/'))))
    }

    fn list_dir(&mut self, p: Option<&RelPath>) -> TreeResult<Vec<Vec<u8>>> {
        let ino = match p {
            None => self.root,
            Some(p) => self.existing(p)?,
        };
        Ok(self
            .dirs
            .get(&ino)
            .ok_or(TreeError::NotDir)?
            .keys()
            .cloned()
            .collect())
    }
}
