//! End-to-end replication lag of single small writes: from a source `pwrite()` returning to the
//! bytes being in the replica file, through recorder -> journal -> shipper -> QUIC/mTLS ->
//! applier on loopback. Writes are spaced apart (the source is idle between them), so this also
//! checks that batching adds no latency to the first record after a quiet period.
//!
//!     lag-bench WORKDIR [WRITES] [GAP_MS]       (root; release binaries next to this one)
//!
//! Prints p50/p90/p99/max in microseconds, and one JSON line for scripts.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::fs::inotify;

fn bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name(name)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let work = PathBuf::from(
        a.next()
            .ok_or_else(|| anyhow::anyhow!("usage: lag-bench WORKDIR [WRITES] [GAP_MS]"))?,
    );
    let writes: usize = a.next().unwrap_or_else(|| "300".into()).parse()?;
    let gap_ms: u64 = a.next().unwrap_or_else(|| "20".into()).parse()?;
    let src = work.join("src");
    let replica = work.join("replica");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("lag.dat"), [0u8; 4096])?;
    let bin_dir = bin("foxing-journal")
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let _stack = foxing_tests::FoxingStack::start(&bin_dir, &work, &src, &replica)?;
    let rfile = replica.join("lag.dat");
    foxing_tests::wait_until("the replica file", Duration::from_secs(30), || {
        rfile.exists()
    })?;
    let source = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join("lag.dat"))?;
    let seen = std::fs::File::open(&rfile)?;
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    inotify::add_watch(&ino, &rfile, inotify::WatchFlags::MODIFY)?;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
    let mut lags = Vec::with_capacity(writes);
    for i in 0..writes as u64 {
        let token = (i + 1).to_le_bytes();
        let t0 = Instant::now();
        source.write_all_at(&token, 0)?;
        let t_written = Instant::now();
        if std::env::var_os("LAG_TRACE").is_some() {
            eprintln!(
                "{} wrote token {}",
                foxing_proto::time::fmt_time_ns(foxing_proto::time::now_ns()),
                i + 1
            );
        }
        let mut got = [0u8; 8];
        loop {
            seen.read_exact_at(&mut got, 0)?;
            if got == token {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("write {i} did not reach the replica within 10 s");
            }
            let mut pfd = [rustix::event::PollFd::new(
                &ino,
                rustix::event::PollFlags::IN,
            )];
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 5_000_000,
            };
            let _ = rustix::event::poll(&mut pfd, Some(&ts));
            let mut rd = inotify::Reader::new(&ino, &mut buf);
            while rd.next().is_ok() {}
        }
        lags.push(t_written.elapsed().as_micros() as u64);
        std::thread::sleep(Duration::from_millis(gap_ms));
    }
    let mut s = lags.clone();
    s.sort_unstable();
    let (p50, p90, p99, max) = (
        percentile(&s, 0.5),
        percentile(&s, 0.9),
        percentile(&s, 0.99),
        *s.last().unwrap_or(&0),
    );
    println!(
        "lag over {writes} single 8-byte writes, {gap_ms} ms apart: p50 {p50} us, p90 {p90} us, p99 {p99} us, max {max} us"
    );
    println!(
        "{{\"writes\": {writes}, \"gap_ms\": {gap_ms}, \"p50_us\": {p50}, \"p90_us\": {p90}, \"p99_us\": {p99}, \"max_us\": {max}}}"
    );
    Ok(())
}
