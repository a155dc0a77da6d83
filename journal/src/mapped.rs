//! Files written through shared mappings (mmap + stores): no write syscall reports those bytes.
//! The probes report the mapping (path, range) and each page that turns dirty (at its clean ->
//! dirty transition only); later stores to an already dirty page are silent until writeback
//! cleans it. So a page stays "hot" for [`MAPPED_HOT_MS`] after its last dirty report and is
//! re-read at every times sweep (and at msync); a page whose content hash changed is journaled
//! as ResyncData. Writeback cleans dirty pages within ~35 s by default (dirty_expire 30 s +
//! the 5 s flusher period), after which a new store reports the page again; docs/capture.md
//! states this assumption. A page is journaled the first time it is read after it turned hot
//! (the stores may precede the report's processing, so there is no "before" to compare with),
//! then whenever its content differs from what the journal last gave the replica for it: the
//! hash of each page is kept in journal order, replaced by records that set the whole page
//! (ResyncData) and forgotten by any other record that changes its bytes ([`MappedFiles::journaled`]).
//! On filesystems without writeback reports (tmpfs)
//! the mapped range of a file up to [`MAPPED_POLL_MAX_BYTES`] is polled for [`MAPPED_HOT_MS`]
//! after each change.
//!
//! Pure bookkeeping: the recorder does the reading.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use foxing_proto::record::shifts_bytes;
use foxing_proto::{Op, RelPath};

pub const PAGE_BYTES: u64 = 4096;
/// A page is re-read for this long after its last dirty report (or content change).
pub const MAPPED_HOT_MS: u64 = 45_000;
/// Mapped ranges up to this size are polled whole (filesystems without dirty reports).
pub const MAPPED_POLL_MAX_BYTES: u64 = 64 << 20;
/// Largest folio a dirty report may cover (pages; PMD-sized folios are 512 pages).
pub const MAPPED_MAX_FOLIO_PAGES: u64 = 512;
/// Most files tracked (the probes remember as many mapped inodes).
pub const MAPPED_MAX_FILES: usize = 65_536;
/// Most pages tracked per file.
pub const MAPPED_MAX_PAGES: usize = 1 << 20;
/// A file whose pages were dirty before its mapping was known is checked for dirty pages
/// (cachestat) in chunks of this size, and its dirty chunks are re-read.
pub const MAPPED_SETTLE_CHUNK_BYTES: u64 = 256 << 10;
/// Longest a file is watched that way (writeback cleans a page within ~35 s by default).
pub const MAPPED_SETTLE_MAX_MS: u64 = 600_000;

#[derive(Default)]
struct File {
    /// Mapped byte ranges (offset -> end).
    ranges: BTreeMap<u64, u64>,
    /// Page index -> hash of its content as last journaled.
    hashes: HashMap<u64, u64>,
    /// Page index -> until when it is re-read.
    hot: HashMap<u64, Instant>,
    /// Until when the whole mapped range is polled.
    poll_until: Option<Instant>,
    /// Pages that were already dirty when the mapping became known: stores to them report
    /// nothing until writeback cleans them. While some are, the dirty chunks (and those dirty
    /// at the previous pass: cleaned since) are re-read. The chunks dirty at the last pass and
    /// until when to go on.
    settle: Option<(BTreeSet<u64>, Instant)>,
    dev_ino: (u64, u64),
}

impl File {
    /// Forgets the hashes of the pages that bytes `from..to` touch: the replica's copy of
    /// them is no longer what was last re-read, so the next re-read journals them whatever
    /// it finds.
    fn forget(&mut self, from: u64, to: u64) {
        let first = from / PAGE_BYTES;
        let end = to.div_ceil(PAGE_BYTES).max(first);
        if end - first <= self.hashes.len() as u64 {
            for p in first..end {
                self.hashes.remove(&p);
            }
        } else {
            self.hashes.retain(|&p, _| p < first || p >= end);
        }
    }
}

/// A settling file: its path, its mapped byte ranges (start, end) and the chunks dirty at the
/// last pass.
pub type Settling = (RelPath, Vec<(u64, u64)>, BTreeSet<u64>);

