//! What each record does to a tree. Pure logic over the [`Tree`] trait: the same code drives the
//! in-memory model (property tests) and the real replica directory.
//!
//! Every record is applied idempotently and convergently: replaying a record whose effect is
//! already there changes nothing, and a replica that differs from what the record assumes (a
//! missing parent, a file where a directory was) is brought to the record's result rather than
//! left half-way. Paths are checked first; a record with a path that is not a plain relative
//! path is refused with an error naming its seq, before anything is touched.

use std::collections::{HashMap, HashSet};

use foxing_proto::record::{
    EntryMeta, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, XATTR_FOLLOW,
};
use foxing_proto::{Op, Record, RelPath};

use crate::tree::{join, remove_all, NodeKind, Tree, TreeError};

/// Longest symlink target accepted, in bytes.
pub const MAX_SYMLINK_TARGET_BYTES: usize = 4095;
pub use foxing_proto::MAX_FILE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("record seq {seq} refused: {what}")]
    Refused { seq: u64, what: String },
    #[error("record seq {seq} ({op} {path})")]
    Tree {
        seq: u64,
        op: &'static str,
        path: String,
        #[source]
        source: TreeError,
    },
}

/// Counters of what applying did, for the summary and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyStats {
    pub records: u64,
    pub bytes_written: u64,
    /// Records whose target was absent (already removed later in the journal, or replayed).
    pub skipped_absent: u64,
    /// Entries replaced because the replica held something of another kind.
    pub replaced: u64,
    /// Inexact ranges seen (healed by later resync data).
    pub inexact_ranges: u64,
    /// Ownership changes the OS refused (not running as root).
    pub ownership_skipped: u64,
    /// Entries removed at the end of a base because the base did not list them.
    pub base_removed: u64,
    /// Records inside a gap window (between a Gap and its GapHealed) that did not apply to the
    /// replica, which is known to differ there; the heal that follows repairs it.
    pub skipped_in_gap: u64,
    /// Of those, records of the heal itself (Resync, ResyncData, BaseEnd): each leaves the
    /// replica possibly different at its path until another base; logged as warnings.
    pub heal_failed: u64,
    /// Names detached from a replica object they shared with names the source holds apart (a
    /// hard-link group repaired by a resync).
    pub unshared: u64,
}

/// The xattr holding file capabilities, which the kernel removes on every write.
const SECURITY_CAPABILITY: &[u8] = b"security.capability";

/// Per-session apply state (resync times, hard-link groups, base tracking).
#[derive(Default)]
pub struct Applier {
    pub stats: ApplyStats,
    /// Times from the last Resync of a path, re-applied after its data (writes move mtime).
    resync_times: HashMap<RelPath, (i64, i64)>,
    /// security.capability from the last Resync of a path, set again after each ResyncData
    /// write of its content (the kernel removes file capabilities on every write, even a
    /// root's) until another record names the path.
    resync_caps: HashMap<RelPath, Vec<u8>>,
    /// Source (dev, ino) -> a replica path already holding it (hard links across a base).
    links: HashMap<(u64, u64), (RelPath, u64)>,
    base: Option<BaseTracking>,
    /// (gap record seq, healed seq or u64::MAX): records strictly inside may not apply cleanly.
    gap_windows: Vec<(u64, u64)>,
    /// Whether a whole base has been applied: set by the caller at start from the journal's
    /// index, and by every BaseEnd applied. `None` for a new replica whose journal said
    /// nothing yet: its first record decides (a BaseBegin: wait for its end; anything else: a
    /// journal made without bases, whole from the start).
    base_applied: Option<bool>,
    /// After each record: whether the tree is a state the source had (a whole base applied,
    /// not between a Gap and its GapHealed). Shared with the metrics.
    pub consistent: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

struct BaseTracking {
    id: u64,
    /// Seq of its BaseBegin: its end closes the gap windows opened before it.
    begin_seq: u64,
    touched: HashSet<RelPath>,
    ancestors: HashSet<RelPath>,
    /// Directory times from the base's Resyncs: creating their children moved them on the
    /// replica, so they are set again when the base ends.
    dir_times: Vec<(RelPath, i64, i64)>,
    /// Replica inode -> the source (dev, ino) a Resync of this base gave it, for objects with
    /// more than one name: another source inode's Resync finding it detaches its name.
    claims: HashMap<u64, (u64, u64)>,
}

impl BaseTracking {
    fn touch(&mut self, p: &RelPath) {
        let mut v = p.0.as_slice();
        while let Some(i) = v.iter().rposition(|&c| c == b'/') {
            v = &v[..i];
            if !self.ancestors.insert(RelPath::new(v)) {
                break;
            }
        }
        self.touched.insert(p.clone());
    }

