//! The recorder: eBPF events -> journal records, with a base epoch at start.
//!
//! Order of work (docs/capture.md): load the probes (events start flowing into the ring buffer),
//! start a base (BaseBegin, then a Resync + ResyncData of every entry, draining the ring between
//! entries so live changes keep their place in the order, then BaseEnd), then journal live events
//! until stopped. Every restart (clean or after kill -9) starts with a new base, which covers
//! whatever changed while the recorder was down. A lost kernel event (a gap in the kernel's event
//! counter, or ring buffer drops) becomes a Gap record, a counter and a log line, and is healed by
//! a new base (targeted resync of the affected inodes is planned).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foxing_probes::layout::*;
use foxing_probes::{ProbeConfig, Probes, RawEvent};
use foxing_proto::record::{EntryKind, EntryMeta, Xattr};
use foxing_proto::time::now_ns;
use foxing_proto::{Event, GapReason, Op, RelPath, SyncKind, Writer};

use crate::{Journal, JournalOptions};

/// Content is journaled in chunks of at most this many bytes.
pub const RESYNC_CHUNK_BYTES: usize = 1 << 20;
/// Events drained from the ring buffer per batch.
pub const EVENTS_PER_BATCH: usize = 4096;
/// Longest wait for events when nothing is due.
pub const IDLE_POLL_MS: u64 = 50;

#[derive(Clone, Debug)]
pub struct RecorderOptions {
    pub root: PathBuf,
    pub journal: PathBuf,
    pub journal_opts: JournalOptions,
    pub payload_cap_bytes: u32,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecorderStats {
    pub events: u64,
    pub records: u64,
    pub payload_bytes: u64,
    pub inexact_ranges: u64,
    pub lost_events: u64,
    pub bases: u64,
    pub base_entries: u64,
}

pub struct Recorder {
    opts: RecorderOptions,
    journal: Journal,
    probes: Probes,
    next_kernel_seq: Option<u64>,
    events: Vec<RawEvent>,
    pub stats: RecorderStats,
    last_drops: u64,
}

fn writer_of(h: &FxEvent) -> Writer {
    Writer {
        pid: h.pid,
        tgid: h.tgid,
        uid: h.uid,
        gid: h.gid,
        cgroup_id: h.cgroup_id,
        comm: h.comm,
    }
}

fn recorder_writer() -> Writer {
    let mut comm = [0u8; 16];
    comm[..14].copy_from_slice(b"foxing-journal");
    let pid = std::process::id();
    Writer {
        pid,
        tgid: pid,
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        cgroup_id: 0,
        comm,
    }
}

fn rel(root: &Path, p: &Path) -> Option<RelPath> {
    use std::os::unix::ffi::OsStrExt;
    let r = p.strip_prefix(root).ok()?;
    let b = r.as_os_str().as_bytes();
    (!b.is_empty()).then(|| RelPath::new(b))
}

fn entry_meta(path: &Path, md: &std::fs::Metadata) -> std::io::Result<EntryMeta> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::Regular
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_symlink() {
        EntryKind::Symlink {
            target: std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_socket() {
        EntryKind::Socket
    } else if ft.is_char_device() {
        EntryKind::CharDevice { rdev: md.rdev() }
    } else {
        EntryKind::BlockDevice { rdev: md.rdev() }
    };
    let mut xattrs = Vec::new();
    if !ft.is_symlink() {
        let mut buf = vec![0u8; 64 * 1024];
        if let Ok(n) = rustix::fs::llistxattr(path, &mut buf[..]) {
            for name in buf[..n].split(|&c| c == 0).filter(|s| !s.is_empty()) {
                let mut v = vec![0u8; 64 * 1024];
                if let Ok(m) =
                    rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut v[..])
                {
                    xattrs.push(Xattr {
                        name: name.to_vec(),
                        value: v[..m].to_vec(),
                    });
                }
            }
        }
    }
    Ok(EntryMeta {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if ft.is_file() { md.size() } else { 0 },
        atime_ns: md.atime() * 1_000_000_000 + md.atime_nsec(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        dev: md.dev(),
        ino: md.ino(),
        nlink: md.nlink() as u32,
        xattrs,
    })
}

/// The data ranges of a file (holes skipped), as (offset, len).
fn data_ranges(f: &File, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::SeekFrom;
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(f, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, size)], // no SEEK_DATA: read everything
        };
        let end = match rustix::fs::seek(f, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(_) => size,
        };
        if end > start {
            out.push((start, end - start));
        }
        pos = end.max(start + 1);
    }
    out
}

