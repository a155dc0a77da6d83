//! Foxing's eBPF probes: the C programs in bpf/ (one .bpf.c per concern, layouts in foxing.h),
//! built by build.rs, loaded and attached here with aya, and their ring buffer drained into
//! [`RawEvent`]s for the recorder.

pub mod layout;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};

pub use layout::FxEvent;

/// The linked eBPF object.
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/foxing.bpf.o"));
/// sha256 of the bpf/ sources the build saw.
pub const SOURCES_SHA256: &str = env!("FOXING_BPF_SOURCES_SHA256");
/// "clang" when this build compiled the object, "prebuilt" when it used the committed one.
pub const BUILT_WITH: &str = env!("FOXING_BPF_BUILT");

/// Every program in the object and the syscall tracepoint it attaches to.
pub const TRACEPOINTS: &[(&str, &str)] = &[
    // Mount changes: they only invalidate the kernel-side path cache.
    ("fx_enter_mount", "sys_enter_mount"),
    ("fx_exit_mount", "sys_exit_mount"),
    ("fx_enter_umount", "sys_enter_umount"),
    ("fx_exit_umount", "sys_exit_umount"),
    ("fx_enter_move_mount", "sys_enter_move_mount"),
    ("fx_exit_move_mount", "sys_exit_move_mount"),
    ("fx_enter_pivot_root", "sys_enter_pivot_root"),
    ("fx_exit_pivot_root", "sys_exit_pivot_root"),
    ("fx_enter_write", "sys_enter_write"),
    ("fx_exit_write", "sys_exit_write"),
    ("fx_enter_pwrite64", "sys_enter_pwrite64"),
    ("fx_exit_pwrite64", "sys_exit_pwrite64"),
    ("fx_enter_writev", "sys_enter_writev"),
    ("fx_exit_writev", "sys_exit_writev"),
    ("fx_enter_pwritev", "sys_enter_pwritev"),
    ("fx_exit_pwritev", "sys_exit_pwritev"),
    ("fx_enter_pwritev2", "sys_enter_pwritev2"),
    ("fx_exit_pwritev2", "sys_exit_pwritev2"),
    ("fx_enter_copy_file_range", "sys_enter_copy_file_range"),
    ("fx_exit_copy_file_range", "sys_exit_copy_file_range"),
    ("fx_enter_sendfile64", "sys_enter_sendfile64"),
    ("fx_exit_sendfile64", "sys_exit_sendfile64"),
    ("fx_enter_splice", "sys_enter_splice"),
    ("fx_exit_splice", "sys_exit_splice"),
    ("fx_enter_ioctl", "sys_enter_ioctl"),
    ("fx_exit_ioctl", "sys_exit_ioctl"),
    ("fx_enter_fsync", "sys_enter_fsync"),
    ("fx_exit_fsync", "sys_exit_fsync"),
    ("fx_enter_fdatasync", "sys_enter_fdatasync"),
    ("fx_exit_fdatasync", "sys_exit_fdatasync"),
    ("fx_enter_sync_file_range", "sys_enter_sync_file_range"),
    ("fx_exit_sync_file_range", "sys_exit_sync_file_range"),
    ("fx_enter_syncfs", "sys_enter_syncfs"),
    ("fx_exit_syncfs", "sys_exit_syncfs"),
    ("fx_enter_openat", "sys_enter_openat"),
    ("fx_exit_openat", "sys_exit_openat"),
    ("fx_enter_open", "sys_enter_open"),
    ("fx_exit_open", "sys_exit_open"),
    ("fx_enter_creat", "sys_enter_creat"),
    ("fx_exit_creat", "sys_exit_creat"),
    ("fx_enter_openat2", "sys_enter_openat2"),
    ("fx_exit_openat2", "sys_exit_openat2"),
    ("fx_enter_ftruncate", "sys_enter_ftruncate"),
    ("fx_exit_ftruncate", "sys_exit_ftruncate"),
    ("fx_enter_fchmod", "sys_enter_fchmod"),
    ("fx_exit_fchmod", "sys_exit_fchmod"),
    ("fx_enter_fchown", "sys_enter_fchown"),
    ("fx_exit_fchown", "sys_exit_fchown"),
    ("fx_enter_fallocate", "sys_enter_fallocate"),
    ("fx_exit_fallocate", "sys_exit_fallocate"),
    ("fx_enter_unlink", "sys_enter_unlink"),
    ("fx_exit_unlink", "sys_exit_unlink"),
    ("fx_enter_unlinkat", "sys_enter_unlinkat"),
    ("fx_exit_unlinkat", "sys_exit_unlinkat"),
    ("fx_enter_rmdir", "sys_enter_rmdir"),
    ("fx_exit_rmdir", "sys_exit_rmdir"),
    ("fx_enter_mkdir", "sys_enter_mkdir"),
    ("fx_exit_mkdir", "sys_exit_mkdir"),
    ("fx_enter_mkdirat", "sys_enter_mkdirat"),
    ("fx_exit_mkdirat", "sys_exit_mkdirat"),
    ("fx_enter_rename", "sys_enter_rename"),
    ("fx_exit_rename", "sys_exit_rename"),
    ("fx_enter_renameat", "sys_enter_renameat"),
    ("fx_exit_renameat", "sys_exit_renameat"),
    ("fx_enter_renameat2", "sys_enter_renameat2"),
    ("fx_exit_renameat2", "sys_exit_renameat2"),
    ("fx_enter_link", "sys_enter_link"),
    ("fx_exit_link", "sys_exit_link"),
    ("fx_enter_linkat", "sys_enter_linkat"),
    ("fx_exit_linkat", "sys_exit_linkat"),
    ("fx_enter_symlink", "sys_enter_symlink"),
    ("fx_exit_symlink", "sys_exit_symlink"),
    ("fx_enter_symlinkat", "sys_enter_symlinkat"),
    ("fx_exit_symlinkat", "sys_exit_symlinkat"),
    ("fx_enter_chmod", "sys_enter_chmod"),
    ("fx_exit_chmod", "sys_exit_chmod"),
    ("fx_enter_fchmodat", "sys_enter_fchmodat"),
    ("fx_exit_fchmodat", "sys_exit_fchmodat"),
    ("fx_enter_fchmodat2", "sys_enter_fchmodat2"),
    ("fx_exit_fchmodat2", "sys_exit_fchmodat2"),
    ("fx_enter_chown", "sys_enter_chown"),
    ("fx_exit_chown", "sys_exit_chown"),
    ("fx_enter_lchown", "sys_enter_lchown"),
    ("fx_exit_lchown", "sys_exit_lchown"),
    ("fx_enter_fchownat", "sys_enter_fchownat"),
    ("fx_exit_fchownat", "sys_exit_fchownat"),
    ("fx_enter_truncate", "sys_enter_truncate"),
    ("fx_exit_truncate", "sys_exit_truncate"),
    ("fx_enter_mknod", "sys_enter_mknod"),
    ("fx_exit_mknod", "sys_exit_mknod"),
    ("fx_enter_mknodat", "sys_enter_mknodat"),
    ("fx_exit_mknodat", "sys_exit_mknodat"),
    ("fx_enter_bind", "sys_enter_bind"),
    ("fx_exit_bind", "sys_exit_bind"),
    ("fx_enter_utimensat", "sys_enter_utimensat"),
    ("fx_exit_utimensat", "sys_exit_utimensat"),
    ("fx_enter_utime", "sys_enter_utime"),
    ("fx_exit_utime", "sys_exit_utime"),
    ("fx_enter_utimes", "sys_enter_utimes"),
    ("fx_exit_utimes", "sys_exit_utimes"),
    ("fx_enter_futimesat", "sys_enter_futimesat"),
    ("fx_exit_futimesat", "sys_exit_futimesat"),
    ("fx_enter_setxattr", "sys_enter_setxattr"),
    ("fx_exit_setxattr", "sys_exit_setxattr"),
    ("fx_enter_lsetxattr", "sys_enter_lsetxattr"),
    ("fx_exit_lsetxattr", "sys_exit_lsetxattr"),
    ("fx_enter_fsetxattr", "sys_enter_fsetxattr"),
    ("fx_exit_fsetxattr", "sys_exit_fsetxattr"),
    ("fx_enter_removexattr", "sys_enter_removexattr"),
    ("fx_exit_removexattr", "sys_exit_removexattr"),
    ("fx_enter_lremovexattr", "sys_enter_lremovexattr"),
    ("fx_exit_lremovexattr", "sys_exit_lremovexattr"),
    ("fx_enter_fremovexattr", "sys_enter_fremovexattr"),
    ("fx_exit_fremovexattr", "sys_exit_fremovexattr"),
    ("fx_enter_setxattrat", "sys_enter_setxattrat"),
    ("fx_exit_setxattrat", "sys_exit_setxattrat"),
    ("fx_enter_removexattrat", "sys_enter_removexattrat"),
    ("fx_exit_removexattrat", "sys_exit_removexattrat"),
    ("fx_exit_sync", "sys_exit_sync"),
    ("fx_enter_mmap", "sys_enter_mmap"),
    ("fx_exit_mmap", "sys_exit_mmap"),
    ("fx_exit_msync", "sys_exit_msync"),
    ("fx_enter_io_uring_enter", "sys_enter_io_uring_enter"),
    ("fx_exit_io_uring_enter", "sys_exit_io_uring_enter"),
    ("fx_enter_io_submit", "sys_enter_io_submit"),
    ("fx_exit_io_submit", "sys_exit_io_submit"),
];

