//! The probes on this kernel: writes, pwrites and fsyncs under the watched root are captured
//! with exact paths, offsets and bytes; nothing outside the root is.
//! Needs root and BPF: skipped without them, unless FOXING_REQUIRE_BPF=1 (CI), where it fails.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use foxing_probes::layout::*;
use foxing_probes::{bpf_available, ProbeConfig, Probes, RawEvent};

fn require_bpf() -> bool {
    if bpf_available() {
        return true;
    }
    if std::env::var("FOXING_REQUIRE_BPF").is_ok_and(|v| v == "1") {
        panic!("FOXING_REQUIRE_BPF=1 but this process cannot load eBPF (root and /sys/kernel/btf/vmlinux needed)");
    }
    eprintln!("skipping: needs root and BPF (set FOXING_REQUIRE_BPF=1 to make this a failure)");
    false
}

fn collect(p: &mut Probes, until: impl Fn(&[RawEvent]) -> bool) -> Vec<RawEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !until(&out) {
        p.poll(Duration::from_millis(20), 10_000, &mut out).unwrap();
    }
    out
}

#[test]
fn writes_pwrites_and_fsyncs_under_the_root_are_captured_exactly() {
    if !require_bpf() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    let outside = base.path().join("outside.dat");
    let mut p = Probes::load(&ProbeConfig {
        root: root.clone(),
        payload_cap_bytes: 64 * 1024,
        ring_size_bytes: foxing_probes::DEFAULT_RING_SIZE_BYTES,
    })
    .unwrap();

    // The recorder's own writes are excluded, so the workload runs in a child process.
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "workload_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FOXING_TEST_ROOT", &root)
        .env("FOXING_TEST_OUTSIDE", &outside)
        .status()
        .unwrap();
    assert!(st.success());
    let ids: Vec<u32> = std::fs::read_to_string(root.join("pid"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (child_tgid, child_tid) = (ids[0], ids[1]);

    let evs = collect(&mut p, |e| {
        e.iter().filter(|e| e.path == b"log").count() >= 2
    });
    let mine: Vec<&RawEvent> = evs
        .iter()
        .filter(|e| e.header.tgid == child_tgid && e.path != b"pid")
        .collect();
    let writes: Vec<(&[u8], u64, &[u8], u32)> = mine
        .iter()
        .filter(|e| e.header.op == FX_OP_WRITE)
        .map(|e| {
            (
                e.path.as_slice(),
                e.header.offset,
                e.data.as_slice(),
                e.header.flags,
            )
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            (&b"sub/deeper/a.dat"[..], 0, &b"hello "[..], 0),
            (&b"sub/deeper/a.dat"[..], 6, &b"world"[..], 0),
            (&b"sub/deeper/a.dat"[..], 100, &b"XY"[..], 0),
            (&b"sub/deeper/a.dat"[..], 4096, &b""[..], FX_F_INEXACT),
            (&b"log"[..], 0, &b"line1\n"[..], 0),
            (&b"log"[..], 6, &b"line2\n"[..], 0),
        ]
    );
    let big_ev = mine
        .iter()
        .find(|e| e.header.flags & FX_F_INEXACT != 0)
        .unwrap();
    assert_eq!(big_ev.header.len, 100 * 1024);
    let ops: Vec<(u32, &[u8])> = mine
        .iter()
        .filter(|e| e.header.op != FX_OP_WRITE)
        .map(|e| (e.header.op, e.path.as_slice()))
        .collect();
    assert_eq!(
        ops,
        vec![
            (FX_OP_CREATE, &b"sub/deeper/a.dat"[..]),
            (FX_OP_FSYNC, &b"sub/deeper/a.dat"[..]),
            (FX_OP_FDATASYNC, &b"sub/deeper/a.dat"[..]),
            (FX_OP_CREATE, &b"log"[..]),
        ]
    );
    let create = mine.iter().find(|e| e.header.op == FX_OP_CREATE).unwrap();
    assert_eq!(create.header.mode & 0o170000, 0o100000, "S_IFREG");
    assert_eq!(create.header.owner_uid, 0);
    assert!(
        !evs.iter().any(|e| e.path.ends_with(b"outside.dat")),
        "a file outside the root was captured"
    );
    // Seqs are gapless and increasing across everything captured.
    for w in evs.windows(2) {
        assert!(w[1].header.seq > w[0].header.seq);
    }
    let e = &mine[0].header;
    assert_eq!(e.tgid, child_tgid);
    assert_eq!(e.pid, child_tid, "pid is the writing thread's id");
    assert_eq!(e.uid, 0);
    assert_eq!(e.gid, 0);
    // Attribution is read from the task's credentials and cgroup (direct loads in the probes):
    // the log lines were written after the writing thread switched its gids.
    let log = mine
        .iter()
        .find(|e| e.path == b"log" && e.header.op == FX_OP_WRITE)
        .unwrap();
    assert_eq!(
        log.header.gid, 4242,
        "gid is the writing thread's (real) gid"
    );
    assert_eq!(log.header.uid, 0);
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    if let Some(path) = cg.lines().find_map(|l| l.strip_prefix("0::")) {
        use std::os::unix::fs::MetadataExt;
        let dir = format!("/sys/fs/cgroup{}", path.trim());
        if let Ok(m) = std::fs::metadata(&dir) {
            assert_eq!(
                e.cgroup_id,
                m.ino(),
                "cgroup_id is the cgroup v2 id of {dir}"
            );
        }
    }
    assert_eq!(
        &e.comm[..8],
        b"workload",
        "comm is the writing thread's name"
    );
    assert!(
        !evs.iter().any(|e| e.header.tgid == std::process::id()),
        "the recorder's own writes must be excluded"
    );
    assert_eq!(p.drops().unwrap(), 0);
    // The skipped-run counters are readable (one bpf syscall per program) and nothing ran nested.
    assert_eq!(p.missed_runs().unwrap(), 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let t = p.wall_ns(e.time_ns);
    assert!(
        t <= now && now - t < 60_000_000_000,
        "event time {t} vs now {now}"
    );
}

/// The workload, run as a child process by the test above (a no-op when run on its own).
#[test]
fn workload_child() {
    let (Some(root), Some(outside)) = (
        std::env::var_os("FOXING_TEST_ROOT"),
        std::env::var_os("FOXING_TEST_OUTSIDE"),
    ) else {
        return;
    };
    let root = std::path::PathBuf::from(root);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("sub/deeper/a.dat"))
        .unwrap();
    f.write_all(b"hello ").unwrap();
    f.write_all(b"world").unwrap();
    f.write_all_at(b"XY", 100).unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    let big = vec![7u8; 100 * 1024];
    f.write_all_at(&big, 4096).unwrap();
    let mut app = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("log"))
        .unwrap();
    // SAFETY: a raw setresgid changes only this thread's credentials; it writes no memory.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, 4242, 4242, 4242) };
    assert_eq!(r, 0, "setresgid");
    app.write_all(b"line1\n").unwrap();
    app.write_all(b"line2\n").unwrap();
    std::fs::write(&outside, b"not watched").unwrap();
    // SAFETY: gettid has no arguments and no side effects.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    std::fs::write(root.join("pid"), format!("{} {tid}", std::process::id())).unwrap();
}