impl Recorder {
    pub fn start(opts: RecorderOptions) -> anyhow::Result<Recorder> {
        use anyhow::Context;
        let md = std::fs::metadata(&opts.root)
            .with_context(|| format!("watched root {}", opts.root.display()))?;
        anyhow::ensure!(
            md.is_dir(),
            "watched root {} is not a directory",
            opts.root.display()
        );
        anyhow::ensure!(
            rustix::process::geteuid().is_root(),
            "foxing-journal record needs root (CAP_BPF and CAP_PERFMON) to load its eBPF probes"
        );
        anyhow::ensure!(
            Path::new("/sys/kernel/btf/vmlinux").exists(),
            "this kernel has no BTF (/sys/kernel/btf/vmlinux): Foxing's probes need CONFIG_DEBUG_INFO_BTF"
        );
        let root = opts
            .root
            .canonicalize()
            .with_context(|| format!("watched root {}", opts.root.display()))?;
        let journal = Journal::open(&opts.journal, opts.journal_opts.clone())
            .with_context(|| format!("cannot open journal {}", opts.journal.display()))?;
        let probes = Probes::load(&ProbeConfig {
            root: root.clone(),
            payload_cap_bytes: opts.payload_cap_bytes,
        })
        .context("cannot load the eBPF probes")?;
        let opts = RecorderOptions { root, ..opts };
        Ok(Recorder {
            opts,
            journal,
            probes,
            next_kernel_seq: None,
            events: Vec::new(),
            stats: RecorderStats::default(),
            last_drops: 0,
        })
    }

