//! Foxing side by side with lsyncd+rsync (and a one-shot rsync) on this machine, in one run
//! (issue 8). Writes results.json, results.md and CSV series for plots into OUTDIR.
//!
//!     compare-bench WORKDIR OUTDIR [--short]       (root; release binaries next to this one)
//!
//! Sections: lag of single small writes; lost same-second same-size rewrites; source overhead
//! (fio 4 KiB random writes, fio 1 MiB sequential writes, a small-file create/delete storm)
//! with no replication, Foxing recording+shipping+applying, and lsyncd+rsync; cost proportional
//! to change (a big file with 100 random 4 KiB blocks changed, then many small files created):
//! wall time to an identical replica, bytes sent, CPU seconds; the pipeline's sustained
//! throughput against the disk, loopback TCP and one core's zstd level 1; peak memory.
//! `scripts/bench.sh` runs it and draws the plots; docs/benchmarks.md reads the results.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use foxing_tests::{
    bpf_map_memlock_bytes, cpu_seconds_with_children, peak_rss_bytes, wait_until, FoxingStack, Proc,
};
use serde_json::{json, Value};

/// Sizes of one run: `--short` (CI, about a minute and a half: only keeps the harness working) or full (under 20 minutes).
struct Sizes {
    lag_writes: usize,
    rewrites: usize,
    fio_secs: u64,
    fio_size_mib: u64,
    storm_files: usize,
    big_file_mib: u64,
    small_files: usize,
    pipeline_mib: u64,
}

const FULL: Sizes = Sizes {
    lag_writes: 300,
    rewrites: 100,
    fio_secs: 15,
    fio_size_mib: 512,
    storm_files: 20_000,
    big_file_mib: 1024,
    small_files: 10_000,
    pipeline_mib: 512,
};

const SHORT: Sizes = Sizes {
    lag_writes: 20,
    rewrites: 10,
    fio_secs: 2,
    fio_size_mib: 32,
    storm_files: 1000,
    big_file_mib: 32,
    small_files: 300,
    pipeline_mib: 32,
};

/// Longest wait for a replica to become identical.
const CONVERGE_TIMEOUT_SECS: u64 = 600;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    None,
    Foxing,
    Lsyncd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Foxing => "foxing",
            Kind::Lsyncd => "lsyncd+rsync",
        }
    }
}

/// A running replication of `src` into `dst` (or none).
enum Running {
    None,
    Foxing(FoxingStack),
    Lsyncd(Proc),
}

impl Running {
    fn start(kind: Kind, work: &Path, src: &Path, dst: &Path) -> anyhow::Result<Running> {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work)?;
        std::fs::create_dir_all(dst)?;
        Ok(match kind {
            Kind::None => Running::None,
            Kind::Foxing => Running::Foxing(FoxingStack::start(&bin_dir(), work, src, dst)?),
            Kind::Lsyncd => {
                // Its lowest-latency settings: no delay, no batching.
                let conf = work.join("lsyncd.conf.lua");
                std::fs::write(
                    &conf,
                    format!(
                        "settings {{ nodaemon = true, logfile = \"{log}\", insist = true }}\n\
                         sync {{ default.rsync, source = \"{src}/\", target = \"{dst}/\", delay = 0, maxDelays = 1, maxProcesses = 1 }}\n",
                        log = work.join("lsyncd.log").display(),
                        src = src.display(),
                        dst = dst.display()
                    ),
                )?;
                let p = Proc::spawn(
                    "lsyncd",
                    Command::new("lsyncd")
                        .arg(&conf)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                );
                Running::Lsyncd(p)
            }
        })
    }

    fn pids(&self) -> Vec<(&'static str, i32)> {
        match self {
            Running::None => vec![],
            Running::Foxing(s) => vec![
                ("recorder", s.recorder.pid()),
                ("shipper", s.shipper.pid()),
                ("applier", s.applier.pid()),
            ],
            Running::Lsyncd(p) => vec![("lsyncd", p.pid())],
        }
    }

    /// CPU seconds of the replication's processes (lsyncd includes its reaped rsyncs).
    fn cpu(&self) -> f64 {
        self.pids()
            .iter()
            .map(|&(_, p)| cpu_seconds_with_children(p))
            .sum()
    }

    fn bytes_sent(&self) -> Option<f64> {
        match self {
            Running::Foxing(s) => Some(s.shipper_metric("foxing_shipper_bytes_sent_total")),
            _ => None,
        }
    }

    fn memory(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (n, p) in self.pids() {
            m.insert(format!("{n}_peak_rss_bytes"), json!(peak_rss_bytes(p)));
        }
        if let Running::Foxing(s) = self {
            m.insert(
                "bpf_maps_memlock_bytes".into(),
                json!(bpf_map_memlock_bytes(s.recorder.pid())),
            );
        }
        Value::Object(m)
    }

    fn stop(self) {
        match self {
            Running::None => {}
            Running::Foxing(s) => s.stop(),
            Running::Lsyncd(mut p) => {
                p.terminate(Duration::from_secs(10));
            }
        }
    }
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .unwrap_or_default()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Files under `a` and `b` have the same relative paths and contents.
fn same_tree(a: &Path, b: &Path) -> bool {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap_or(&p).to_path_buf(), md.len()));
            }
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    walk(a, a, &mut x);
    walk(b, b, &mut y);
    x.sort();
    y.sort();
    x == y
        && x.iter()
            .all(|(p, _)| std::fs::read(a.join(p)).ok() == std::fs::read(b.join(p)).ok())
}