/// BTF-enabled tracepoints (tp_btf): program name and kernel tracepoint.
pub const BTF_TRACEPOINTS: &[(&str, &str)] = &[
    ("fx_dirty_folio", "writeback_dirty_folio"),
    // Completion before submission (like exits before enters): a path operation's event kept
    // at a submission is then always taken at its completion. A completion whose submission
    // ran before attaching finds nothing kept and reports an untracked change, which the
    // recorder ignores when it completed before attaching ended (its first base covers it).
    ("fx_uring_complete", "io_uring_complete"),
    ("fx_uring_submit", "io_uring_submit_req"),
    ("fx_dio_complete", "iomap_dio_complete"),
];

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("watched root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the eBPF object failed (are you root? is BTF at /sys/kernel/btf/vmlinux?)")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("polling the ring buffer: {0}")]
    Poll(#[source] std::io::Error),
    #[error("reading an eBPF program's info (bpf BPF_OBJ_GET_INFO_BY_FD): {0}")]
    ProgInfo(#[source] std::io::Error),
    #[error("reading the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(String),
}

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub root: PathBuf,
    /// Writes up to this many bytes carry their payload; longer ones are inexact ranges.
    pub payload_cap_bytes: u32,
    /// Size of the kernel ring buffer (a power of two, at least one page).
    pub ring_size_bytes: u32,
}