    fn renamed(&mut self, from: &RelPath, to: &RelPath) {
        let mut prefix = from.0.clone();
        prefix.push(b'/');
        let moved: Vec<RelPath> = self
            .touched
            .iter()
            .filter(|p| p.0 == from.0 || p.0.starts_with(&prefix))
            .cloned()
            .collect();
        for p in moved {
            self.touched.remove(&p);
            let mut n = to.0.clone();
            n.extend_from_slice(&p.0[from.0.len()..]);
            self.touch(&RelPath(n));
        }
        self.touch(to);
    }

    fn keeps(&self, p: &RelPath) -> bool {
        self.touched.contains(p) || self.ancestors.contains(p)
    }
}

fn check(seq: u64, p: &RelPath) -> Result<(), ApplyError> {
    p.check().map_err(|e| ApplyError::Refused {
        seq,
        what: format!("path {p}: {e}"),
    })
}

fn check_range(seq: u64, offset: u64, len: u64) -> Result<(), ApplyError> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_BYTES => Ok(()),
        _ => Err(ApplyError::Refused {
            seq,
            what: format!("range {offset}+{len} beyond the largest file size"),
        }),
    }
}

/// Whether applying the record changes the namespace (names, not just content or metadata).
/// The applier checkpoints around these, since replaying them in a later state is ambiguous.
pub fn is_namespace_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. }
            | Op::Mknod { .. }
            | Op::Mkdir { .. }
            | Op::Unlink { .. }
            | Op::Rmdir { .. }
            | Op::Rename { .. }
            | Op::Symlink { .. }
            | Op::Link { .. }
            | Op::Resync { .. }
            | Op::BaseEnd { .. }
    )
}

/// Checks a record without touching anything: paths, ranges, symlink targets.
pub fn validate(r: &Record) -> Result<(), ApplyError> {
    for p in r.op.paths() {
        check(r.seq, p)?;
    }
    match &r.op {
        Op::Write { offset, data, .. } | Op::ResyncData { offset, data, .. } => {
            check_range(r.seq, *offset, data.len() as u64)
        }
        Op::Dirty { offset, len, .. } | Op::Fallocate { offset, len, .. } => {
            check_range(r.seq, *offset, *len)
        }
        Op::Truncate { size, .. } => check_range(r.seq, *size, 0),
        Op::Symlink { target, .. } => check_target(r.seq, target),
        Op::Resync { meta: Some(m), .. } => {
            if let foxing_proto::EntryKind::Symlink { target } = &m.kind {
                check_target(r.seq, target)?;
            }
            check_range(r.seq, m.size, 0)
        }
        _ => Ok(()),
    }
}

fn check_target(seq: u64, target: &[u8]) -> Result<(), ApplyError> {
    if target.is_empty() || target.len() > MAX_SYMLINK_TARGET_BYTES || target.contains(&0) {
        return Err(ApplyError::Refused {
            seq,
            what: "symlink target empty, too long or with a NUL byte".into(),
        });
    }
    Ok(())
}

impl Applier {
    /// Gap windows known from the journal index (resuming inside one after a restart).
    pub fn set_gap_windows(&mut self, windows: Vec<(u64, u64)>) {
        self.gap_windows = windows;
    }