fn converge(src: &Path, dst: &Path) -> anyhow::Result<()> {
    wait_until(
        "an identical replica",
        Duration::from_secs(CONVERGE_TIMEOUT_SECS),
        || same_tree(src, dst),
    )
}

/// Section 2: single small writes (open, append 8 bytes, close: what lsyncd reacts to, and a
/// size change so that rsync's quick check sees it), spaced apart; lag until the replica file
/// holds them. Returns the sorted lags in microseconds.
fn lag(kind: Kind, work: &Path, n: usize) -> anyhow::Result<(Vec<u64>, Value)> {
    let src = work.join("src");
    let dst = work.join("dst");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("lag.dat"), b"")?;
    let run = Running::start(kind, &work.join("repl"), &src, &dst)?;
    converge(&src, &dst)?;
    let mut lags = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let token = (i + 1).to_le_bytes();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(src.join("lag.dat"))?;
        f.write_all(&token)?;
        drop(f);
        let t = Instant::now();
        let at = i * 8;
        loop {
            let mut got = [0u8; 8];
            if std::fs::File::open(dst.join("lag.dat"))
                .and_then(|f| f.read_exact_at(&mut got, at))
                .is_ok()
                && got == token
            {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(10),
                "{}: write {i} did not arrive within 10 s",
                kind.name()
            );
            std::thread::sleep(Duration::from_micros(50));
        }
        lags.push(t.elapsed().as_micros() as u64);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mem = run.memory();
    run.stop();
    lags.sort_unstable();
    Ok((lags, mem))
}

/// Section 2b: the same-second same-size rewrite. Every file gets version A, the replica takes
/// it, then within the same second version B of the same size. Returns (files rewritten
/// within one second, replicas still stale after 5 s of quiet).
fn lost_updates(kind: Kind, work: &Path, n: usize) -> anyhow::Result<(usize, usize)> {
    let src = work.join("src");
    let dst = work.join("dst");
    std::fs::create_dir_all(&src)?;
    let run = Running::start(kind, &work.join("repl"), &src, &dst)?;
    converge(&src, &dst)?;
    // Start just after a second boundary so that A and B share their mtime's second.
    let frac = foxing_proto::time::now_ns() % 1_000_000_000;
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - frac + 5_000_000));
    let name = |i: usize| format!("u{i:03}");
    for i in 0..n {
        std::fs::write(src.join(name(i)), format!("A{i:063}"))?;
    }
    wait_until("version A on the replica", Duration::from_secs(30), || {
        (0..n).all(|i| std::fs::read(dst.join(name(i))).ok() == Some(format!("A{i:063}").into()))
    })?;
    let mtime_s = |p: PathBuf| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    let a_secs: Vec<Option<u64>> = (0..n).map(|i| mtime_s(src.join(name(i)))).collect();
    for i in 0..n {
        std::fs::write(src.join(name(i)), format!("B{i:063}"))?;
    }
    // Rewritten within the same second as version A (the case rsync's quick check misses).
    let same_second = (0..n)
        .filter(|&i| a_secs[i].is_some() && mtime_s(src.join(name(i))) == a_secs[i])
        .count();
    std::thread::sleep(Duration::from_secs(5));
    let stale = (0..n)
        .filter(|&i| std::fs::read(dst.join(name(i))).ok() != std::fs::read(src.join(name(i))).ok())
        .count();
    run.stop();
    Ok((same_second, stale))
}

