//! Helpers shared by the end-to-end tests: deterministic workloads and child processes.

use std::path::Path;

use foxing_proto::{Event, Op, RelPath, SyncKind, Writer};

/// The event the crash-test writer appends at `seq`: a deterministic function of `seq`, so a
/// reader can check any journal prefix byte for byte. Payloads range from 0 to 64 KiB.
pub fn synth_event(seq: u64) -> Event {
    let mut rng = fastrand::Rng::with_seed(seq);
    let path = RelPath::new(format!("d{}/f{}", rng.u8(..8), rng.u16(..500)));
    let op = match rng.u8(..10) {
        0..=5 => {
            let len = if rng.u8(..10) == 0 {
                rng.usize(..65536)
            } else {
                rng.usize(..512)
            };
            let mut data = vec![0u8; len];
            if rng.bool() {
                rng.fill(&mut data);
            } else {
                data.fill(rng.u8(..));
            }
            Op::Write {
                path,
                offset: rng.u64(..1 << 30),
                data,
            }
        }
        6 => Op::Truncate {
            path,
            size: rng.u64(..1 << 20),
        },
        7 => Op::Sync {
            path: Some(path),
            kind: SyncKind::Fsync,
        },
        8 => Op::Rename {
            from: path,
            to: RelPath::new(format!("r{}", rng.u32(..))),
            flags: 0,
        },
        // Directories appear now and then, so applying a synthetic journal writes real data.
        _ if rng.u8(..3) == 0 => Op::Mkdir {
            path: RelPath::new(format!("d{}", rng.u8(..8))),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
        _ => Op::Chmod {
            path,
            mode: 0o600 | rng.u32(..0o77),
        },
    };
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"test");
    Event {
        time_ns: 1_790_000_000_000_000_000 + seq * 1_000,
        writer: Writer {
            pid: 42,
            tgid: 42,
            comm,
            ..Default::default()
        },
        op,
    }
}

/// Where the durable part of a crashed journal ends, as its index last committed it: (segment
/// first seq, byte offset). Opens the index writable so redb repairs it; the segments are not
/// touched. Used to simulate a power cut, which may drop only bytes past this point.
pub fn durable_end(jdir: &Path) -> anyhow::Result<Option<(u64, u64)>> {
    use foxing_journal::index::{FRAMES, META, META_DURABLE_SEQ};
    use redb::ReadableDatabase;
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(foxing_journal::Layout::new(jdir).index)?;
    let r = db.begin_read()?;
    let durable = r
        .open_table(META)?
        .get(META_DURABLE_SEQ)?
        .map(|v| v.value())
        .unwrap_or(0);
    let frames = r.open_table(FRAMES)?;
    let last = frames.range(..=durable)?.next_back().transpose()?;
    Ok(last.map(|(_, v)| {
        let (seg, off, len, _, _) = v.value();
        (seg, off + len as u64)
    }))
}

/// `foxing-applier --journal JOURNAL --root ROOT --state STATE --until UNTIL --json`: a
/// point-in-time restore; panics with its stderr unless it succeeds; returns its JSON report.
pub fn restore_json(journal: &Path, root: &Path, state: &Path, until: &str) -> serde_json::Value {
    let out = std::process::Command::new(workspace_bin("foxing-applier"))
        .arg("--root")
        .arg(root)
        .arg("--state")
        .arg(state)
        .arg("--journal")
        .arg(journal)
        .args(["--until", until, "--json"])
        .output()
        .expect("run foxing-applier");
    assert!(
        out.status.success(),
        "restore to {until}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("foxing-applier --json prints JSON")
}

/// A binary of this workspace (built by `cargo test --workspace` / `cargo build --bins`), found
/// next to the running test executable.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test.sh does) before these tests",
        p.display()
    );
    p
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: std::process::Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut std::process::Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for the exit; SIGKILL after that. Returns the status.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a UDP port on loopback")
}

