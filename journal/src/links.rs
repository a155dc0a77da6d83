//! Where the source's symlinks pointed, in the order the kernel changed them: the recorder's
//! answer to "which file did a call through this symlink change?" when the symlink is gone by
//! the time the call is converted.
//!
//! A call that follows a final symlink (chmod, chown, truncate, xattrs and times by path) is
//! journaled on the symlink's name and followed by the applier in the replica's state at its
//! seq. Inside a gap window the replica may not have that symlink at that seq (its name waits
//! to be re-stated, or was re-stated from a later state of the source, when it was already
//! removed): the applier skips the call, and its target, another name, is re-stated only if the
//! recorder queues it. Reading the source when converting the call fails once the symlink is
//! removed (regression: the namespace workload under load, a setxattr through `ns/a ->
//! target-2031` followed by `unlink ns/a`, left the target without its xattr on the replica).
//!
//! So the recorder keeps, per path, the target of every symlink it has seen: made by a live
//! event (in seq order, with renames, links and removals) or read by a base or re-statement.
//! Reads only add: a read is of a later state than the live events still in the ring, and a
//! removal it saw must not hide what a call before it followed. A stale entry costs at most the
//! re-statement of a name that did not change. Pure logic; the recorder feeds it.

use std::collections::BTreeMap;

use foxing_proto::record::{EntryKind, RENAME_EXCHANGE};
use foxing_proto::{Op, RelPath};

/// Symlinks remembered at most. Past it, new ones are not: a miss then proves nothing, and the
/// recorder falls back to a base where it would have relied on one (see [`SymlinkTargets::complete`]).
pub const SYMLINK_TARGETS_MAX_ENTRIES: usize = 1 << 20;

/// Symlinks followed in a chain at most, as the kernel's MAXSYMLINKS.
pub const SYMLINK_HOPS_MAX: usize = 40;

/// Path → symlink target (bytes as readlink returns them).
#[derive(Debug, Default)]
pub struct SymlinkTargets {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Some symlink was not remembered ([`SYMLINK_TARGETS_MAX_ENTRIES`]).
    refused: bool,
}

/// The keys at `p` and below it: `p` itself, then `p/...` (contiguous in byte order, up to
/// `p0`, '0' being '/' + 1).
fn subtree_keys(map: &BTreeMap<Vec<u8>, Vec<u8>>, p: &[u8]) -> Vec<Vec<u8>> {
    let mut lo = p.to_vec();
    lo.push(b'/');
    let mut hi = p.to_vec();
    hi.push(b'0');
    map.get_key_value(p)
        .map(|(k, _)| k.clone())
        .into_iter()
        .chain(map.range(lo..hi).map(|(k, _)| k.clone()))
        .collect()
}