/// Default kernel ring buffer size.
pub const DEFAULT_RING_SIZE_BYTES: u32 = 64 << 20;

/// One event from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub header: FxEvent,
    /// Path relative to the watched root.
    pub path: Vec<u8>,
    pub data: Vec<u8>,
}

impl RawEvent {
    /// Parses a ring buffer record; `None` if it is malformed (counted by the caller).
    pub fn parse(b: &[u8]) -> Option<RawEvent> {
        let h = FxEvent::parse(b)?;
        let p0 = layout::FX_EVENT_LEN;
        let p1 = p0.checked_add(h.path_len as usize)?;
        let d1 = p1.checked_add(h.data_len as usize)?;
        if d1 > b.len() {
            return None;
        }
        Some(RawEvent {
            header: h,
            path: b[p0..p1].to_vec(),
            data: b[p1..d1].to_vec(),
        })
    }
}

pub struct Probes {
    /// CLOCK_BOOTTIME when every program was attached: events before it (an io_uring request in
    /// flight while attaching) precede the base every recorder starts with.
    pub attached_boot_ns: u64,
    /// Every attachment; dropped (detached) in parallel, see `Drop`.
    links: Vec<Box<dyn Send>>,
    /// The watched root, open for as long as the probes run (`self_root_fd`).
    _root_dir: std::fs::File,
    /// The watched root's (kernel dev, ino): the directory the probes filter by.
    root_id: (u64, u64),
    _ebpf: Ebpf,
    /// Every attached program, to read how often the kernel skipped running it.
    programs: Vec<std::os::fd::OwnedFd>,
    ring: RingBuf<MapData>,
    /// The last drain stopped at an empty ring.
    ring_drained: bool,
    drops: PerCpuArray<MapData, u64>,
    ns_inflight: Array<MapData, u64>,
    dirty: aya::maps::HashMap<MapData, InodeKey, u64>,
    dirty_chunks: aya::maps::HashMap<MapData, ChunkKey, u64>,
    dirty_verdicts: aya::maps::HashMap<MapData, InodeKey, u64>,
    mmapped: aya::maps::HashMap<MapData, InodeKey, u64>,
    /// drops[1] as last read: marks the dirty map could not take.
    dirty_full_seen: u64,
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, to turn event times into wall-clock times.
    pub boot_to_wall_ns: i128,
}