#[derive(Default)]
pub struct MappedFiles {
    /// By path, ordered: a rename finds the files at or below its source in one range
    /// (`renamed`), not by visiting every tracked file (up to MAPPED_MAX_FILES).
    files: BTreeMap<RelPath, File>,
    by_inode: HashMap<(u64, u64), RelPath>,
    /// Other names (hard links) of tracked inodes that journaled records used.
    other_names: BTreeMap<RelPath, (u64, u64)>,
    hasher: std::hash::RandomState,
}

impl MappedFiles {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn hash(&self, data: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(data);
        h.finish()
    }

    /// The inode (kernel dev, ino) tracked at `path`.
    pub fn inode_of(&self, path: &RelPath) -> Option<(u64, u64)> {
        self.files.get(path).map(|f| f.dev_ino)
    }

    /// Whether pages of this inode are tracked.
    pub fn knows(&self, dev_ino: (u64, u64)) -> bool {
        self.by_inode.contains_key(&dev_ino)
    }

    /// A shared writable mapping of `path` covering `offset..offset+len`. `poll`: the file's
    /// filesystem does not report dirty pages (tmpfs), so the range is re-read for a while.
    pub fn on_mmap(
        &mut self,
        path: RelPath,
        dev_ino: (u64, u64),
        offset: u64,
        len: u64,
        poll: bool,
        now: Instant,
    ) {
        let start = offset / PAGE_BYTES * PAGE_BYTES;
        if let Some(old) = self.by_inode.insert(dev_ino, path.clone()) {
            if old != path {
                self.files.remove(&old);
            }
        }
        let f = self.files.entry(path).or_default();
        f.dev_ino = dev_ino;
        let end = offset.saturating_add(len);
        let e = f.ranges.entry(start).or_insert(end);
        *e = (*e).max(end);
        if poll && len <= MAPPED_POLL_MAX_BYTES {
            f.poll_until = Some(now + Duration::from_millis(MAPPED_HOT_MS));
        }
    }

    /// The mapping of `path` (just noted) covers pages that were dirty already: no report
    /// will come for stores to them until writeback cleans them (the kernel reports a page's
    /// clean -> dirty transition only). Found by an fsx-style mix: `pwrite` then a store
    /// through a new mapping of the same page never reached the replica.
    /// `dirty`: the chunks (of MAPPED_SETTLE_CHUNK_BYTES) with dirty pages now.
    pub fn settle(&mut self, path: &RelPath, dirty: BTreeSet<u64>, now: Instant) {
        if let Some(f) = self.files.get_mut(path) {
            let until = now + Duration::from_millis(MAPPED_SETTLE_MAX_MS);
            match &mut f.settle {
                Some((last, t)) => {
                    last.extend(dirty);
                    *t = until;
                }
                None => f.settle = Some((dirty, until)),
            }
        }
    }

    /// Files waiting for pages dirty before their mapping to be cleaned: each with its mapped
    /// byte ranges (start, end: a mapping may reach far beyond the file's end, so the recorder
    /// stops at the file's size) and the chunks (MAPPED_SETTLE_CHUNK_BYTES) that were dirty at
    /// the last pass. The recorder re-reads the chunks dirty now or at the last pass.
    pub fn settling(&self) -> Vec<Settling> {
        let mut out = Vec::new();
        for (path, f) in &self.files {
            let Some((last, _)) = &f.settle else {
                continue;
            };
            let ranges = f.ranges.iter().map(|(&s, &e)| (s, e)).collect();
            out.push((path.clone(), ranges, last.clone()));
        }
        out
    }

    /// A settling pass over `path` found `dirty` chunks: with none, its pages are all clean
    /// (and were re-read since they were dirty), so reports cover every later store.
    pub fn settle_pass(&mut self, path: &RelPath, dirty: BTreeSet<u64>) {
        if let Some(f) = self.files.get_mut(path) {
            match (&mut f.settle, dirty.is_empty()) {
                (s, true) => *s = None,
                (Some((last, _)), false) => *last = dirty,
                (None, false) => {}
            }
        }
    }

