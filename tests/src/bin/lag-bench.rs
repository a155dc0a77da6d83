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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foxing_tests::{free_udp_port, Proc};
use rustix::fs::inotify;

fn bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name(name)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
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
    let jdir = work.join("journal");
    let replica = work.join("replica");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("lag.dat"), [0u8; 4096])?;
    let names = ["source".to_string(), "replica1".to_string()];
    let certs = work.join("certs");
    foxing_shipper::certs::make_certs(&certs, &names, 2)?;
    let log = |n: &str| std::fs::File::create(work.join(n));
    let _rec = Proc::spawn(
        "recorder",
        Command::new(bin("foxing-journal"))
            .args(["record", "--root"])
            .arg(&src)
            .arg("--journal")
            .arg(&jdir)
            .stdout(Stdio::null())
            .stderr(log("recorder.log")?),
    );
    wait_for("the base", Duration::from_secs(30), || {
        foxing_journal::JournalReader::open(&jdir)
            .and_then(|r| r.bases())
            .is_ok_and(|b| b.iter().any(|b| b.end_seq.is_some()))
    })?;
    let port = free_udp_port();
    let c = |f: &str| certs.join(f);
    let _ship = Proc::spawn(
        "shipper",
        Command::new(bin("foxing-shipper"))
            .arg("serve")
            .arg("--journal")
            .arg(&jdir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cert")
            .arg(c("source.pem"))
            .arg("--key")
            .arg(c("source.key"))
            .arg("--ca")
            .arg(c("ca.pem"))
            .stderr(log("shipper.log")?),
    );
    std::thread::sleep(Duration::from_millis(300));
    let _app = Proc::spawn(
        "applier",
        Command::new(bin("foxing-applier"))
            .arg("--root")
            .arg(&replica)
            .arg("--state")
            .arg(work.join("state"))
            .arg("--connect")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--server-name", "source", "--follow"])
            .arg("--cert")
            .arg(c("replica1.pem"))
            .arg("--key")
            .arg(c("replica1.key"))
            .arg("--ca")
            .arg(c("ca.pem"))
            .stdout(Stdio::null())
            .stderr(log("applier.log")?),
    );
    let rfile = replica.join("lag.dat");
    wait_for("the replica file", Duration::from_secs(30), || {
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