impl Drop for Probes {
    /// Detaching a tracepoint program waits for RCU grace periods in the kernel; one after
    /// another, the ~70 programs took 9.7 s to detach here (a recorder's stop). Detached from
    /// concurrent threads they take 5.3 s: the syscall tracepoints' detaches still wait in
    /// turn (the kernel holds event_mutex across the wait), the others share grace periods.
    fn drop(&mut self) {
        let links = std::mem::take(&mut self.links);
        std::thread::scope(|s| {
            for l in links {
                s.spawn(move || drop(l));
            }
        });
    }
}

/// `struct fx_inode_key` (bpf/common.bpf.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

// SAFETY: two u64 fields, no padding; every bit pattern is valid.
unsafe impl aya::Pod for InodeKey {}

/// `struct fx_chunk_key` (bpf/common.bpf.h): a CHUNK_BYTES-aligned chunk of a file.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub dev: u64,
    pub ino: u64,
    pub chunk: u64,
}

// SAFETY: three u64 fields, no padding; every bit pattern is valid.
unsafe impl aya::Pod for ChunkKey {}

/// Size of the chunks dropped writes mark (FX_CHUNK_SHIFT in bpf/common.bpf.h).
pub const CHUNK_BYTES: u64 = 1 << 20;

/// Inodes whose events the kernel dropped, from [`Probes::take_dirty`].
#[derive(Debug, Default)]
pub struct DirtyInodes {
    /// (kernel dev, ino); (0, 0) for dropped events that carry no inode.
    pub inodes: Vec<(u64, u64)>,
    /// Chunks ((dev, ino), offset / CHUNK_BYTES) of dropped writes that touched few chunks.
    pub chunks: Vec<((u64, u64), u64)>,
    /// Some marks were lost (the map was full): only a whole-tree base heals.
    pub overflowed: bool,
}

/// The kernel's dev_t encoding (MAJOR << 20 | MINOR) of a userspace st_dev.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = rustix::fs::major(st_dev) as u64;
    let minor = rustix::fs::minor(st_dev) as u64;
    (major << 20) | minor
}

/// One drain of the ring takes at most this many bytes of records (with their payloads), so a
/// batch of large writes does not hold the whole ring's worth twice in memory.
pub const DRAIN_MAX_BYTES: usize = 8 << 20;

/// A change of the wall clock's offset to the boot clock above this is a step (settimeofday,
/// an NTP step); both clocks are slewed alike, so anything smaller is reading jitter.
pub const CLOCK_STEP_MIN_NS: i128 = 10_000_000;

fn boot_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn boot_to_wall_ns() -> i128 {
    let ts = |c| {
        let t = rustix::time::clock_gettime(c);
        t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
    };
    ts(rustix::time::ClockId::Realtime) - ts(rustix::time::ClockId::Boottime)
}

impl Probes {
    /// The watched root's (kernel dev, ino): the directory whose subtree the probes report,
    /// whatever name it has now.
    pub fn root_id(&self) -> (u64, u64) {
        self.root_id
    }