    /// Pages `offset..offset+len` of a mapped inode turned dirty (one folio, possibly large).
    pub fn on_dirty(&mut self, dev_ino: (u64, u64), offset: u64, len: u64, now: Instant) -> bool {
        let Some(path) = self.by_inode.get(&dev_ino) else {
            return false;
        };
        let Some(f) = self.files.get_mut(path) else {
            return false;
        };
        let first = offset / PAGE_BYTES;
        let n = len.div_ceil(PAGE_BYTES).clamp(1, MAPPED_MAX_FOLIO_PAGES);
        for p in first..first + n {
            if f.hot.len() < MAPPED_MAX_PAGES {
                f.hot.insert(p, now + Duration::from_millis(MAPPED_HOT_MS));
            }
        }
        true
    }

    /// The byte ranges to re-read now, coalesced, per file.
    pub fn due(&self, now: Instant) -> Vec<(RelPath, Vec<(u64, u64)>)> {
        let mut out = Vec::new();
        for (path, f) in &self.files {
            let mut pages: Vec<u64> = f
                .hot
                .iter()
                .filter(|(_, &t)| t > now)
                .map(|(&p, _)| p)
                .collect();
            if f.poll_until.is_some_and(|t| t > now) {
                for (&s, &e) in &f.ranges {
                    pages.extend(s / PAGE_BYTES..e.div_ceil(PAGE_BYTES));
                }
            }
            if pages.is_empty() {
                continue;
            }
            pages.sort_unstable();
            pages.dedup();
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for p in pages {
                match ranges.last_mut() {
                    Some((s, l)) if *s + *l == p * PAGE_BYTES && *l < (1 << 20) => *l += PAGE_BYTES,
                    _ => ranges.push((p * PAGE_BYTES, PAGE_BYTES)),
                }
            }
            out.push((path.clone(), ranges));
        }
        out
    }

    /// Content read at `offset` (page aligned): returns the runs of pages that changed since
    /// they were last journaled (and records their new hashes). A changed page stays hot.
    pub fn changed(
        &mut self,
        path: &RelPath,
        offset: u64,
        data: &[u8],
        now: Instant,
    ) -> Vec<(u64, Vec<u8>)> {
        let hashes: Vec<u64> = data
            .chunks(PAGE_BYTES as usize)
            .map(|c| self.hash(c))
            .collect();
        let Some(f) = self.files.get_mut(path) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        for (i, (h, chunk)) in hashes
            .iter()
            .zip(data.chunks(PAGE_BYTES as usize))
            .enumerate()
        {
            let page = offset / PAGE_BYTES + i as u64;
            if f.hashes.get(&page) == Some(h) {
                continue;
            }
            f.hashes.insert(page, *h);
            let hot = now + Duration::from_millis(MAPPED_HOT_MS);
            f.hot.insert(page, hot);
            if f.poll_until.is_some() {
                f.poll_until = Some(hot);
            }
            let at = page * PAGE_BYTES;
            match out.last_mut() {
                Some((s, d)) if *s + d.len() as u64 == at => d.extend_from_slice(chunk),
                _ => out.push((at, chunk.to_vec())),
            }
        }
        out
    }

    /// Forgets pages no longer hot (and, unless the file is polled or settling, their
    /// hashes). Files stay while their mapping may exist: a store through it long after the
    /// mapping was made reports a page of an inode that must still be known (regression: a
    /// mapping idle for 200 ms was forgotten with its inode, and its next stores were lost).
    /// Past MAPPED_MAX_FILES, idle files are forgotten (their next report goes through the
    /// recorder's fallback for unknown mapped inodes).
    pub fn expire(&mut self, now: Instant) {
        for f in self.files.values_mut() {
            f.hot.retain(|_, t| *t > now);
            if f.poll_until.is_some_and(|t| t <= now) {
                f.poll_until = None;
            }
            if f.settle.as_ref().is_some_and(|(_, t)| *t <= now) {
                f.settle = None;
            }
            if f.poll_until.is_none() && f.settle.is_none() {
                let hot = &f.hot;
                f.hashes.retain(|p, _| hot.contains_key(p));
            }
        }
        if self.files.len() > MAPPED_MAX_FILES {
            let mut excess = self.files.len() - MAPPED_MAX_FILES;
            self.files.retain(|_, f| {
                let idle = f.hot.is_empty() && f.poll_until.is_none() && f.settle.is_none();
                let evict = idle && excess > 0;
                excess -= usize::from(evict);
                !evict
            });
        }
        let files = &self.files;
        self.by_inode.retain(|_, p| files.contains_key(p));
        let by_inode = &self.by_inode;
        self.other_names.retain(|_, k| by_inode.contains_key(k));
    }