/// A UDP relay between a QUIC client and server on loopback that impairs the path like a WAN:
/// one-way delay, random loss, a rate limit with a bounded link buffer (tail drop), and a switch
/// that cuts the link (every datagram dropped, both ways). No tc/netem needed (this kernel has
/// no sch_netem). Timers are poll(2) timeouts (hrtimers): a socket read timeout is rounded to
/// jiffies (4 ms at HZ=250) and would add milliseconds to every delayed datagram.
pub struct Impair {
    pub listen: std::net::SocketAddr,
    pub cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug)]
pub struct ImpairConfig {
    pub delay: std::time::Duration,
    /// Probability of dropping a datagram, 0.0..1.0.
    pub loss: f64,
    /// IP bytes per second in each direction (0: unlimited); a datagram counts its payload
    /// plus 28 bytes of IPv4 and UDP headers, as a link rate limit does.
    pub rate_bytes_per_sec: u64,
    /// Datagrams larger than this are dropped, as a real path's MTU does (0: no limit).
    pub mtu_bytes: usize,
}

/// Datagrams the rate-limited link buffers before it drops at the tail: netem's default
/// `limit` of 1000 packets.
pub const IMPAIR_QUEUE_PACKETS: usize = 1000;
/// IPv4 plus UDP header bytes, counted against the rate and the MTU.
const IMPAIR_HEADER_BYTES: usize = 28;

impl Impair {
    /// Relays datagrams between clients of `listen` (127.0.0.1, a free port) and `server`.
    pub fn start(server: std::net::SocketAddr, cfg: ImpairConfig) -> Impair {
        use std::net::UdpSocket;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::{Duration, Instant};
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind relay"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind relay"));
        for s in [&front, &back] {
            s.set_nonblocking(true).expect("non-blocking relay socket");
        }
        let listen = front.local_addr().unwrap();
        let client: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::new(Mutex::new(None));
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        fn wait(s: &UdpSocket, flags: rustix::event::PollFlags, timeout: Duration) {
            let mut fds = [rustix::event::PollFd::new(s, flags)];
            let ts = rustix::time::Timespec {
                tv_sec: timeout.as_secs() as _,
                tv_nsec: timeout.subsec_nanos() as _,
            };
            let _ = rustix::event::poll(&mut fds, Some(&ts));
        }
        // One direction: read from `from`, delay/drop/pace, send through `to` to `dest()`.
        let pump = |from: Arc<UdpSocket>, to: Arc<UdpSocket>, learn_client: bool, seed: u64| {
            let (client, cut, stop) = (client.clone(), cut.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                // Datagrams in flight: (delivery time, bytes), in delivery order.
                let mut queue: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
                // Transmission start times of datagrams still waiting in the link buffer.
                let mut buffered: std::collections::VecDeque<Instant> = Default::default();
                let mut next_free = Instant::now();
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let timeout = queue.front().map_or(Duration::from_millis(20), |(t, _)| {
                        t.saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(20))
                    });
                    if !timeout.is_zero() {
                        wait(&from, rustix::event::PollFlags::IN, timeout);
                    }
                    while let Ok((n, peer)) = from.recv_from(&mut buf) {
                        if learn_client {
                            *client.lock().unwrap() = Some(peer);
                        }
                        let wire = n + IMPAIR_HEADER_BYTES;
                        let fits = cfg.mtu_bytes == 0 || wire <= cfg.mtu_bytes;
                        if !fits || cut.load(Ordering::Relaxed) || rng.f64() < cfg.loss {
                            continue;
                        }
                        let now = Instant::now();
                        let mut start = now;
                        if cfg.rate_bytes_per_sec > 0 {
                            while buffered.front().is_some_and(|t| *t <= now) {
                                buffered.pop_front();
                            }
                            if buffered.len() >= IMPAIR_QUEUE_PACKETS {
                                continue; // tail drop: the link buffer is full
                            }
                            start = next_free.max(now);
                            buffered.push_back(start);
                            next_free = start
                                + Duration::from_secs_f64(
                                    wire as f64 / cfg.rate_bytes_per_sec as f64,
                                );
                        }
                        queue.push_back((start + cfg.delay, buf[..n].to_vec()));
                    }
                    let now = Instant::now();
                    while queue.front().is_some_and(|(t, _)| *t <= now) {
                        let (_, d) = queue.pop_front().unwrap();
                        let dest = if learn_client {
                            Some(server)
                        } else {
                            *client.lock().unwrap()
                        };
                        let Some(dest) = dest else { continue };
                        for _ in 0..100 {
                            match to.send_to(&d, dest) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait(
                                    &to,
                                    rustix::event::PollFlags::OUT,
                                    Duration::from_millis(10),
                                ),
                                _ => break,
                            }
                        }
                    }
                }
            })
        };
        let threads = vec![
            pump(front.clone(), back.clone(), true, 1),
            pump(back.clone(), front.clone(), false, 2),
        ];
        Impair {
            listen,
            cut,
            stop,
            threads,
        }
    }
}