fn fio(dir: &Path, rw: &str, bs: &str, size_mib: u64, secs: u64) -> anyhow::Result<f64> {
    let out = Command::new("fio")
        .args([
            "--name=bench",
            "--ioengine=psync",
            "--end_fsync=1",
            "--output-format=json",
        ])
        .arg(format!("--directory={}", dir.display()))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={size_mib}M"))
        .arg(format!("--runtime={secs}"))
        .arg("--time_based")
        .output()
        .context("run fio (apt-get install fio)")?;
    anyhow::ensure!(
        out.status.success(),
        "fio: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["jobs"][0]["write"]["bw_bytes"].as_f64().unwrap_or(0.0))
}

/// A create/write/close then unlink storm of small files; operations per second.
fn storm(dir: &Path, files: usize) -> anyhow::Result<f64> {
    let d = dir.join("storm");
    std::fs::create_dir_all(&d)?;
    let data = [7u8; 4096];
    let t = Instant::now();
    for i in 0..files {
        std::fs::File::create(d.join(format!("s{i}")))?.write_all(&data)?;
    }
    for i in 0..files {
        std::fs::remove_file(d.join(format!("s{i}")))?;
    }
    Ok(2.0 * files as f64 / t.elapsed().as_secs_f64())
}

/// Section 1: source-side throughput of each workload under `kind`, and the replication's CPU.
fn overhead(kind: Kind, work: &Path, z: &Sizes) -> anyhow::Result<Value> {
    let src = work.join("src");
    let dst = work.join("dst");
    std::fs::create_dir_all(&src)?;
    let run = Running::start(kind, &work.join("repl"), &src, &dst)?;
    converge(&src, &dst)?;
    let cpu0 = run.cpu();
    // Each workload starts with no dirty data left by the one before.
    rustix::fs::sync();
    let rand = fio(&src, "randwrite", "4k", z.fio_size_mib, z.fio_secs)?;
    rustix::fs::sync();
    let seq = fio(&src, "write", "1M", z.fio_size_mib, z.fio_secs)?;
    rustix::fs::sync();
    let st = storm(&src, z.storm_files)?;
    let cpu = run.cpu() - cpu0;
    let mem = run.memory();
    // Converged afterwards too (lsyncd and Foxing both must catch up).
    let t = Instant::now();
    if kind != Kind::None {
        converge(&src, &dst)?;
    }
    let catch_up = t.elapsed().as_secs_f64();
    run.stop();
    Ok(json!({
        "fio_randwrite_4k_bytes_per_s": rand,
        "fio_write_1m_bytes_per_s": seq,
        "storm_ops_per_s": st,
        "replication_cpu_s": cpu,
        "catch_up_s": catch_up,
        "memory": mem,
    }))
}

fn random_file(p: &Path, mib: u64, seed: u64) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(p)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rng.fill(&mut buf);
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    Ok(())
}

/// Rewrites 100 random 4 KiB blocks of a `mib` MiB file (the same blocks in every run);
/// returns the final content of each block written.
fn change_100_blocks(p: &Path, mib: u64) -> anyhow::Result<Vec<(u64, [u8; 4096])>> {
    let f = std::fs::OpenOptions::new().write(true).open(p)?;
    let mut rng = fastrand::Rng::with_seed(12);
    let blocks = (mib << 20) / 4096;
    let mut written: Vec<(u64, [u8; 4096])> = Vec::new();
    for _ in 0..100 {
        let mut b = [0u8; 4096];
        rng.fill(&mut b);
        let off = rng.u64(0..blocks) * 4096;
        f.write_all_at(&b, off)?;
        written.retain(|w| w.0 != off);
        written.push((off, b));
    }
    Ok(written)
}