    /// Loads and attaches every probe for `cfg.root`. Needs root (CAP_BPF + CAP_PERFMON).
    pub fn load(cfg: &ProbeConfig) -> Result<Probes, ProbeError> {
        // Held open while the probes run: through it they learn the root's superblock (to tell
        // which mount namespaces can reach the root at all). Its identity is the open
        // directory's, so both name the same directory even if the path is replaced meanwhile.
        let root_dir = std::fs::File::open(&cfg.root).map_err(|e| ProbeError::Root {
            path: cfg.root.clone(),
            source: e,
        })?;
        let st = rustix::fs::fstat(&root_dir).map_err(|e| ProbeError::Root {
            path: cfg.root.clone(),
            source: e.into(),
        })?;
        let dev = kernel_dev(st.st_dev);
        let ino = st.st_ino;
        let root_fd: i32 = std::os::fd::AsRawFd::as_raw_fd(&root_dir);
        let tgid = std::process::id();
        let cap = cfg.payload_cap_bytes.min(layout::FX_PAYLOAD_MAX as u32);
        ensure_tracefs();
        let cpus = possible_cpus();
        let mut ebpf = EbpfLoader::new()
            // `inflight` is task-local storage, used only by the programs: aya 0.14 has no
            // userspace type for it, which is fine.
            .allow_unsupported_maps()
            .map_max_entries("scratch", 2 * cpus)
            .map_max_entries("events", cfg.ring_size_bytes.max(4096).next_power_of_two())
            .override_global("root_dev", &dev, true)
            .override_global("root_ino", &ino, true)
            .override_global("self_tgid", &tgid, true)
            .override_global("self_root_fd", &root_fd, true)
            .override_global("payload_cap_bytes", &cap, true)
            .override_global("nr_cpus", &cpus, true)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        let mut programs = Vec::new();
        let mut links: Vec<Box<dyn Send>> = Vec::new();
        // Every exit program before any enter program: a syscall whose enter ran (saving its
        // arguments, counting itself into its inode's writers slot, marking a rename in flight)
        // must find its exit attached, or the slot stays busy for good (every later write to
        // an inode hashed there is then re-read as concurrent: seen in CI while another
        // recorder's detach held up this one's attach between sys_enter_write and
        // sys_exit_write). An exit whose enter ran before attaching finds nothing saved.
        let exits_first = TRACEPOINTS
            .iter()
            .filter(|(_, tp)| tp.starts_with("sys_exit_"))
            .chain(
                TRACEPOINTS
                    .iter()
                    .filter(|(_, tp)| !tp.starts_with("sys_exit_")),
            );
        for (name, tp) in exits_first {
            let prog: &mut TracePoint = ebpf
                .program_mut(name)
                .ok_or(ProbeError::MissingProgram(name))?
                .try_into()
                .map_err(|source| ProbeError::Program { name, source })?;
            prog.load()
                .map_err(|source| ProbeError::Program { name, source })?;
            let id = prog
                .attach("syscalls", tp)
                .map_err(|source| ProbeError::Program { name, source })?;
            programs.push(program_fd(prog.fd(), name)?);
            links.push(Box::new(
                prog.take_link(id)
                    .map_err(|source| ProbeError::Program { name, source })?,
            ));
        }
        let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::Btf(e.to_string()))?;
        for (name, tp) in BTF_TRACEPOINTS {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or(ProbeError::MissingProgram(name))?
                .try_into()
                .map_err(|source| ProbeError::Program { name, source })?;
            prog.load(tp, &btf)
                .map_err(|source| ProbeError::Program { name, source })?;
            let id = prog
                .attach()
                .map_err(|source| ProbeError::Program { name, source })?;
            programs.push(program_fd(prog.fd(), name)?);
            links.push(Box::new(
                prog.take_link(id)
                    .map_err(|source| ProbeError::Program { name, source })?,
            ));
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("events")
                .ok_or(ProbeError::MissingMap("events"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "events",
            source,
        })?;
        let drops = PerCpuArray::try_from(
            ebpf.take_map("drops")
                .ok_or(ProbeError::MissingMap("drops"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "drops",
            source,
        })?;
        let ns_inflight = Array::try_from(
            ebpf.take_map("ns_inflight")
                .ok_or(ProbeError::MissingMap("ns_inflight"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "ns_inflight",
            source,
        })?;
        let dirty = aya::maps::HashMap::try_from(
            ebpf.take_map("dirty")
                .ok_or(ProbeError::MissingMap("dirty"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "dirty",
            source,
        })?;
        let dirty_chunks = aya::maps::HashMap::try_from(
            ebpf.take_map("dirty_chunks")
                .ok_or(ProbeError::MissingMap("dirty_chunks"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "dirty_chunks",
            source,
        })?;
        let dirty_verdicts = aya::maps::HashMap::try_from(
            ebpf.take_map("dirty_verdicts")
                .ok_or(ProbeError::MissingMap("dirty_verdicts"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "dirty_verdicts",
            source,
        })?;
        let mmapped = aya::maps::HashMap::try_from(
            ebpf.take_map("mmapped")
                .ok_or(ProbeError::MissingMap("mmapped"))?,
        )
        .map_err(|source| ProbeError::Map {
            name: "mmapped",
            source,
        })?;
        // The recorder's own fsync calls are skipped, after the probes learn the root's
        // superblock from root_fd (bpf/sync.bpf.c). On a directory this costs at most one
        // journal commit of its filesystem, once.
        // The probes learn at the call's entry, so its result does not matter (a filesystem
        // that refuses fsync on a directory must not stop the recorder).
        if let Err(e) = root_dir.sync_data() {
            tracing::debug!(error = %e, "fdatasync of the watched root (teaches the probes its superblock)");
        }
        let attached_boot_ns = boot_ns();
        Ok(Probes {
            attached_boot_ns,
            links,
            _root_dir: root_dir,
            root_id: (dev, ino),
            _ebpf: ebpf,
            programs,
            dirty,
            dirty_chunks,
            dirty_verdicts,
            mmapped,
            dirty_full_seen: 0,
            ring,
            drops,
            ns_inflight,
            ring_drained: true,
            boot_to_wall_ns: boot_to_wall_ns(),
        })
    }

    /// Waits up to `timeout` for events, then drains what is there (at most `max`).
    pub fn poll(
        &mut self,
        timeout: Duration,
        max: usize,
        out: &mut Vec<RawEvent>,
    ) -> Result<usize, ProbeError> {
        let mut n = self.drain(max, out);
        if n == 0 {
            let fd = self.ring.as_fd();
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let ts = rustix::time::Timespec {
                tv_sec: timeout.as_secs() as _,
                tv_nsec: timeout.subsec_nanos() as _,
            };
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(ProbeError::Poll(e.into())),
            }
            n = self.drain(max, out);
        }
        Ok(n)
    }

    fn drain(&mut self, max: usize, out: &mut Vec<RawEvent>) -> usize {
        let mut n = 0;
        let mut bytes = 0usize;
        self.ring_drained = false;
        while n < max && bytes < DRAIN_MAX_BYTES {
            let Some(item) = self.ring.next() else {
                self.ring_drained = true;
                break;
            };
            bytes += item.len();
            if let Some(ev) = RawEvent::parse(&item) {
                out.push(ev);
            } else {
                tracing::warn!(len = item.len(), "malformed ring buffer record skipped");
            }
            n += 1;
        }
        n
    }

    /// One past the highest seq the kernel dropped (0 if none): every lost event's seq is
    /// below it.
    pub fn dropped_seq_end(&self) -> Result<u64, ProbeError> {
        let v = self.drops.get(&2, 0).map_err(|source| ProbeError::Map {
            name: "drops",
            source,
        })?;
        Ok(v.iter().copied().max().unwrap_or(0))
    }

    /// Renames and mount changes in flight (between their entry and the end of their exit
    /// program, which hands their event over first), any task.
    pub fn ns_changes_in_flight(&self) -> Result<u64, ProbeError> {
        self.ns_inflight
            .get(&0, 0)
            .map_err(|source| ProbeError::Map {
                name: "ns_inflight",
                source,
            })
    }

    /// Whether the last drain stopped because the ring buffer was empty (not at its event or
    /// byte limit): every event submitted before it began has been handed over.
    pub fn ring_drained(&self) -> bool {
        self.ring_drained
    }

    /// Events the kernel could not put in the ring buffer, summed over CPUs.
    pub fn drops(&self) -> Result<u64, ProbeError> {
        let v = self.drops.get(&0, 0).map_err(|source| ProbeError::Map {
            name: "drops",
            source,
        })?;
        Ok(v.iter().sum())
    }

    /// Takes the inodes whose events were dropped (and clears their marks). `overflowed` when
    /// some mark could not be stored (the map was full) since the last call: then only a
    /// whole-tree base heals. A (0, 0) inode stands for dropped events without an inode.
    pub fn take_dirty(&mut self) -> Result<DirtyInodes, ProbeError> {
        let map_err = |source| ProbeError::Map {
            name: "dirty",
            source,
        };
        let keys = self
            .dirty
            .keys()
            .collect::<Result<Vec<InodeKey>, _>>()
            .map_err(map_err)?;
        for k in &keys {
            match self.dirty.remove(k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        let chunk_keys = self
            .dirty_chunks
            .keys()
            .collect::<Result<Vec<ChunkKey>, _>>()
            .map_err(|source| ProbeError::Map {
                name: "dirty_chunks",
                source,
            })?;
        for k in &chunk_keys {
            match self.dirty_chunks.remove(k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(ProbeError::Map {
                        name: "dirty_chunks",
                        source,
                    })
                }
            }
        }
        let full: u64 = self
            .drops
            .get(&1, 0)
            .map_err(|source| ProbeError::Map {
                name: "drops",
                source,
            })?
            .iter()
            .sum();
        let overflowed = full > self.dirty_full_seen;
        self.dirty_full_seen = full;
        Ok(DirtyInodes {
            inodes: keys.iter().map(|k| (k.dev, k.ino)).collect(),
            chunks: chunk_keys
                .iter()
                .map(|k| ((k.dev, k.ino), k.chunk))
                .collect(),
            overflowed,
        })
    }

    /// Forgets the kernel's cached "outside the root" verdicts for dirtied inodes (after
    /// something moved into the root).
    pub fn forget_dirty_verdicts(&mut self) -> Result<(), ProbeError> {
        let map_err = |source| ProbeError::Map {
            name: "dirty_verdicts",
            source,
        };
        let keys = self
            .dirty_verdicts
            .keys()
            .collect::<Result<Vec<InodeKey>, _>>()
            .map_err(map_err)?;
        for k in &keys {
            match self.dirty_verdicts.remove(k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }

    /// Forgets that inode `key` (dev, ino) has a shared writable mapping: its pages turning
    /// dirty are then reported with their path again (the catch-all), as for a mapping older
    /// than the recorder.
    pub fn forget_mapped(&mut self, key: (u64, u64)) -> Result<(), ProbeError> {
        let k = InodeKey {
            dev: key.0,
            ino: key.1,
        };
        match self.mmapped.remove(&k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(ProbeError::Map {
                name: "mmapped",
                source,
            }),
        }
    }

    /// Runs of the probes the kernel skipped, summed over programs: a tracepoint program is not
    /// run while another BPF program runs on the same CPU (and a tp_btf program not inside
    /// itself). Each skipped run may be a change never reported, without a seq gap to show it:
    /// the recorder treats an increase as a loss (gap + heal).
    pub fn missed_runs(&self) -> Result<u64, ProbeError> {
        let mut sum = 0u64;
        for fd in &self.programs {
            sum += prog_recursion_misses(fd).map_err(ProbeError::ProgInfo)?;
        }
        Ok(sum)
    }

    /// Follows steps of the wall clock: re-reads its offset to the boot clock and returns the
    /// step (ns, negative when the clock went back) if it moved by more than CLOCK_STEP_MIN_NS.
    /// Event times then follow the stepped wall clock, as the recorder's own records do.
    pub fn follow_wall_clock(&mut self) -> Option<i128> {
        let now = boot_to_wall_ns();
        let step = now - self.boot_to_wall_ns;
        if step.abs() > CLOCK_STEP_MIN_NS {
            self.boot_to_wall_ns = now;
            Some(step)
        } else {
            None
        }
    }

    /// Wall-clock ns of an event's boot-time stamp.
    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        (boot_ns as i128 + self.boot_to_wall_ns).max(0) as u64
    }
}

/// Tracepoint attachment needs tracefs; mount it where the kernel expects it if nobody did.
fn ensure_tracefs() {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return;
    }
    match rustix::mount::mount(
        "nodev",
        dir,
        "tracefs",
        rustix::mount::MountFlags::empty(),
        None,
    ) {
        Ok(()) => tracing::info!("mounted tracefs at /sys/kernel/tracing"),
        Err(e) => {
            tracing::warn!(error = %e, "tracefs is not mounted and mounting it failed; attaching tracepoints will fail")
        }
    }
}

/// Number of possible CPUs (/sys/devices/system/cpu/possible, e.g. "0-255").
fn program_fd(
    fd: Result<&aya::programs::ProgramFd, aya::programs::ProgramError>,
    name: &'static str,
) -> Result<std::os::fd::OwnedFd, ProbeError> {
    use std::os::fd::AsFd;
    let fd = fd.map_err(|source| ProbeError::Program { name, source })?;
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(ProbeError::ProgInfo)
}

/// `bpf(BPF_OBJ_GET_INFO_BY_FD)` on a program: its recursion_misses counter.
fn prog_recursion_misses(fd: &std::os::fd::OwnedFd) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is a plain C struct of integers; all zeroes is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    // SAFETY: attr points to a valid bpf_attr prefix for this command and info to a buffer of
    // info_len bytes; both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info.recursion_misses)
}

fn possible_cpus() -> u32 {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let max = s
        .trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next().and_then(|n| n.parse::<u32>().ok()))
        .max();
    max.map(|m| m + 1).unwrap_or(256)
}

/// Whether this process can load eBPF here (root and BTF).
pub fn bpf_available() -> bool {
    rustix::process::geteuid().is_root() && Path::new("/sys/kernel/btf/vmlinux").exists()
}