    pub fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }

    fn append(&mut self, evs: Vec<Event>) -> anyhow::Result<()> {
        if evs.is_empty() {
            return Ok(());
        }
        self.stats.records += evs.len() as u64;
        self.journal.append(evs)?;
        Ok(())
    }

    fn own(&self, op: Op) -> Event {
        Event {
            time_ns: now_ns(),
            writer: recorder_writer(),
            op,
        }
    }

    /// Drains the ring buffer, waiting up to `timeout` for the first event; journals them.
    pub fn pump(&mut self, timeout: Duration) -> anyhow::Result<usize> {
        let mut evs = std::mem::take(&mut self.events);
        evs.clear();
        self.probes.poll(timeout, EVENTS_PER_BATCH, &mut evs)?;
        let n = evs.len();
        let mut out = Vec::with_capacity(n);
        let mut lost = 0u64;
        for ev in &evs {
            if let Some(expect) = self.next_kernel_seq {
                if ev.header.seq > expect {
                    lost += ev.header.seq - expect;
                }
            }
            self.next_kernel_seq = Some(ev.header.seq + 1);
            self.convert(ev, &mut out);
        }
        self.stats.events += n as u64;
        self.events = evs;
        let drops = self.probes.drops()?;
        if lost > 0 || drops > self.last_drops {
            let lost = lost.max(drops - self.last_drops);
            self.last_drops = drops;
            self.stats.lost_events += lost;
            tracing::warn!(lost, "kernel events were lost (ring buffer full); journaling a gap and a new base to heal it");
            out.push(self.own(Op::Gap {
                lost,
                reason: GapReason::RingFull,
            }));
            self.append(out)?;
            let gap_seq = self.journal.next_seq() - 1;
            self.base()?;
            let heal = self.own(Op::GapHealed { gap_seq });
            self.append(vec![heal])?;
        } else {
            self.append(out)?;
        }
        self.journal.maybe_sync()?;
        Ok(n)
    }

    fn convert(&mut self, ev: &RawEvent, out: &mut Vec<Event>) {
        let h = &ev.header;
        let path = RelPath::new(ev.path.clone());
        if path.check().is_err() {
            tracing::warn!(path = %path, "event with an unusable path skipped");
            return;
        }
        let time_ns = self.probes.wall_ns(h.time_ns);
        let w = writer_of(h);
        let mk = |op| Event {
            time_ns,
            writer: w.clone(),
            op,
        };
        match h.op {
            FX_OP_WRITE if h.flags & FX_F_INEXACT == 0 => {
                self.stats.payload_bytes += ev.data.len() as u64;
                out.push(mk(Op::Write {
                    path,
                    offset: h.offset,
                    data: ev.data.clone(),
                }));
            }
            FX_OP_WRITE => {
                self.stats.inexact_ranges += 1;
                out.push(mk(Op::Dirty {
                    path: path.clone(),
                    offset: h.offset,
                    len: h.len,
                }));
                self.reread(&path, h.offset, h.len, time_ns, out);
            }
            FX_OP_FSYNC | FX_OP_FDATASYNC => {
                let kind = if h.op == FX_OP_FSYNC {
                    SyncKind::Fsync
                } else {
                    SyncKind::Fdatasync
                };
                out.push(mk(Op::Sync {
                    path: Some(path),
                    kind,
                }));
            }
            other => tracing::warn!(op = other, "unknown event op skipped"),
        }
    }

    /// Re-reads a range of a source file (a write too large to carry, or lost) as ResyncData.
    fn reread(
        &mut self,
        path: &RelPath,
        offset: u64,
        len: u64,
        time_ns: u64,
        out: &mut Vec<Event>,
    ) {
        use std::os::unix::ffi::OsStrExt;
        let full = self
            .opts
            .root
            .join(std::ffi::OsStr::from_bytes(path.as_bytes()));
        let Ok(f) = File::open(&full) else { return };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let end = offset.saturating_add(len).min(size);
        let mut pos = offset;
        while pos < end {
            let n = ((end - pos) as usize).min(RESYNC_CHUNK_BYTES);
            let mut buf = vec![0u8; n];
            match f.read_at(&mut buf, pos) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    buf.truncate(k);
                    out.push(Event {
                        time_ns,
                        writer: recorder_writer(),
                        op: Op::ResyncData {
                            path: path.clone(),
                            offset: pos,
                            data: buf,
                        },
                    });
                    pos += k as u64;
                }
            }
        }
    }

    /// A base epoch: BaseBegin, every entry's metadata and content, BaseEnd. Live events keep
    /// being journaled between entries.
    pub fn base(&mut self) -> anyhow::Result<u64> {
        let base_id = now_ns();
        let begin = self.own(Op::BaseBegin { base_id });
        self.append(vec![begin])?;
        let root = self.opts.root.clone();
        let mut stack = vec![root.clone()];
        let mut n = 0u64;
        let mut links: HashMap<(u64, u64), RelPath> = HashMap::new();
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list a directory during the base");
                    continue;
                }
            };
            entries.sort();
            for p in entries.into_iter().rev() {
                // Events that happened before this entry's read get earlier seqs.
                self.pump(Duration::ZERO)?;
                let Some(rp) = rel(&root, &p) else { continue };
                let md = match std::fs::symlink_metadata(&p) {
                    Ok(md) => md,
                    Err(_) => continue, // gone since the listing: its unlink is journaled live
                };
                let meta = match entry_meta(&p, &md) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                n += 1;
                if md.is_file() && md.nlink() > 1 {
                    if let Some(first) = links.get(&(md.dev(), md.ino())) {
                        let ev = self.own(Op::Link {
                            existing: first.clone(),
                            new: rp.clone(),
                        });
                        self.append(vec![ev])?;
                        continue;
                    }
                    links.insert((md.dev(), md.ino()), rp.clone());
                }
                let mut evs = vec![self.own(Op::Resync {
                    path: rp.clone(),
                    meta: Some(meta),
                })];
                if md.is_file() {
                    if let Ok(f) = File::open(&p) {
                        for (off, len) in data_ranges(&f, md.size()) {
                            self.reread_into(&f, &rp, off, len, &mut evs);
                        }
                    }
                } else if md.is_dir() {
                    stack.push(p.clone());
                }
                self.append(evs)?;
            }
        }
        let end = self.own(Op::BaseEnd { base_id });
        self.append(vec![end])?;
        self.stats.bases += 1;
        self.stats.base_entries += n;
        tracing::info!(base_id, entries = n, "base complete");
        Ok(base_id)
    }

    fn reread_into(&self, f: &File, path: &RelPath, offset: u64, len: u64, out: &mut Vec<Event>) {
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = ((end - pos) as usize).min(RESYNC_CHUNK_BYTES);
            let mut buf = vec![0u8; n];
            match f.read_at(&mut buf, pos) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    buf.truncate(k);
                    out.push(self.own(Op::ResyncData {
                        path: path.clone(),
                        offset: pos,
                        data: buf,
                    }));
                    pos += k as u64;
                }
            }
        }
    }

    /// Base first, then live events until `stop` is set; then a final drain and sync.
    pub fn run(&mut self, stop: &AtomicBool, base_requested: &AtomicBool) -> anyhow::Result<()> {
        self.base()?;
        self.journal.sync()?;
        while !stop.load(Ordering::Relaxed) {
            if base_requested.swap(false, Ordering::Relaxed) {
                self.base()?;
            }
            let wait = match self.journal.sync_deadline() {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_millis(IDLE_POLL_MS),
            };
            self.pump(wait.min(Duration::from_millis(IDLE_POLL_MS)))?;
        }
        // Final drain: whatever the kernel handed over before we stopped.
        while self.pump(Duration::from_millis(10))? > 0 {}
        self.journal.sync()?;
        Ok(())
    }
}