impl SymlinkTargets {
    /// Every symlink seen is remembered (none was refused for room).
    pub fn complete(&self) -> bool {
        !self.refused
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn insert(&mut self, path: Vec<u8>, target: Vec<u8>) {
        if self.map.len() >= SYMLINK_TARGETS_MAX_ENTRIES && !self.map.contains_key(&path) {
            self.refused = true;
            return;
        }
        self.map.insert(path, target);
    }

    fn take_subtree(&mut self, p: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        subtree_keys(&self.map, p)
            .into_iter()
            .filter_map(|k| self.map.remove_entry(&k))
            .collect()
    }

    fn put_under(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>, from: &[u8], to: &[u8]) {
        for (k, v) in entries {
            let mut n = to.to_vec();
            n.extend_from_slice(&k[from.len()..]);
            self.insert(n, v);
        }
    }

    /// A record made by a live event (converted from the kernel's, in seq order).
    pub fn live(&mut self, op: &Op) {
        match op {
            Op::Symlink { path, target, .. } => {
                self.insert(path.as_bytes().to_vec(), target.clone())
            }
            Op::Rename { from, to, flags } => {
                let (f, t) = (from.as_bytes(), to.as_bytes());
                if f == t {
                    return;
                }
                if flags & RENAME_EXCHANGE != 0 {
                    let a = self.take_subtree(f);
                    let b = self.take_subtree(t);
                    self.put_under(a, f, t);
                    self.put_under(b, t, f);
                    return;
                }
                // Two names of one inode: the kernel does nothing. Both stay (a stale `from`
                // costs a needless re-statement at most; losing it could cost a target).
                if let (Some(a), Some(b)) = (self.map.get(f), self.map.get(t)) {
                    if a == b {
                        return;
                    }
                }
                let moved = self.take_subtree(f);
                self.take_subtree(t);
                self.put_under(moved, f, t);
            }
            Op::Link { existing, new } => {
                self.take_subtree(new.as_bytes());
                if let Some(t) = self.map.get(existing.as_bytes()).cloned() {
                    self.insert(new.as_bytes().to_vec(), t);
                }
            }
            Op::Unlink { path }
            | Op::Rmdir { path }
            | Op::Create { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Mknod { path, .. }
            | Op::Resync { path, meta: None } => {
                self.take_subtree(path.as_bytes());
            }
            Op::Resync {
                path,
                meta: Some(m),
            } => self.read_meta(path, &m.kind),
            _ => {}
        }
    }

    /// A record journaled by the recorder from what it read (a base, a re-statement, a resync):
    /// a later state than live events still in the ring, so it only adds symlinks not known.
    pub fn read(&mut self, op: &Op) {
        if let Op::Resync {
            path,
            meta: Some(m),
        } = op
        {
            if !self.map.contains_key(path.as_bytes()) {
                self.read_meta(path, &m.kind);
            }
        }
    }

    fn read_meta(&mut self, path: &RelPath, kind: &EntryKind) {
        if let EntryKind::Symlink { target } = kind {
            self.insert(path.as_bytes().to_vec(), target.clone());
        }
    }

    /// The target of the symlink remembered at `path`, if any.
    pub fn target(&self, path: &RelPath) -> Option<&[u8]> {
        self.map.get(path.as_bytes()).map(|v| &v[..])
    }

    /// What a call through `path` reached, following remembered symlinks (lexically, from
    /// each symlink's directory) up to [`SYMLINK_HOPS_MAX`]: the path under the root (relative,
    /// as `root_abs` is absolute), or None if `path` is no symlink remembered, or its chain
    /// leaves the root or loops.
    pub fn follow(&self, root_abs: &[u8], path: &RelPath) -> Option<RelPath> {
        let mut at = path.as_bytes().to_vec();
        let mut target = self.map.get(&at)?;
        for _ in 0..SYMLINK_HOPS_MAX {
            let dir = match at.iter().rposition(|&c| c == b'/') {
                Some(i) => [root_abs, b"/", &at[..i]].concat(),
                None => root_abs.to_vec(),
            };
            at = crate::recorder::resolve_under(root_abs, &dir, target)?;
            match self.map.get(&at) {
                Some(t) => target = t,
                None => return Some(RelPath::new(at)),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foxing_proto::record::EntryMeta;

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec())
    }

    fn symlink(path: &str, target: &str) -> Op {
        Op::Symlink {
            path: p(path),
            target: target.as_bytes().to_vec(),
            uid: 0,
            gid: 0,
        }
    }

    fn rename(from: &str, to: &str, flags: u32) -> Op {
        Op::Rename {
            from: p(from),
            to: p(to),
            flags,
        }
    }

    fn resync(path: &str, kind: Option<EntryKind>) -> Op {
        Op::Resync {
            path: p(path),
            meta: kind.map(|kind| EntryMeta {
                kind,
                mode: 0o777,
                uid: 0,
                gid: 0,
                size: 0,
                atime_ns: 0,
                mtime_ns: 0,
                dev: 1,
                ino: 2,
                nlink: 1,
                xattrs: vec![],
            }),
        }
    }

    const ROOT: &[u8] = b"/r";

    fn follows(s: &SymlinkTargets, path: &str) -> Option<String> {
        s.follow(ROOT, &p(path))
            .map(|r| String::from_utf8(r.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn a_symlink_removed_after_a_re_statement_read_it_gone_still_names_its_target() {
        // The namespace workload's: symlink ns/a -> target-2031 (live), a re-statement reads
        // ns/a already removed (journaled before the setxattr through it), then the setxattr.
        let mut s = SymlinkTargets::default();
        s.live(&symlink("ns/a", "target-2031"));
        s.live(&rename("ns/a", "ns/d/y", 0));
        s.live(&rename("ns/d/y", "ns/a", 0));
        s.live(&Op::Link {
            existing: p("ns/a"),
            new: p("ns/d/x"),
        });
        s.read(&resync("ns/a", None));
        assert_eq!(follows(&s, "ns/a").as_deref(), Some("ns/target-2031"));
        assert_eq!(follows(&s, "ns/d/x").as_deref(), Some("ns/d/target-2031"));
        s.live(&Op::Unlink { path: p("ns/a") });
        assert_eq!(follows(&s, "ns/a"), None);
    }

    #[test]
    fn renames_move_symlinks_below_a_directory_and_exchange_swaps_them() {
        let mut s = SymlinkTargets::default();
        s.live(&symlink("d/l", "../t"));
        s.live(&symlink("d2/m", "/r/abs"));
        s.live(&symlink("dd/x", "y"));
        s.live(&rename("d", "e", 0));
        assert_eq!(follows(&s, "d/l"), None);
        assert_eq!(follows(&s, "e/l").as_deref(), Some("t"));
        // "d2" and "dd" share the prefix "d" but are not below it.
        assert_eq!(follows(&s, "d2/m").as_deref(), Some("abs"));
        assert_eq!(follows(&s, "dd/x").as_deref(), Some("dd/y"));
        s.live(&rename("e", "d2", RENAME_EXCHANGE));
        assert_eq!(follows(&s, "d2/l").as_deref(), Some("t"));
        assert_eq!(follows(&s, "e/m").as_deref(), Some("abs"));
        // A rename over a name replaces what was there.
        s.live(&rename("dd", "e", 0));
        assert_eq!(follows(&s, "e/m"), None);
        assert_eq!(follows(&s, "e/x").as_deref(), Some("e/y"));
    }

    #[test]
    fn chains_are_followed_and_loops_or_escapes_end_nowhere() {
        let mut s = SymlinkTargets::default();
        s.live(&symlink("a", "b"));
        s.live(&symlink("b", "sub/c"));
        s.live(&symlink("sub/c", "../f"));
        assert_eq!(follows(&s, "a").as_deref(), Some("f"));
        s.live(&symlink("x", "y"));
        s.live(&symlink("y", "x"));
        assert_eq!(follows(&s, "x"), None);
        s.live(&symlink("out", "../../etc/passwd"));
        assert_eq!(follows(&s, "out"), None);
        assert_eq!(follows(&s, "not-a-link"), None);
    }

    #[test]
    fn reads_only_add_and_live_creations_replace() {
        let mut s = SymlinkTargets::default();
        s.live(&symlink("a", "old"));
        // A later state read first: it does not replace what the live events say yet.
        s.read(&resync(
            "a",
            Some(EntryKind::Symlink {
                target: b"new".to_vec(),
            }),
        ));
        s.read(&resync("a", Some(EntryKind::Regular)));
        assert_eq!(s.target(&p("a")), Some(&b"old"[..]));
        s.read(&resync(
            "b",
            Some(EntryKind::Symlink {
                target: b"t".to_vec(),
            }),
        ));
        assert_eq!(s.target(&p("b")), Some(&b"t"[..]));
        s.live(&Op::Create {
            path: p("b"),
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
        assert_eq!(s.target(&p("b")), None);
        // A rename between two names of one symlink does nothing in the kernel.
        s.live(&Op::Link {
            existing: p("a"),
            new: p("c"),
        });
        s.live(&rename("a", "c", 0));
        assert_eq!(s.target(&p("a")), Some(&b"old"[..]));
        assert_eq!(s.len(), 2);
        assert!(s.complete());
    }
}