    /// Whether any file has pages to re-read (hot, polled or settling).
    pub fn active(&self) -> bool {
        self.files
            .values()
            .any(|f| !f.hot.is_empty() || f.poll_until.is_some() || f.settle.is_some())
    }

    /// A file event of inode `dev_ino` was journaled under `path`: if the inode is tracked
    /// under another name (a hard link), records naming `path` change its pages too.
    pub fn note_name(&mut self, dev_ino: (u64, u64), path: &RelPath) {
        if self.by_inode.get(&dev_ino).is_some_and(|p| p != path) {
            self.other_names.insert(path.clone(), dev_ino);
        }
    }

    /// A record is being journaled (in journal order). The remembered hash of a page is the
    /// content the replica holds for it as of the last record: a record that sets a page's
    /// bytes (ResyncData of whole pages) replaces it, any other change of the bytes forgets it.
    /// Without this, a page stored back through the mapping to the content last re-read after
    /// a write() had changed it was taken as unchanged, and the replica kept the write's bytes
    /// (regression test `mapped_pages_written_in_between_are_journaled_again`).
    pub fn journaled(&mut self, op: &Op) {
        let (path, from, to) = match op {
            Op::Write { path, offset, data } => {
                (path, *offset, offset.saturating_add(data.len() as u64))
            }
            Op::Dirty { path, offset, len } => (path, *offset, offset.saturating_add(*len)),
            Op::Fallocate {
                path,
                mode,
                offset,
                len,
            } => {
                let to = if shifts_bytes(*mode) {
                    u64::MAX
                } else {
                    offset.saturating_add(*len)
                };
                (path, *offset, to)
            }
            Op::Truncate { path, size } => (path, *size, u64::MAX),
            Op::Create { path, .. } | Op::Resync { path, .. } => (path, 0, u64::MAX),
            Op::ResyncData { path, offset, data } => {
                let hashes: Vec<(u64, u64)> = {
                    // The pages `data` starts at their beginning: their content is known, up
                    // to the end of `data` for the last one (the end of the file, as
                    // `changed` hashes it; forgetting it re-journaled a file's partial last
                    // page at every pass).
                    let first = offset.div_ceil(PAGE_BYTES) * PAGE_BYTES;
                    let skip = (first - offset) as usize;
                    data.get(skip..)
                        .unwrap_or_default()
                        .chunks(PAGE_BYTES as usize)
                        .enumerate()
                        .map(|(i, c)| (first / PAGE_BYTES + i as u64, self.hash(c)))
                        .collect()
                };
                if let Some(f) = self.file_named(path) {
                    let end = offset.saturating_add(data.len() as u64);
                    f.forget(*offset, end);
                    f.hashes.extend(hashes);
                }
                return;
            }
            _ => return,
        };
        if let Some(f) = self.file_named(path) {
            f.forget(from, to);
        }
    }

    /// Records were lost (the journal failed): nothing is known of what the replica holds.
    pub fn forget_hashes(&mut self) {
        for f in self.files.values_mut() {
            f.hashes.clear();
        }
    }

    /// The tracked file `path` names, directly or as another name of its inode.
    fn file_named(&mut self, path: &RelPath) -> Option<&mut File> {
        let path = match self.other_names.get(path) {
            Some(k) if !self.files.contains_key(path) => self.by_inode.get(k)?,
            _ => path,
        };
        self.files.get_mut(path)
    }

