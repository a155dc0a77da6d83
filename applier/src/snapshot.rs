//! A comparable picture of a tree: kinds, content, modes, owners, symlink targets, xattrs and
//! hard-link groups. Used to prove convergence (replica == source).

use std::collections::BTreeMap;

use foxing_proto::RelPath;

use crate::tree::{join, NodeKind, Tree, TreeResult};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntrySnap {
    pub kind: NodeKind,
    pub content: Option<ContentDigest>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The first path (in sorted order) naming the same object, if this is a second name.
    pub link_of: Option<RelPath>,
    /// Compared only by [`diff_with_mtimes`].
    pub mtime_ns: i64,
}

/// Block size of [`ContentDigest`].
pub const DIGEST_BLOCK_BYTES: u64 = 64 * 1024;

/// A regular file's content as snapshots compare it: its size and the CRC32C of each
/// [`DIGEST_BLOCK_BYTES`] block (by index) that holds a non-zero byte. Holes and zero blocks
/// leave no entry, so where a filesystem keeps holes does not matter (a replica may store
/// zeros the source has as a hole), and a sparse file of any size costs memory and reads in
/// proportion to its data, not its size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentDigest {
    pub size: u64,
    pub blocks: Vec<(u64, u32)>,
}

impl ContentDigest {
    /// The digest of a whole content held in memory.
    pub fn of_bytes(data: &[u8]) -> ContentDigest {
        let mut d = ContentDigest {
            size: data.len() as u64,
            blocks: Vec::new(),
        };
        for (i, b) in data.chunks(DIGEST_BLOCK_BYTES as usize).enumerate() {
            d.add_block(i as u64, b);
        }
        d
    }

    /// Adds block `index` (blocks must come in increasing index order, each once).
    pub fn add_block(&mut self, index: u64, bytes: &[u8]) {
        debug_assert!(self.blocks.last().is_none_or(|&(i, _)| i < index));
        if bytes.iter().any(|&b| b != 0) {
            self.blocks.push((index, crc32c::crc32c(bytes)));
        }
    }

    /// One checksum of the whole digest, for messages.
    fn summary(&self) -> u32 {
        self.blocks.iter().fold(0, |c, &(i, b)| {
            let c = crc32c::crc32c_append(c, &i.to_le_bytes());
            crc32c::crc32c_append(c, &b.to_le_bytes())
        })
    }
}

/// Which xattr names a snapshot compares.
pub type XattrFilter = fn(&[u8]) -> bool;

/// Only `user.*` attributes (the kernel adds `security.*` ones of its own on some systems).
pub fn user_xattrs(name: &[u8]) -> bool {
    name.starts_with(b"user.")
}

/// Every attribute a replica must carry: `user.*`, `trusted.*`, POSIX ACLs and file
/// capabilities; not the security labels a replica's own LSM assigns (SELinux, IMA, EVM).
pub fn replicated_xattrs(name: &[u8]) -> bool {
    name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
        || name == b"security.capability"
}

pub fn snapshot(t: &mut dyn Tree, filter: XattrFilter) -> TreeResult<BTreeMap<RelPath, EntrySnap>> {
    let mut out = BTreeMap::new();
    let mut inos: BTreeMap<u64, RelPath> = BTreeMap::new();
    walk(t, filter, &mut out, &mut inos)?;
    Ok(out)
}

/// Pre-order, each directory's entries in list_dir order (the order decides which name of a
/// hard-link group is its first). Iterative: a tree may be deeper than any thread's stack.
fn walk(
    t: &mut dyn Tree,
    filter: XattrFilter,
    out: &mut BTreeMap<RelPath, EntrySnap>,
    inos: &mut BTreeMap<u64, RelPath>,
) -> TreeResult<()> {
    let mut pending: Vec<RelPath> = t
        .list_dir(None)?
        .iter()
        .rev()
        .map(|n| join(None, n))
        .collect();
    while let Some(p) = pending.pop() {
        let Some(st) = t.stat(&p)? else { continue };
        let link_of = if st.kind != NodeKind::Directory && st.nlink > 1 {
            match inos.get(&st.ino) {
                Some(first) => Some(first.clone()),
                None => {
                    inos.insert(st.ino, p.clone());
                    None
                }
            }
        } else {
            None
        };
        let content = if st.kind == NodeKind::Regular && link_of.is_none() {
            Some(t.content_digest(&p)?)
        } else {
            None
        };
        let mut xattrs = BTreeMap::new();
        if !matches!(st.kind, NodeKind::Symlink(_)) {
            for n in t.list_xattrs(&p)? {
                if filter(&n) {
                    if let Some(v) = t.get_xattr(&p, &n)? {
                        xattrs.insert(n, v);
                    }
                }
            }
        }
        let is_dir = st.kind == NodeKind::Directory;
        let mode = if matches!(st.kind, NodeKind::Symlink(_)) {
            0
        } else {
            st.mode
        };
        out.insert(
            p.clone(),
            EntrySnap {
                kind: st.kind,
                content,
                mode,
                uid: st.uid,
                gid: st.gid,
                xattrs,
                link_of,
                mtime_ns: st.mtime_ns,
            },
        );
        if is_dir {
            let names = t.list_dir(Some(&p))?;
            pending.extend(names.iter().rev().map(|n| join(Some(&p), n)));
        }
    }
    Ok(())
}

fn short(e: &EntrySnap) -> String {
    let content = e
        .content
        .as_ref()
        .map(|c| {
            format!(
                "{} bytes ({} non-zero blocks, digest {:08x})",
                c.size,
                c.blocks.len(),
                c.summary()
            )
        })
        .unwrap_or_else(|| "-".into());
    format!(
        "{:?} content={} mode={:o} uid={} gid={} xattrs={} link_of={:?}",
        e.kind,
        content,
        e.mode,
        e.uid,
        e.gid,
        e.xattrs.len(),
        e.link_of
    )
}

/// Human-readable differences between two snapshots (empty when identical).
/// Modification times are not compared (see [`diff_with_mtimes`]).
pub fn diff(a: &BTreeMap<RelPath, EntrySnap>, b: &BTreeMap<RelPath, EntrySnap>) -> Vec<String> {
    diff_inner(a, b, false)
}

/// Like [`diff`], and modification times must be equal too (to the nanosecond).
pub fn diff_with_mtimes(
    a: &BTreeMap<RelPath, EntrySnap>,
    b: &BTreeMap<RelPath, EntrySnap>,
) -> Vec<String> {
    diff_inner(a, b, true)
}

fn diff_inner(
    a: &BTreeMap<RelPath, EntrySnap>,
    b: &BTreeMap<RelPath, EntrySnap>,
    mtimes: bool,
) -> Vec<String> {
    let mut d = Vec::new();
    for (p, ea) in a {
        match b.get(p) {
            None => d.push(format!("{p}: only in the first tree")),
            Some(eb) => {
                let same = EntrySnap {
                    mtime_ns: ea.mtime_ns,
                    ..eb.clone()
                } == *ea;
                if !same {
                    d.push(format!("{p}: {} != {}", short(ea), short(eb)));
                } else if mtimes && ea.mtime_ns != eb.mtime_ns {
                    d.push(format!(
                        "{p}: mtime {} != {}",
                        foxing_proto::time::fmt_time_ns(ea.mtime_ns.max(0) as u64),
                        foxing_proto::time::fmt_time_ns(eb.mtime_ns.max(0) as u64)
                    ));
                }
            }
        }
    }
    for p in b.keys() {
        if !a.contains_key(p) {
            d.push(format!("{p}: only in the second tree"));
        }
    }
    d
}