    /// Whether a whole base was applied before this session (from the journal's index).
    pub fn set_base_applied(&mut self, applied: Option<bool>) {
        self.base_applied = applied;
        if applied != Some(true) {
            self.consistent
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the tree after applying through `seq` is a state the source had.
    pub fn consistent_after(&self, seq: u64) -> bool {
        self.base_applied == Some(true)
            && !self.gap_windows.iter().any(|&(g, h)| g <= seq && seq < h)
    }

    fn in_gap(&self, seq: u64) -> bool {
        self.gap_windows.iter().any(|&(g, h)| g < seq && seq < h)
    }

    /// Applies one record. On error nothing after it should be applied: the replica stays the
    /// source's state as of the records before it.
    pub fn apply(&mut self, t: &mut dyn Tree, r: &Record) -> Result<(), ApplyError> {
        validate(r)?;
        let seq = r.seq;
        let op_name = r.op.kind_name();
        let path_str =
            r.op.paths()
                .first()
                .map(|p| p.to_string())
                .unwrap_or_default();
        match &r.op {
            Op::Gap { .. } => self.gap_windows.push((seq, u64::MAX)),
            Op::GapHealed { gap_seq } => {
                for w in self.gap_windows.iter_mut().filter(|w| w.0 == *gap_seq) {
                    w.1 = w.1.min(seq);
                }
            }
            _ => {}
        }
        // A whole base begun after a gap heals it at its end (the GapHealed follows it): the
        // same windows as `foxing_journal::reader::gap_windows`.
        let healing_base_begin = match &r.op {
            Op::BaseEnd { base_id } => self
                .base
                .as_ref()
                .filter(|b| b.id == *base_id)
                .map(|b| b.begin_seq),
            _ => None,
        };
        if !self.resync_caps.is_empty() && !matches!(r.op, Op::ResyncData { .. }) {
            // A change after the read (a write removed the capability on the source too).
            for p in r.op.paths() {
                self.resync_caps.remove(p);
            }
        }
        let res = self.apply_op(t, r);
        if let (Ok(()), Some(begin)) = (&res, healing_base_begin) {
            for w in self.gap_windows.iter_mut().filter(|w| w.0 < begin) {
                w.1 = w.1.min(seq);
            }
        }
        self.stats.records += 1;
        // Consistency changes only at these records (gap windows start and end at their Gap
        // and GapHealed records): no scan of the windows per data record.
        let first = self.base_applied.is_none();
        if first {
            self.base_applied = Some(!matches!(r.op, Op::BaseBegin { .. }));
        }
        if res.is_ok() && matches!(r.op, Op::BaseEnd { .. }) {
            self.base_applied = Some(true);
        }
        if first
            || matches!(
                r.op,
                Op::BaseEnd { .. } | Op::Gap { .. } | Op::GapHealed { .. }
            )
        {
            self.consistent.store(
                self.consistent_after(seq),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        match res {
            Ok(()) => Ok(()),
            // Validation passed (the record itself is well-formed); the replica differs from what
            // it assumes because records were lost before it: skip, the heal follows.
            Err(e) if self.in_gap(seq) => {
                if matches!(
                    r.op,
                    Op::Resync { .. } | Op::ResyncData { .. } | Op::BaseEnd { .. }
                ) {
                    // The heal's own record: nothing later repairs what it fails to.
                    tracing::warn!(seq, op = op_name, path = %path_str, error = %e, "a heal's record did not apply: the replica may differ at this path until the next base (foxing-journal base)");
                    self.stats.heal_failed += 1;
                } else {
                    tracing::debug!(seq, error = %e, "record inside a gap window did not apply; the heal repairs it");
                }
                self.stats.skipped_in_gap += 1;
                Ok(())
            }
            Err(TreeError::Refused(what)) => Err(ApplyError::Refused {
                seq,
                what: format!("{op_name} {path_str}: {what}"),
            }),
            Err(source) => Err(ApplyError::Tree {
                seq,
                op: op_name,
                path: path_str,
                source,
            }),
        }
    }

    fn touch(&mut self, p: &RelPath) {
        if let Some(b) = &mut self.base {
            b.touch(p);
        }
    }

    /// Makes sure every ancestor of `p` is a directory (creating missing ones 0755): a replica
    /// that diverged is brought back rather than refusing every later record.
    fn ensure_parents(&mut self, t: &mut dyn Tree, p: &RelPath) -> Result<(), TreeError> {
        let b = &p.0;
        // The common case in one lookup: a parent that is a directory has only directories
        // above it (a Tree never resolves through a symlink). Stat'ing every ancestor of every
        // path instead was quadratic in the depth (a 2,000-level tree took minutes).
        if let Some(i) = b.iter().rposition(|&c| c == b'/') {
            if let Ok(Some(s)) = t.stat(&RelPath::new(&b[..i])) {
                if s.kind == NodeKind::Directory {
                    return Ok(());
                }
            }
        }
        let mut end = 0;
        while let Some(i) = b[end..].iter().position(|&c| c == b'/') {
            let dir = RelPath::new(&b[..end + i]);
            match t.stat(&dir)? {
                Some(s) if s.kind == NodeKind::Directory => {}
                // A source never reports a path through a symlink: this record is crafted, or
                // the replica was tampered with. Never follow, never replace: refuse.
                Some(s) if matches!(s.kind, NodeKind::Symlink(_)) => {
                    return Err(TreeError::Refused(format!("{dir} is a symlink")));
                }
                Some(_) => {
                    remove_all(t, &dir)?;
                    t.mkdir(&dir, 0o755)?;
                    self.stats.replaced += 1;
                }
                None => t.mkdir(&dir, 0o755)?,
            }
            end += i + 1;
        }
        Ok(())
    }

    fn owner(
        &mut self,
        t: &mut dyn Tree,
        p: &RelPath,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), TreeError> {
        match t.chown(p, uid, gid) {
            Err(TreeError::Io(e)) if e.raw_os_error() == Some(1) => {
                self.stats.ownership_skipped += 1; // EPERM: not root
                Ok(())
            }
            r => r,
        }
    }

    /// The group and mode a new entry at `p` gets: in a setgid directory the directory's group,
    /// and for a new directory its setgid bit too, as the kernel gave them on the source
    /// (records made without reading the source's entry, which was gone, carry the caller's
    /// fsgid). The root's own mode is not replicated, so an entry right below it keeps `gid`.
    fn inherit(
        &mut self,
        t: &mut dyn Tree,
        p: &RelPath,
        gid: u32,
        mode: u32,
        dir: bool,
    ) -> Result<(u32, u32), TreeError> {
        let b = p.as_bytes();
        let Some(i) = b.iter().rposition(|&c| c == b'/') else {
            return Ok((gid, mode));
        };
        match t.stat(&RelPath::new(&b[..i]))? {
            Some(s) if s.kind == NodeKind::Directory && s.mode & 0o2000 != 0 => {
                Ok((s.gid, if dir { mode | 0o2000 } else { mode }))
            }
            _ => Ok((gid, mode)),
        }
    }

    /// Creates `p` as `kind` unless it already is one; replaces anything else there.
    fn ensure_kind(
        &mut self,
        t: &mut dyn Tree,
        p: &RelPath,
        kind: &NodeKind,
        mode: u32,
    ) -> Result<bool, TreeError> {
        self.ensure_parents(t, p)?;
        if let Some(s) = t.stat(p)? {
            if &s.kind == kind {
                return Ok(false);
            }
            remove_all(t, p)?;
            self.stats.replaced += 1;
        }
        match kind {
            NodeKind::Regular => t.create_file(p, mode)?,
            NodeKind::Directory => t.mkdir(p, mode)?,
            NodeKind::Symlink(target) => t.symlink(p, target)?,
            other => t.mknod(p, other, mode)?,
        }
        Ok(true)
    }

    fn regular(&mut self, t: &mut dyn Tree, p: &RelPath) -> Result<bool, TreeError> {
        match t.stat(p)? {
            Some(s) if s.kind == NodeKind::Regular => Ok(true),
            _ => {
                self.stats.skipped_absent += 1;
                Ok(false)
            }
        }
    }

    /// `p` itself, or where it leads if it is a symlink (inside the root); None if absent or
    /// leading outside (counted as skipped).
    fn deref(&mut self, t: &mut dyn Tree, p: &RelPath) -> Result<Option<RelPath>, TreeError> {
        match t.stat(p)? {
            None => {
                self.stats.skipped_absent += 1;
                Ok(None)
            }
            Some(s) if matches!(s.kind, NodeKind::Symlink(_)) => {
                let r = t.follow(p)?;
                if r.is_none() {
                    self.stats.skipped_absent += 1;
                }
                Ok(r)
            }
            Some(_) => Ok(Some(p.clone())),
        }
    }

    /// What a call on `p` acts on in the replica: its final symlink's target when the kernel
    /// followed it (`follow`), else `p` itself; None when absent (counted as skipped).
    fn target(
        &mut self,
        t: &mut dyn Tree,
        p: &RelPath,
        follow: bool,
    ) -> Result<Option<RelPath>, TreeError> {
        if follow {
            self.deref(t, p)
        } else {
            Ok(self.present(t, p)?.then(|| p.clone()))
        }
    }

    fn present(&mut self, t: &mut dyn Tree, p: &RelPath) -> Result<bool, TreeError> {
        if t.stat(p)?.is_some() {
            Ok(true)
        } else {
            self.stats.skipped_absent += 1;
            Ok(false)
        }
    }

    fn apply_op(&mut self, t: &mut dyn Tree, r: &Record) -> Result<(), TreeError> {
        match &r.op {
            Op::Write { path, offset, data } => {
                if self.regular(t, path)? {
                    t.write_at(path, *offset, data)?;
                    self.stats.bytes_written += data.len() as u64;
                }
            }
            Op::ResyncData { path, offset, data } => {
                if self.regular(t, path)? {
                    t.write_at(path, *offset, data)?;
                    self.stats.bytes_written += data.len() as u64;
                    if let Some(cap) = self.resync_caps.get(path) {
                        t.set_xattr(path, SECURITY_CAPABILITY, cap)?;
                    }
                    if let Some(&(a, m)) = self.resync_times.get(path) {
                        t.set_times(path, Some(a), Some(m))?;
                    }
                }
            }
            Op::Dirty { .. } => self.stats.inexact_ranges += 1,
            Op::Truncate { path, size } => {
                // truncate(2) follows symlinks: so does a recorded Truncate of a symlink path.
                let target = self.deref(t, path)?;
                if let Some(p) = target {
                    if self.regular(t, &p)? {
                        t.truncate(&p, *size)?;
                    }
                }
            }
            Op::Fallocate {
                path,
                mode,
                offset,
                len,
            } => {
                if self.regular(t, path)? {
                    t.fallocate(path, *mode, *offset, *len)?;
                }
            }
            Op::Create {
                path,
                mode,
                uid,
                gid,
            } => {
                if self.ensure_kind(t, path, &NodeKind::Regular, *mode)? {
                    let (gid, mode) = self.inherit(t, path, *gid, *mode, false)?;
                    // chown clears setuid/setgid: owner first, then mode.
                    self.owner(t, path, Some(*uid), Some(gid))?;
                    t.chmod(path, mode)?;
                }
                self.touch(path);
            }
            Op::Mkdir {
                path,
                mode,
                uid,
                gid,
            } => {
                if self.ensure_kind(t, path, &NodeKind::Directory, *mode)? {
                    let (gid, mode) = self.inherit(t, path, *gid, *mode, true)?;
                    // chown clears setuid/setgid: owner first, then mode.
                    self.owner(t, path, Some(*uid), Some(gid))?;
                    t.chmod(path, mode)?;
                }
                self.touch(path);
            }
            Op::Mknod {
                path,
                kind,
                mode,
                uid,
                gid,
            } => self.mknod(t, path, &NodeKind::from_entry(kind), *mode, *uid, *gid)?,
            Op::Symlink {
                path,
                target,
                uid,
                gid,
            } => {
                if self.ensure_kind(t, path, &NodeKind::Symlink(target.clone()), 0o777)? {
                    let (gid, _) = self.inherit(t, path, *gid, 0o777, false)?;
                    self.owner(t, path, Some(*uid), Some(gid))?;
                }
                self.touch(path);
            }
            Op::Unlink { path } => match t.stat(path)? {
                None => self.stats.skipped_absent += 1,
                Some(s) if s.kind == NodeKind::Directory => remove_all(t, path)?,
                Some(_) => t.unlink(path)?,
            },
            Op::Rmdir { path } => remove_all(t, path)?,
            Op::Rename { from, to, flags } => {
                if self.rename(t, from, to, *flags)? && flags & RENAME_WHITEOUT != 0 {
                    // The source's kernel left a whiteout at the old name, owned by the writer.
                    self.whiteout(t, from, r.writer.uid, r.writer.gid)?;
                }
            }
            Op::Link { existing, new } => {
                let Some(src) = t.stat(existing)? else {
                    self.stats.skipped_absent += 1;
                    return Ok(());
                };
                if src.kind == NodeKind::Directory {
                    return Err(TreeError::Refused("hard link to a directory".into()));
                }
                match t.stat(new)? {
                    Some(s) if s.ino == src.ino => {}
                    Some(_) => {
                        remove_all(t, new)?;
                        self.stats.replaced += 1;
                        t.link(existing, new)?;
                    }
                    None => {
                        self.ensure_parents(t, new)?;
                        t.link(existing, new)?;
                    }
                }
                self.touch(new);
            }
            Op::Chmod { path, mode } => {
                // Linux cannot chmod a symlink: a Chmod of a symlink path changed its target.
                if let Some(p) = self.deref(t, path)? {
                    t.chmod(&p, *mode)?;
                }
            }
            Op::Chown { path, uid, gid } | Op::ChownFollow { path, uid, gid } => {
                let follow = matches!(r.op, Op::ChownFollow { .. });
                if let Some(p) = self.target(t, path, follow)? {
                    self.owner(t, &p, *uid, *gid)?;
                }
            }
            Op::SetXattr {
                path,
                name,
                value,
                flags,
            } => {
                if let Some(p) = self.target(t, path, flags & XATTR_FOLLOW != 0)? {
                    t.set_xattr(&p, name, value)?;
                }
            }
            Op::RemoveXattr { path, name } | Op::RemoveXattrFollow { path, name } => {
                let follow = matches!(r.op, Op::RemoveXattrFollow { .. });
                if let Some(p) = self.target(t, path, follow)? {
                    match t.remove_xattr(&p, name) {
                        Ok(()) | Err(TreeError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Op::SetTimes {
                path,
                atime_ns,
                mtime_ns,
            } => {
                if self.present(t, path)? {
                    t.set_times(path, *atime_ns, *mtime_ns)?;
                }
            }
            Op::Resync { path, meta } => self.resync(t, path, meta.as_ref())?,
            Op::BaseBegin { base_id } => {
                self.base = Some(BaseTracking {
                    id: *base_id,
                    begin_seq: r.seq,
                    touched: HashSet::new(),
                    ancestors: HashSet::new(),
                    dir_times: Vec::new(),
                    claims: HashMap::new(),
                });
            }
            Op::BaseEnd { base_id } => {
                if let Some(b) = self.base.take() {
                    if b.id == *base_id {
                        self.remove_unlisted(t, None, &b)?;
                        // Deepest first does not matter: setting times moves no parent's mtime.
                        // A directory no longer reachable (one above it replaced by a symlink
                        // after its Resync) has no time to set (regression: the error failed
                        // the whole BaseEnd, so the heal's gap windows never closed).
                        for (p, a, m) in &b.dir_times {
                            let st = t.stat(p).ok().flatten();
                            if st.is_some_and(|s| s.kind == NodeKind::Directory) {
                                t.set_times(p, Some(*a), Some(*m))?;
                            }
                        }
                    }
                } else {
                    tracing::info!(base_id, "base ended without its beginning in this session; entries it did not list are kept");
                }
            }
            Op::Sync { .. } | Op::Gap { .. } | Op::GapHealed { .. } => {}
        }
        Ok(())
    }

    fn mknod(
        &mut self,
        t: &mut dyn Tree,
        path: &RelPath,
        kind: &NodeKind,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), TreeError> {
        if self.ensure_kind(t, path, kind, mode)? {
            let (gid, mode) = self.inherit(t, path, gid, mode, false)?;
            // chown clears setuid/setgid: owner first, then mode.
            self.owner(t, path, Some(uid), Some(gid))?;
            t.chmod(path, mode)?;
        }
        self.touch(path);
        Ok(())
    }

    /// Creates the whiteout (a 0:0 character device, mode 0) that renameat2(RENAME_WHITEOUT)
    /// leaves at the old name. Public for the apply loop, which completes a whiteout rename
    /// that a crash interrupted between the rename and this.
    pub fn whiteout(
        &mut self,
        t: &mut dyn Tree,
        path: &RelPath,
        uid: u32,
        gid: u32,
    ) -> Result<(), TreeError> {
        self.mknod(t, path, &NodeKind::CharDevice(0), 0, uid, gid)
    }

    /// Applies a rename; true if the object at `from` moved to `to` (a RENAME_WHITEOUT then
    /// leaves its whiteout at `from`; a rename between two names of one object does nothing,
    /// on the source as here).
    fn rename(
        &mut self,
        t: &mut dyn Tree,
        from: &RelPath,
        to: &RelPath,
        flags: u32,
    ) -> Result<bool, TreeError> {
        if flags & RENAME_WHITEOUT != 0 && flags & RENAME_EXCHANGE != 0 {
            return Err(TreeError::Refused(
                "RENAME_WHITEOUT with RENAME_EXCHANGE (the kernel refuses it)".into(),
            ));
        }
        let src = t.stat(from)?;
        let dst = t.stat(to)?;
        if flags & RENAME_EXCHANGE != 0 {
            match (src, dst) {
                (Some(_), Some(_)) => t.rename(from, to, RENAME_EXCHANGE)?,
                _ => self.stats.skipped_absent += 1,
            }
            if let Some(b) = &mut self.base {
                // Both names keep being listed.
                b.touch(from);
                b.touch(to);
            }
            return Ok(false);
        }
        let Some(src) = src else {
            // Already renamed (a replay), or removed later in the journal.
            self.stats.skipped_absent += 1;
            return Ok(false);
        };
        if let Some(d) = &dst {
            if d.ino == src.ino {
                // Two names of one object: rename(2) is a no-op; the source kept both names too.
                return Ok(false);
            }
            let compatible = (src.kind == NodeKind::Directory) == (d.kind == NodeKind::Directory);
            let empty_or_file = d.kind != NodeKind::Directory || t.list_dir(Some(to))?.is_empty();
            if flags & RENAME_NOREPLACE != 0 || !compatible || !empty_or_file {
                // The source's rename succeeded, so its target was absent, or replaceable:
                // bring the replica to that result.
                remove_all(t, to)?;
                self.stats.replaced += 1;
            }
        } else {
            self.ensure_parents(t, to)?;
        }
        t.rename(from, to, 0)?;
        if let Some(b) = &mut self.base {
            b.renamed(from, to);
        }
        Ok(true)
    }

    fn resync(
        &mut self,
        t: &mut dyn Tree,
        p: &RelPath,
        meta: Option<&EntryMeta>,
    ) -> Result<(), TreeError> {
        let Some(m) = meta else {
            remove_all(t, p)?;
            self.resync_times.remove(p);
            return Ok(());
        };
        self.touch(p);
        let kind = NodeKind::from_entry(&m.kind);
        // A second name of an object this session already resynced: link instead of copy.
        let linked = kind != NodeKind::Directory && m.nlink > 1;
        if linked {
            if let Some((other, other_ino)) = self.links.get(&(m.dev, m.ino)).cloned() {
                if other != *p {
                    // Unreachable now (a directory on the way became a symlink, say) is like
                    // gone (regression: the error failed the heal's Resync of p, skipped as
                    // inside a gap window, and both names were missing from the replica).
                    match t.stat(&other).ok().flatten() {
                        // Still the object recorded for this source inode: p is another name.
                        Some(o) if o.kind == kind && o.ino == other_ino => {
                            if t.stat(p)?.map(|c| c.ino) != Some(o.ino) {
                                remove_all(t, p)?;
                                self.ensure_parents(t, p)?;
                                t.link(&other, p)?;
                            }
                            return Ok(());
                        }
                        // Moved or replaced since: p becomes the group's representative.
                        _ => {
                            self.links.remove(&(m.dev, m.ino));
                        }
                    }
                }
            }
        }
        // The replica object at p shared with other names: kept (and rewritten in place) only
        // if the source's inode has other names too and no other source inode's Resync in this
        // base took the object; else p is detached from it (regression: fsstress left a
        // symlink name hard-linked to another group after its source name was replaced).
        if kind != NodeKind::Directory {
            if let Some(st) = t.stat(p)? {
                let taken =
                    |b: &BaseTracking| b.claims.get(&st.ino).is_some_and(|c| *c != (m.dev, m.ino));
                if st.kind == kind
                    && st.nlink > 1
                    && (m.nlink <= 1 || self.base.as_ref().is_some_and(taken))
                {
                    remove_all(t, p)?;
                    self.stats.unshared += 1;
                }
            }
        }
        self.ensure_kind(t, p, &kind, m.mode)?;
        if kind != NodeKind::Directory {
            if let Some(st) = t.stat(p)? {
                if linked {
                    self.links.insert((m.dev, m.ino), (p.clone(), st.ino));
                }
                if let Some(b) = &mut self.base {
                    if m.nlink > 1 || st.nlink > 1 {
                        b.claims.insert(st.ino, (m.dev, m.ino));
                    }
                }
            }
        }
        if kind == NodeKind::Regular {
            // Content follows as ResyncData; holes stay holes.
            t.truncate(p, 0)?;
            t.truncate(p, m.size)?;
        }
        self.owner(t, p, Some(m.uid), Some(m.gid))?;
        if !matches!(kind, NodeKind::Symlink(_)) {
            t.chmod(p, m.mode)?;
        }
        if !matches!(kind, NodeKind::Symlink(_)) {
            let want: HashSet<&[u8]> = m.xattrs.iter().map(|x| x.name.as_slice()).collect();
            for name in t.list_xattrs(p)? {
                if !want.contains(name.as_slice()) {
                    t.remove_xattr(p, &name)?;
                }
            }
            for x in &m.xattrs {
                t.set_xattr(p, &x.name, &x.value)?;
            }
        }
        t.set_times(p, Some(m.atime_ns), Some(m.mtime_ns))?;
        if kind == NodeKind::Directory {
            if let Some(b) = &mut self.base {
                b.dir_times.push((p.clone(), m.atime_ns, m.mtime_ns));
            }
        }
        if kind == NodeKind::Regular {
            self.resync_times
                .insert(p.clone(), (m.atime_ns, m.mtime_ns));
        } else {
            self.resync_times.remove(p);
        }
        match m.xattrs.iter().find(|x| x.name == SECURITY_CAPABILITY) {
            Some(x) if kind == NodeKind::Regular => {
                self.resync_caps.insert(p.clone(), x.value.clone());
            }
            _ => {
                self.resync_caps.remove(p);
            }
        }
        Ok(())
    }

    /// At a base's end: remove what the base did not list (nor live changes during it created).
    fn remove_unlisted(
        &mut self,
        t: &mut dyn Tree,
        dir: Option<&RelPath>,
        b: &BaseTracking,
    ) -> Result<(), TreeError> {
        for name in t.list_dir(dir)? {
            let p = join(dir, &name);
            if !b.keeps(&p) {
                remove_all(t, &p)?;
                self.stats.base_removed += 1;
            } else {
                if let Some(s) = t.stat(&p)? {
                    if s.kind == NodeKind::Directory {
                        self.remove_unlisted(t, Some(&p), b)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod consistency_tests {
    use super::*;
    use crate::model::ModelTree;
    use std::sync::atomic::Ordering;

    fn rec(seq: u64, op: Op) -> Record {
        Record {
            seq,
            time_ns: seq,
            writer: Default::default(),
            op,
        }
    }

    /// The flag the replica's `foxing_applier_consistent` gauge shows: 0 until a whole base is
    /// applied, 0 between a Gap and its GapHealed, 1 otherwise.
    #[test]
    fn the_consistent_flag_follows_bases_and_gap_windows() {
        let mut a = Applier::default();
        let mut t = ModelTree::default();
        let flag = a.consistent.clone();
        let steps = [
            (Op::BaseBegin { base_id: 7 }, false),
            (
                Op::Mkdir {
                    path: RelPath::new("d"),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
                false,
            ),
            (Op::BaseEnd { base_id: 7 }, true),
            (
                Op::Gap {
                    lost: 1,
                    reason: foxing_proto::GapReason::RingFull,
                },
                false,
            ),
            (
                Op::Mkdir {
                    path: RelPath::new("e"),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
                false,
            ),
            (Op::GapHealed { gap_seq: 4 }, true),
            // A recorder restart: its gap, its base, then the GapHealed after the BaseEnd. The
            // base's end is consistent already (what the journal index says too).
            (
                Op::Gap {
                    lost: 0,
                    reason: foxing_proto::GapReason::RecorderDown,
                },
                false,
            ),
            (Op::BaseBegin { base_id: 8 }, false),
            (Op::BaseEnd { base_id: 8 }, true),
            (Op::GapHealed { gap_seq: 7 }, true),
            // A loss during a base: that base's end is not consistent, its heal is.
            (Op::BaseBegin { base_id: 9 }, true),
            (
                Op::Gap {
                    lost: 1,
                    reason: foxing_proto::GapReason::RingFull,
                },
                false,
            ),
            (Op::BaseEnd { base_id: 9 }, false),
            (Op::GapHealed { gap_seq: 12 }, true),
        ];
        for (i, (op, want)) in steps.into_iter().enumerate() {
            let seq = i as u64 + 1;
            a.apply(&mut t, &rec(seq, op)).unwrap();
            assert_eq!(flag.load(Ordering::Relaxed), want, "after seq {seq}");
        }
        // A journal made without bases is whole from its first record.
        let mut a = Applier::default();
        let op = Op::Mkdir {
            path: RelPath::new("f"),
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        a.apply(&mut ModelTree::default(), &rec(1, op)).unwrap();
        assert!(a.consistent.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod range_tests {
    /// Regression (stress-ng's fsize stressor on xfs): the source accepted a fallocate at
    /// 2^61 (xfs, btrfs and tmpfs allow files up to i64::MAX bytes) and the applier refused the
    /// record as "beyond the largest file size" (its bound was 2^60), stopping the replica.
    #[test]
    fn ranges_up_to_the_kernels_largest_file_size_are_accepted() {
        assert!(super::check_range(1, 1 << 61, 1).is_ok());
        assert!(super::check_range(1, 4611686018427387902, 1).is_ok());
        assert!(super::check_range(1, i64::MAX as u64 - 1, 1).is_ok());
        assert!(super::check_range(1, i64::MAX as u64, 1).is_err());
        assert!(super::check_range(1, u64::MAX, 2).is_err());
    }
}