    /// A file or directory was renamed or removed: follow the files at or below it, or forget
    /// them.
    pub fn renamed(&mut self, from: &RelPath, to: Option<&RelPath>) {
        // Where each file under `from` goes (`from` itself for a removal: only "is it under").
        let dest = to.unwrap_or(from);
        let moved: Vec<(RelPath, RelPath)> = self
            .files
            .range(at_or_below(from))
            .filter_map(|(p, _)| {
                crate::races::renamed_path(p, from, dest, false).map(|np| (p.clone(), np))
            })
            .collect();
        // Other names at or below it are dropped: the next file event under a name's new
        // path registers it again (`note_name`, before its records are journaled).
        let dropped: Vec<RelPath> = self
            .other_names
            .range(at_or_below(from))
            .filter(|(p, _)| crate::races::renamed_path(p, from, dest, false).is_some())
            .map(|(p, _)| p.clone())
            .collect();
        for p in dropped {
            self.other_names.remove(&p);
        }
        for (p, np) in moved {
            let Some(f) = self.files.remove(&p) else {
                continue;
            };
            if to.is_some() {
                self.by_inode.insert(f.dev_ino, np.clone());
                self.files.insert(np, f);
            } else {
                self.by_inode.remove(&f.dev_ino);
            }
        }
    }
}