impl Drop for Impair {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), in bytes; 0 when unreadable.
fn status_bytes(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resident set size of a process in bytes.
pub fn rss_bytes(pid: i32) -> u64 {
    status_bytes(pid, "VmRSS")
}

/// Peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss_bytes(pid: i32) -> u64 {
    status_bytes(pid, "VmHWM")
}

/// True when this process can load eBPF. Without it the test skips, unless
/// FOXING_REQUIRE_BPF=1 (CI), where it fails.
pub fn require_bpf() -> bool {
    if foxing_probes::bpf_available() {
        return true;
    }
    assert!(
        !std::env::var("FOXING_REQUIRE_BPF").is_ok_and(|v| v == "1"),
        "FOXING_REQUIRE_BPF=1 but this process cannot load eBPF (root and /sys/kernel/btf/vmlinux needed)"
    );
    eprintln!("skipping: needs root and BPF");
    false
}

/// Bytes of the segment files of the journal at `jdir` (0 when there are none).
pub fn segment_bytes(jdir: &Path) -> u64 {
    std::fs::read_dir(jdir.join("segments"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Complete bases in the journal at `jdir` (0 while it cannot be read).
pub fn complete_bases(jdir: &Path) -> usize {
    foxing_journal::JournalReader::open(jdir)
        .and_then(|r| r.bases())
        .map(|b| b.iter().filter(|b| b.end_seq.is_some()).count())
        .unwrap_or(0)
}

/// Starts `foxing-journal record --root ROOT --journal JDIR EXTRA...` (stderr to `log`) and
/// waits until its first base is complete.
pub fn start_recorder(root: &Path, jdir: &Path, log: &Path, extra: &[&str]) -> Proc {
    let before = complete_bases(jdir);
    let p = Proc::spawn(
        "recorder",
        std::process::Command::new(workspace_bin("foxing-journal"))
            .arg("record")
            .arg("--root")
            .arg(root)
            .arg("--journal")
            .arg(jdir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .expect("recorder log"),
            ),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while complete_bases(jdir) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no base within 120 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p
}

/// A small ext4 filesystem on a loop-mounted image, for faults that need a real full disk;
/// unmounted (and its image removed) on drop. Needs root.
pub struct LoopExt4 {
    pub dir: std::path::PathBuf,
    image: std::path::PathBuf,
}

impl LoopExt4 {
    /// Makes a `size_mib` ext4 image next to `dir` and mounts it on `dir`.
    pub fn mount(dir: &Path, size_mib: u64) -> LoopExt4 {
        // No journal of its own, no reserved blocks: a small disk that really fills.
        Self::mount_with(
            dir,
            size_mib,
            "mkfs.ext4",
            &["-q", "-F", "-O", "^has_journal", "-m", "0"],
        )
    }

    /// The same with xfs (reflinks: FICLONE, `cp --reflink`). At least 300 MiB.
    pub fn mount_xfs(dir: &Path, size_mib: u64) -> LoopExt4 {
        Self::mount_with(dir, size_mib, "mkfs.xfs", &["-q", "-f", "-m", "reflink=1"])
    }

    fn mount_with(dir: &Path, size_mib: u64, mkfs: &str, args: &[&str]) -> LoopExt4 {
        let image = dir.with_extension("img");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_mib << 20))
            .unwrap();
        let run = |c: &mut std::process::Command| {
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(std::process::Command::new(mkfs).args(args).arg(&image));
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir));
        LoopExt4 {
            dir: dir.to_path_buf(),
            image,
        }
    }

    /// Fills the filesystem with `name` until ENOSPC: blocks are allocated for real
    /// (fallocate, largest pieces first), so no delayed-allocation reservation is given back
    /// later. Returns the bytes taken.
    pub fn fill(&self, name: &str) -> u64 {
        let f = std::fs::File::create(self.dir.join(name)).unwrap();
        let mut n = 0u64;
        let mut piece = 1u64 << 30;
        while piece >= 4096 {
            match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), n, piece) {
                Ok(()) => n += piece,
                Err(_) => piece /= 2,
            }
        }
        f.sync_all().unwrap();
        n
    }

    /// Fills the filesystem but for about `free_bytes`.
    pub fn fill_leaving(&self, name: &str, free_bytes: u64) -> u64 {
        let n = self.fill(name);
        let keep = n.saturating_sub(free_bytes);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join(name))
            .unwrap();
        f.set_len(keep).unwrap();
        f.sync_all().unwrap();
        keep
    }

    /// Frees what [`LoopExt4::fill`] took.
    pub fn free(&self, name: &str) {
        std::fs::remove_file(self.dir.join(name)).unwrap();
        rustix::fs::sync();
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Waits until `ok()` holds, checking every 10 ms; an error naming `what` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: std::time::Duration,
    mut ok: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !ok() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// `foxing-applier --connect 127.0.0.1:PORT` into `root` as replica1, with the certificates
/// `foxing_shipper::certs::make_certs` wrote to `certs` for "source" and "replica1".
pub fn connect_applier(
    bin_dir: &Path,
    root: &Path,
    state: &Path,
    port: u16,
    certs: &Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(bin_dir.join("foxing-applier"));
    c.arg("--root")
        .arg(root)
        .arg("--state")
        .arg(state)
        .arg("--connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--server-name", "source"])
        .arg("--cert")
        .arg(certs.join("replica1.pem"))
        .arg("--key")
        .arg(certs.join("replica1.key"))
        .arg("--ca")
        .arg(certs.join("ca.pem"));
    c
}