/// Creates `n` files of 100 bytes in SRC/small.
fn create_small_files(src: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(src.join("small"))?;
    for i in 0..n {
        std::fs::write(src.join(format!("small/f{i}")), format!("{i:0>100}"))?;
    }
    Ok(())
}

/// Section 3: changes proportional to the change. Returns per-step wall time to an identical
/// replica, bytes sent (when known), CPU seconds of the replication.
fn proportional(kind: Kind, work: &Path, z: &Sizes) -> anyhow::Result<Value> {
    let src = work.join("src");
    let dst = work.join("dst");
    std::fs::create_dir_all(&src)?;
    random_file(&src.join("big.db"), z.big_file_mib, 11)?;
    let run = Running::start(kind, &work.join("repl"), &src, &dst)?;
    converge(&src, &dst)?;
    // Change in a later second than the copy's mtime: in the same second, rsync's quick check
    // would skip the change (the lost-update section measures that on purpose).
    std::thread::sleep(Duration::from_millis(1100));
    let mut steps = Vec::new();
    for step in ["100_blocks", "small_files"] {
        let (cpu0, bytes0) = (run.cpu(), run.bytes_sent());
        let t = Instant::now();
        let mut written: Vec<(u64, [u8; 4096])> = Vec::new();
        let changed = if step == "100_blocks" {
            written = change_100_blocks(&src.join("big.db"), z.big_file_mib)?;
            100 * 4096
        } else {
            create_small_files(&src, z.small_files)?;
            z.small_files as u64 * 100
        };
        // Only the changed parts are compared while waiting (a full compare of a 1 GiB file per
        // poll would dominate); the whole tree is checked once at the end.
        wait_until(
            "the change on the replica",
            Duration::from_secs(CONVERGE_TIMEOUT_SECS),
            || {
                if step == "100_blocks" {
                    let Ok(f) = std::fs::File::open(dst.join("big.db")) else {
                        return false;
                    };
                    written.iter().all(|(off, b)| {
                        let mut got = [0u8; 4096];
                        f.read_exact_at(&mut got, *off).is_ok() && &got == b
                    })
                } else {
                    std::fs::read_dir(dst.join("small"))
                        .map(|r| r.count() == z.small_files)
                        .unwrap_or(false)
                        && std::fs::read(dst.join(format!("small/f{}", z.small_files - 1))).ok()
                            == Some(format!("{:0>100}", z.small_files - 1).into())
                }
            },
        )?;
        let wall = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(500));
        steps.push(json!({
            "step": step,
            "changed_bytes": changed,
            "wall_s": wall,
            "cpu_s": run.cpu() - cpu0,
            "bytes_sent": run.bytes_sent().zip(bytes0).map(|(a, b)| a - b),
        }));
    }
    converge(&src, &dst)?;
    let mem = run.memory();
    run.stop();
    Ok(json!({"steps": steps, "memory": mem}))
}

/// One-shot `rsync -a --no-whole-file --stats` of the same two changes into an up-to-date copy.
fn rsync_oneshot(work: &Path, z: &Sizes) -> anyhow::Result<Value> {
    let src = work.join("src");
    let dst = work.join("dst");
    std::fs::create_dir_all(&src)?;
    random_file(&src.join("big.db"), z.big_file_mib, 11)?;
    let rsync = |src: &Path, dst: &Path| -> anyhow::Result<(f64, f64, f64)> {
        let t = Instant::now();
        let mut c = Command::new("rsync")
            .args(["-a", "--no-whole-file", "--stats"])
            .arg(format!("{}/", src.display()))
            .arg(format!("{}/", dst.display()))
            .stdout(Stdio::piped())
            .spawn()
            .context("run rsync (apt-get install rsync)")?;
        let mut out = String::new();
        c.stdout.take().map(|mut o| o.read_to_string(&mut out));
        let pid = c.id() as i32;
        // CPU of rsync and its children: wait via wait4 to get their rusage.
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        let cpu = ru.ru_utime.tv_sec as f64
            + ru.ru_utime.tv_usec as f64 / 1e6
            + ru.ru_stime.tv_sec as f64
            + ru.ru_stime.tv_usec as f64 / 1e6;
        let sent = out
            .lines()
            .find_map(|l| l.strip_prefix("Total bytes sent: "))
            .map(|v| v.replace(',', "").trim().parse::<f64>().unwrap_or(0.0))
            .unwrap_or(0.0);
        Ok((t.elapsed().as_secs_f64(), cpu, sent))
    };
    rsync(&src, &dst)?;
    std::thread::sleep(Duration::from_millis(1100));
    let mut steps = Vec::new();
    change_100_blocks(&src.join("big.db"), z.big_file_mib)?;
    let (wall, cpu, sent) = rsync(&src, &dst)?;
    steps.push(json!({"step": "100_blocks", "changed_bytes": 409600, "wall_s": wall, "cpu_s": cpu, "bytes_sent": sent}));
    create_small_files(&src, z.small_files)?;
    let (wall, cpu, sent) = rsync(&src, &dst)?;
    steps.push(json!({"step": "small_files", "changed_bytes": z.small_files * 100, "wall_s": wall, "cpu_s": cpu, "bytes_sent": sent}));
    anyhow::ensure!(same_tree(&src, &dst), "rsync left a different tree");
    Ok(json!({"steps": steps}))
}