/// The keys from `p` up to, not including, `p` followed by the byte after '/': every path at
/// or below `p` (`p`, `p/...`) is in it, with a few that are not (`p-x`, `p.x`).
fn at_or_below(p: &RelPath) -> std::ops::Range<RelPath> {
    let mut end = p.as_bytes().to_vec();
    end.push(b'/' + 1);
    p.clone()..RelPath::new(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_pages_are_returned_and_stay_hot() {
        let mut m = MappedFiles::default();
        let t0 = Instant::now();
        let p = RelPath::new("db");
        let base = vec![0u8; 3 * 4096];
        m.on_mmap(p.clone(), (1, 2), 0, 3 * 4096, true, t0);
        // The first read journals every page it covers: nothing to compare with yet.
        assert_eq!(m.changed(&p, 0, &base, t0).len(), 1);
        assert!(m.on_dirty((1, 2), 4096, 4096, t0));
        assert!(!m.on_dirty((9, 9), 0, 4096, t0));
        let due = m.due(t0);
        assert_eq!(due, vec![(p.clone(), vec![(0, 3 * 4096)])]);
        let mut now = base.clone();
        now[5000] = 7;
        let ch = m.changed(&p, 0, &now, t0);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].0, 4096);
        assert_eq!(ch[0].1.len(), 4096);
        assert!(
            m.changed(&p, 0, &now, t0).is_empty(),
            "unchanged since journaled"
        );
        // Long after: nothing is due, but the mapped file stays known for its next report.
        let later = t0 + Duration::from_millis(MAPPED_HOT_MS + 1);
        assert!(m.due(later).is_empty());
        m.expire(later);
        assert!(!m.active());
        assert!(
            m.on_dirty((1, 2), 0, 4096, later),
            "regression: forgotten when idle"
        );
        assert!(m.active());
    }

    #[test]
    fn pages_changed_by_other_records_are_journaled_again() {
        let mut m = MappedFiles::default();
        let t0 = Instant::now();
        let (p, q) = (RelPath::new("db"), RelPath::new("link"));
        let a = vec![b'a'; 2 * 4096];
        m.on_mmap(p.clone(), (1, 2), 0, 2 * 4096, true, t0);
        assert_eq!(m.changed(&p, 0, &a, t0).len(), 1);
        // write() over page 0 by the mapped name: the page is read again whatever it holds.
        m.journaled(&Op::Write {
            path: p.clone(),
            offset: 10,
            data: vec![b'b'; 5],
        });
        assert_eq!(m.changed(&p, 0, &a, t0), vec![(0, a[..4096].to_vec())]);
        // ... and by a hard link of it (page 1).
        m.note_name((1, 2), &q);
        m.journaled(&Op::Write {
            path: q,
            offset: 4096,
            data: vec![b'b'; 4096],
        });
        assert_eq!(m.changed(&p, 0, &a, t0), vec![(4096, a[4096..].to_vec())]);
        // A truncate forgets the pages from its size on.
        m.journaled(&Op::Truncate {
            path: p.clone(),
            size: 4097,
        });
        assert_eq!(m.changed(&p, 0, &a, t0), vec![(4096, a[4096..].to_vec())]);
        // Pages of re-read data are known: the same content is not journaled twice,
        // other content is.
        m.journaled(&Op::ResyncData {
            path: p.clone(),
            offset: 0,
            data: vec![b'z'; 4096 + 100],
        });
        assert_eq!(m.changed(&p, 0, &a, t0).len(), 1, "page 0 now holds z");
        m.journaled(&Op::ResyncData {
            path: p.clone(),
            offset: 0,
            data: a.clone(),
        });
        assert!(m.changed(&p, 0, &a, t0).is_empty());
        // A file's partial last page, journaled from a re-read, is not journaled again.
        let short = vec![b'q'; 4096 + 1869];
        m.journaled(&Op::Truncate {
            path: p.clone(),
            size: short.len() as u64,
        });
        let again = m.changed(&p, 0, &short, t0);
        assert_eq!(again.len(), 1);
        for (at, data) in again {
            m.journaled(&Op::ResyncData {
                path: p.clone(),
                offset: at,
                data,
            });
        }
        assert!(m.changed(&p, 0, &short, t0).is_empty());
        // A lost journal: nothing is known.
        m.forget_hashes();
        assert_eq!(m.changed(&p, 0, &a, t0).len(), 1);
    }

    #[test]
    fn settling_files_are_watched_until_a_pass_finds_them_clean() {
        let mut m = MappedFiles::default();
        let t0 = Instant::now();
        let p = RelPath::new("db");
        let c = MAPPED_SETTLE_CHUNK_BYTES;
        m.on_mmap(p.clone(), (1, 2), 0, 3 * c, false, t0);
        assert!(m.settling().is_empty());
        m.settle(&p, BTreeSet::from([1]), t0);
        let s = m.settling();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1, vec![(0, 3 * c)]);
        assert_eq!(s[0].2, BTreeSet::from([1]));
        // No hot pages, no polling: only settling keeps it active.
        m.expire(t0 + Duration::from_millis(MAPPED_HOT_MS + 1));
        assert!(m.active());
        m.settle_pass(&p, BTreeSet::from([2]));
        assert_eq!(m.settling()[0].2, BTreeSet::from([2]));
        m.settle_pass(&p, BTreeSet::new());
        assert!(m.settling().is_empty());
        m.expire(t0 + Duration::from_millis(MAPPED_HOT_MS + 1));
        assert!(!m.active());
        // And at most MAPPED_SETTLE_MAX_MS.
        m.settle(&p, BTreeSet::from([0]), t0);
        m.expire(t0 + Duration::from_millis(MAPPED_SETTLE_MAX_MS + 1));
        assert!(!m.active());
    }

    #[test]
    fn renames_are_followed() {
        let mut m = MappedFiles::default();
        let t0 = Instant::now();
        m.on_mmap(RelPath::new("a"), (1, 2), 0, 4096, true, t0);
        m.renamed(&RelPath::new("a"), Some(&RelPath::new("b")));
        assert_eq!(m.due(t0)[0].0, RelPath::new("b"));
        assert!(m.on_dirty((1, 2), 0, 4096, t0));
        m.renamed(&RelPath::new("b"), None);
        assert!(m.is_empty());
    }

    #[test]
    fn a_renamed_directory_moves_only_the_files_below_it() {
        let mut m = MappedFiles::default();
        let t0 = Instant::now();
        let names = ["d/x", "d/e/y", "d-wal", "d.1", "d", "dd/z", "c", "e"];
        for (i, n) in names.iter().enumerate() {
            m.on_mmap(RelPath::new(*n), (1, i as u64), 0, 4096, true, t0);
        }
        m.renamed(&RelPath::new("d"), Some(&RelPath::new("n/d2")));
        let mut now: Vec<RelPath> = m.due(t0).into_iter().map(|(p, _)| p).collect();
        now.sort();
        let mut want: Vec<RelPath> = [
            "n/d2/x", "n/d2/e/y", "d-wal", "d.1", "n/d2", "dd/z", "c", "e",
        ]
        .iter()
        .map(|n| RelPath::new(*n))
        .collect();
        want.sort();
        assert_eq!(now, want);
        assert_eq!(m.inode_of(&RelPath::new("n/d2/e/y")), Some((1, 1)));
        m.renamed(&RelPath::new("n"), None);
        assert_eq!(m.due(t0).len(), 5);
        assert!(!m.knows((1, 0)) && m.knows((1, 2)));
    }
}