/// The whole pipeline on one machine, for benchmarks: `foxing-journal record` of `src` ->
/// journal -> `foxing-shipper serve` -> QUIC + mTLS on loopback -> `foxing-applier --connect
/// --follow` into `replica`. Binaries are taken from `bin_dir`; logs go to `work`.
pub struct FoxingStack {
    pub recorder: Proc,
    pub shipper: Proc,
    pub applier: Proc,
    /// The shipper's Prometheus endpoint (127.0.0.1).
    pub shipper_metrics_port: u16,
}

impl FoxingStack {
    pub fn start(
        bin_dir: &Path,
        work: &Path,
        src: &Path,
        replica: &Path,
    ) -> anyhow::Result<FoxingStack> {
        use std::process::{Command, Stdio};
        let jdir = work.join("journal");
        let certs = work.join("certs");
        std::fs::create_dir_all(work)?;
        let names = ["source".to_string(), "replica1".to_string()];
        foxing_shipper::certs::make_certs(&certs, &names, 2)?;
        let log = |n: &str| std::fs::File::create(work.join(n));
        let recorder = Proc::spawn(
            "recorder",
            Command::new(bin_dir.join("foxing-journal"))
                .args(["record", "--root"])
                .arg(src)
                .arg("--journal")
                .arg(&jdir)
                .stdout(Stdio::null())
                .stderr(log("recorder.log")?),
        );
        wait_until(
            "the recorder's base",
            std::time::Duration::from_secs(600),
            || complete_bases(&jdir) > 0,
        )?;
        let port = free_udp_port();
        let shipper_metrics_port = free_udp_port();
        let c = |f: &str| certs.join(f);
        let shipper = Proc::spawn(
            "shipper",
            Command::new(bin_dir.join("foxing-shipper"))
                .arg("serve")
                .arg("--journal")
                .arg(&jdir)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--metrics-listen")
                .arg(format!("127.0.0.1:{shipper_metrics_port}"))
                .arg("--cert")
                .arg(c("source.pem"))
                .arg("--key")
                .arg(c("source.key"))
                .arg("--ca")
                .arg(c("ca.pem"))
                .stderr(log("shipper.log")?),
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let applier = Proc::spawn(
            "applier",
            connect_applier(bin_dir, replica, &work.join("state"), port, &certs)
                .arg("--follow")
                .stdout(Stdio::null())
                .stderr(log("applier.log")?),
        );
        Ok(FoxingStack {
            recorder,
            shipper,
            applier,
            shipper_metrics_port,
        })
    }

    /// The value of an unlabelled metric of the shipper (0 when unreachable).
    pub fn shipper_metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.shipper_metrics_port))
        else {
            return 0.0;
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn stop(mut self) {
        for p in [&mut self.applier, &mut self.shipper, &mut self.recorder] {
            p.terminate(std::time::Duration::from_secs(20));
        }
    }
}