/// Section 4: sustained record -> ship -> apply throughput of incompressible data, against the
/// disk's sequential write speed, loopback TCP, and one core's zstd level 1, in the same run.
fn pipeline(work: &Path, z: &Sizes) -> anyhow::Result<Value> {
    let bytes = z.pipeline_mib << 20;
    // The disk: write and fsync the same amount.
    let t = Instant::now();
    random_file(&work.join("disk-probe"), z.pipeline_mib, 21)?;
    let disk = bytes as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_file(work.join("disk-probe"))?;
    // Loopback TCP.
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let rx = std::thread::spawn(move || -> u64 {
        let Ok((mut s, _)) = l.accept() else { return 0 };
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        while let Ok(k) = s.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    let t = Instant::now();
    {
        let mut s = std::net::TcpStream::connect(addr)?;
        let buf = vec![0x33u8; 1 << 20];
        for _ in 0..z.pipeline_mib {
            s.write_all(&buf)?;
        }
    }
    let _ = rx.join();
    let tcp = bytes as f64 / t.elapsed().as_secs_f64();
    // zstd level 1 on one core, on incompressible data.
    let mut data = vec![0u8; 16 << 20];
    fastrand::Rng::with_seed(3).fill(&mut data);
    let t = Instant::now();
    let mut z_bytes = 0u64;
    while t.elapsed() < Duration::from_secs(1) {
        let c = zstd::bulk::compress(&data, 1)?;
        z_bytes += data.len() as u64;
        std::hint::black_box(c);
    }
    let zstd1 = z_bytes as f64 / t.elapsed().as_secs_f64();
    // The pipeline.
    let src = work.join("src");
    let dst = work.join("dst");
    std::fs::create_dir_all(&src)?;
    let run = Running::start(Kind::Foxing, &work.join("repl"), &src, &dst)?;
    converge(&src, &dst)?;
    let cpu0 = run.cpu();
    let t = Instant::now();
    random_file(&src.join("stream.dat"), z.pipeline_mib, 22)?;
    let written = t.elapsed().as_secs_f64();
    wait_until(
        "the stream on the replica",
        Duration::from_secs(CONVERGE_TIMEOUT_SECS),
        || std::fs::metadata(dst.join("stream.dat")).is_ok_and(|m| m.len() == bytes),
    )?;
    converge(&src, &dst)?;
    let total = t.elapsed().as_secs_f64();
    let cpu = run.cpu() - cpu0;
    let mem = run.memory();
    run.stop();
    let rate = bytes as f64 / total;
    let limit = disk.min(tcp).min(zstd1);
    Ok(json!({
        "bytes": bytes,
        "source_write_s": written,
        "to_identical_replica_s": total,
        "pipeline_bytes_per_s": rate,
        "disk_bytes_per_s": disk,
        "loopback_tcp_bytes_per_s": tcp,
        "zstd1_one_core_bytes_per_s": zstd1,
        "limit_bytes_per_s": limit,
        "ratio_to_limit": rate / limit,
        "replication_cpu_s": cpu,
        "memory": mem,
    }))
}

fn mb(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.1} MB/s", x / 1e6))
        .unwrap_or_else(|| "-".into())
}

fn f2(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.2}"))
        .unwrap_or_else(|| "-".into())
}

fn report(r: &Value) -> String {
    let mut o = String::new();
    let mut w = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    w(format!(
        "# Foxing vs lsyncd+rsync ({} run)\n",
        r["mode"].as_str().unwrap_or("")
    ));
    w("## Lag of single small writes (microseconds)\n".into());
    w("| | p50 | p90 | p99 | max |\n|---|---|---|---|---|".into());
    for k in ["foxing", "lsyncd+rsync"] {
        let l = &r["lag"][k];
        w(format!(
            "| {k} | {} | {} | {} | {} |",
            l["p50_us"], l["p90_us"], l["p99_us"], l["max_us"]
        ));
    }
    let (fp99, lp99) = (
        r["lag"]["foxing"]["p99_us"].as_f64().unwrap_or(0.0),
        r["lag"]["lsyncd+rsync"]["p99_us"].as_f64().unwrap_or(0.0),
    );
    w(format!(
        "\nlsyncd p99 / Foxing p99 = {:.1}x\n",
        lp99 / fp99.max(1.0)
    ));
    w("## Same-second same-size rewrites\n".into());
    w("| | files | rewritten in the same second as the replica's copy | stale replicas after 5 s |\n|---|---|---|---|".into());
    for k in ["foxing", "lsyncd+rsync"] {
        let l = &r["lost_updates"][k];
        w(format!(
            "| {k} | {} | {} | {} |",
            l["files"], l["same_second"], l["stale"]
        ));
    }
    w("\n## Source overhead (throughput of the source's own workload)\n".into());
    w("| replication | fio 4 KiB randwrite | ratio | fio 1 MiB write | ratio | small-file storm (ops/s) | ratio | replication CPU s | catch-up s |\n|---|---|---|---|---|---|---|---|---|".into());
    let base = &r["overhead"]["none"];
    for k in ["none", "foxing", "lsyncd+rsync"] {
        let v = &r["overhead"][k];
        let ratio = |f: &str| {
            format!(
                "{:.2}x",
                v[f].as_f64().unwrap_or(0.0) / base[f].as_f64().unwrap_or(1.0).max(1e-9)
            )
        };
        w(format!(
            "| {k} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            mb(&v["fio_randwrite_4k_bytes_per_s"]),
            ratio("fio_randwrite_4k_bytes_per_s"),
            mb(&v["fio_write_1m_bytes_per_s"]),
            ratio("fio_write_1m_bytes_per_s"),
            v["storm_ops_per_s"].as_f64().unwrap_or(0.0),
            ratio("storm_ops_per_s"),
            f2(&v["replication_cpu_s"]),
            f2(&v["catch_up_s"]),
        ));
    }
    w("\n## Cost proportional to change\n".into());
    w("| replication | change | changed bytes | wall s to identical | bytes sent | CPU s |\n|---|---|---|---|---|---|".into());
    for k in ["foxing", "lsyncd+rsync", "rsync one-shot"] {
        if let Some(steps) = r["proportional"][k]["steps"].as_array() {
            for s in steps {
                w(format!(
                    "| {k} | {} | {} | {} | {} | {} |",
                    s["step"].as_str().unwrap_or(""),
                    s["changed_bytes"],
                    f2(&s["wall_s"]),
                    s["bytes_sent"]
                        .as_f64()
                        .map(|b| format!("{b:.0}"))
                        .unwrap_or_else(|| "n/a".into()),
                    f2(&s["cpu_s"]),
                ));
            }
        }
    }
    let p = &r["pipeline"];
    w("\n## Pipeline limit (incompressible data)\n".into());
    w(format!(
        "record -> ship -> apply {} of {} MiB: {}; disk {}, loopback TCP {}, zstd-1 one core {}; limit {}; ratio {:.2}x; replication CPU {} s\n",
        "sustained",
        p["bytes"].as_u64().unwrap_or(0) >> 20,
        mb(&p["pipeline_bytes_per_s"]),
        mb(&p["disk_bytes_per_s"]),
        mb(&p["loopback_tcp_bytes_per_s"]),
        mb(&p["zstd1_one_core_bytes_per_s"]),
        mb(&p["limit_bytes_per_s"]),
        p["ratio_to_limit"].as_f64().unwrap_or(0.0),
        f2(&p["replication_cpu_s"]),
    ));
    w("## Memory (peak RSS, bytes; BPF maps' kernel memory)\n".into());
    w("```".into());
    w(serde_json::to_string_pretty(&r["memory"]).unwrap_or_default());
    w("```".into());
    o
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let short = args.iter().any(|a| a == "--short");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    anyhow::ensure!(
        pos.len() == 2,
        "usage: compare-bench WORKDIR OUTDIR [--short]"
    );
    let (work, out) = (PathBuf::from(pos[0]), PathBuf::from(pos[1]));
    let z = if short { SHORT } else { FULL };
    std::fs::create_dir_all(&out)?;
    let started = Instant::now();
    let fresh = |name: &str| -> anyhow::Result<PathBuf> {
        let d = work.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let mut r = json!({"mode": if short { "short" } else { "full" }});
    let mut memory = serde_json::Map::new();
    for k in [Kind::Foxing, Kind::Lsyncd] {
        eprintln!("lag: {}", k.name());
        let (lags, mem) = lag(k, &fresh("lag")?, z.lag_writes)?;
        let mut csv = String::new();
        for (i, l) in lags.iter().enumerate() {
            csv.push_str(&format!(
                "{:.4} {}\n",
                (i as f64 + 0.5) / lags.len() as f64,
                l
            ));
        }
        std::fs::write(
            out.join(format!("lag-{}.dat", k.name().replace('+', "-"))),
            csv,
        )?;
        r["lag"][k.name()] = json!({
            "writes": lags.len(),
            "p50_us": percentile(&lags, 0.5),
            "p90_us": percentile(&lags, 0.9),
            "p99_us": percentile(&lags, 0.99),
            "max_us": lags.last().copied().unwrap_or(0),
        });
        memory.insert(format!("lag/{}", k.name()), mem);
    }
    for k in [Kind::Foxing, Kind::Lsyncd] {
        eprintln!("lost updates: {}", k.name());
        let (same, stale) = lost_updates(k, &fresh("lost")?, z.rewrites)?;
        r["lost_updates"][k.name()] =
            json!({"files": z.rewrites, "same_second": same, "stale": stale});
    }
    let mut csv = String::from("# replication randwrite_4k write_1m storm\n");
    for k in [Kind::None, Kind::Foxing, Kind::Lsyncd] {
        eprintln!("overhead: {}", k.name());
        let v = overhead(k, &fresh("overhead")?, &z)?;
        memory.insert(format!("overhead/{}", k.name()), v["memory"].clone());
        r["overhead"][k.name()] = v;
    }
    let base = r["overhead"]["none"].clone();
    for k in ["none", "foxing", "lsyncd+rsync"] {
        let v = &r["overhead"][k];
        let ratio =
            |f: &str| v[f].as_f64().unwrap_or(0.0) / base[f].as_f64().unwrap_or(1.0).max(1e-9);
        csv.push_str(&format!(
            "{} {:.3} {:.3} {:.3}\n",
            k.replace('+', "-"),
            ratio("fio_randwrite_4k_bytes_per_s"),
            ratio("fio_write_1m_bytes_per_s"),
            ratio("storm_ops_per_s")
        ));
    }
    std::fs::write(out.join("overhead.dat"), csv)?;
    for k in [Kind::Foxing, Kind::Lsyncd] {
        eprintln!("proportional: {}", k.name());
        let v = proportional(k, &fresh("prop")?, &z)?;
        memory.insert(format!("proportional/{}", k.name()), v["memory"].clone());
        r["proportional"][k.name()] = v;
    }
    eprintln!("proportional: rsync one-shot");
    r["proportional"]["rsync one-shot"] = rsync_oneshot(&fresh("prop")?, &z)?;
    eprintln!("pipeline");
    let p = pipeline(&fresh("pipe")?, &z)?;
    memory.insert("pipeline/foxing".into(), p["memory"].clone());
    r["pipeline"] = p;
    r["memory"] = Value::Object(memory);
    r["elapsed_s"] = json!(started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&work);
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&r)?)?;
    let md = report(&r);
    std::fs::write(out.join("results.md"), &md)?;
    print!("{md}");
    Ok(())
}