/// utime + stime of a process, in seconds (/proc/PID/stat).
pub fn cpu_seconds(pid: i32) -> f64 {
    stat_seconds(pid, &[11, 12])
}

/// utime + stime of a process and of its reaped children, in seconds (/proc/PID/stat).
pub fn cpu_seconds_with_children(pid: i32) -> f64 {
    stat_seconds(pid, &[11, 12, 13, 14])
}

/// The sum of clock-tick fields of /proc/PID/stat, counted after the command (state is 0,
/// utime 11, stime 12, cutime 13, cstime 14), in seconds.
fn stat_seconds(pid: i32, fields: &[usize]) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    fields
        .iter()
        .map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        .sum::<f64>()
        / tick
}

/// Kernel memory charged for the BPF maps a process holds open (sum of `memlock:` in the
/// fdinfo of its map file descriptors), in bytes.
pub fn bpf_map_memlock_bytes(pid: i32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|s| s.contains("map_type:"))
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

// Recording and comparing, shared by the capture tests.
use foxing_applier::fs::FsTree;
use foxing_applier::run::{Engine, JournalSource};
use foxing_applier::snapshot::{diff_with_mtimes, replicated_xattrs, snapshot};
use foxing_applier::state::State;
use foxing_journal::recorder::{Recorder, RecorderOptions};
use foxing_journal::{JournalOptions, JournalReader};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A small tree with content, holes, a symlink, a hard link and an xattr.
pub fn seed_tree(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("base/16384")).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    for i in 0..6 {
        let mut data = vec![0u8; 300_000 + i * 70_000];
        rng.fill(&mut data);
        std::fs::write(root.join(format!("base/16384/{}", 1000 + i)), &data).unwrap();
    }
    // A sparse file: data, a hole, data.
    let f = std::fs::File::create(root.join("sparse.db")).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 3 << 20).unwrap();
    std::fs::write(root.join("log"), b"").unwrap();
    std::os::unix::fs::symlink("base/16384/1000", root.join("link")).unwrap();
    std::fs::set_permissions(
        root.join("log"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    rustix::fs::setxattr(
        root.join("sparse.db"),
        "user.kind",
        b"sparse",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

/// Records `src` into `jdir` (a base first) while `work` runs; returns the recorder's stats.
pub fn record_while(
    src: &std::path::Path,
    jdir: &std::path::Path,
    work: impl FnOnce(),
) -> foxing_journal::recorder::RecorderStats {
    record_with(src, jdir, foxing_probes::DEFAULT_RING_SIZE_BYTES, work)
}

/// Every recorder sees the absolute names of every mount namespace on the machine, and a name
/// from a namespace that is gone before a recorder can map it is a counted loss, healed by a
/// whole-tree base, in every recorder running then (a test asserting one base failed in CI when
/// a namespace test ran beside it). Tests that make such names hold this lock exclusively
/// ([`foreign_namespaces`]); every recording of [`record_with`] holds it shared.
static NAMESPACE_NOISE: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    /// This thread holds [`NAMESPACE_NOISE`] exclusively.
    static MAKING_NAMESPACE_NOISE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which makes absolute names in short-lived mount namespaces, while no other
/// recording of this test process runs (see [`NAMESPACE_NOISE`]).
pub fn foreign_namespaces<R>(f: impl FnOnce() -> R) -> R {
    let _excl = NAMESPACE_NOISE.write().unwrap_or_else(|e| e.into_inner());
    MAKING_NAMESPACE_NOISE.set(true);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MAKING_NAMESPACE_NOISE.set(false);
        }
    }
    let _reset = Reset;
    f()
}

/// Held by a recording that must see no foreign namespace's names (see [`NAMESPACE_NOISE`]):
/// shared, unless this thread makes the noise itself (then `None`).
pub fn no_foreign_namespaces() -> Option<std::sync::RwLockReadGuard<'static, ()>> {
    (!MAKING_NAMESPACE_NOISE.get())
        .then(|| NAMESPACE_NOISE.read().unwrap_or_else(|e| e.into_inner()))
}

/// [`record_while`] with a kernel ring of `ring_size_bytes`.
pub fn record_with(
    src: &std::path::Path,
    jdir: &std::path::Path,
    ring_size_bytes: u32,
    work: impl FnOnce(),
) -> foxing_journal::recorder::RecorderStats {
    let opts = RecorderOptions {
        root: src.to_path_buf(),
        journal: jdir.to_path_buf(),
        journal_opts: JournalOptions::default(),
        payload_cap_bytes: 64 * 1024,
        ring_size_bytes,
    };
    let _quiet = no_foreign_namespaces();
    let stop = Arc::new(AtomicBool::new(false));
    let mut rec = Recorder::start(opts).unwrap();
    let st = stop.clone();
    let handle = std::thread::spawn(move || {
        let never = AtomicBool::new(false);
        rec.run(&st, &never).unwrap();
        rec.stats.clone()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = JournalReader::open(jdir) {
            if r.bases().unwrap().iter().any(|b| b.end_seq.is_some()) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no base after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    work();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap()
}

/// Applies the journal to a fresh `work/dst` and asserts it equals `src` (mtimes included).
pub fn apply_and_compare(src: &std::path::Path, jdir: &std::path::Path, work: &std::path::Path) {
    let dst = work.join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let reader = JournalReader::open(jdir).unwrap();
    let (state, resume) = State::open(&work.join("state")).unwrap();
    let mut e = Engine::new(FsTree::open(&dst).unwrap(), state, resume, None);
    e.applier.set_gap_windows(reader.gap_windows().unwrap());
    e.run(
        &mut JournalSource {
            reader: &reader,
            poll: Duration::from_millis(1),
        },
        u64::MAX,
        false,
        |_, _| {},
    )
    .unwrap();
    let a = snapshot(&mut FsTree::open(src).unwrap(), replicated_xattrs).unwrap();
    let b = snapshot(&mut FsTree::open(&dst).unwrap(), replicated_xattrs).unwrap();
    assert_eq!(diff_with_mtimes(&a, &b), Vec::<String>::new());
}

/// Runs the test workload binary (`env!("CARGO_BIN_EXE_workload")` of the calling test) on
/// `root` with `args`; panics with its stderr unless it succeeds.
pub fn run_workload(exe: &str, root: &Path, args: &[&str]) {
    let out = std::process::Command::new(exe)
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "workload {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
