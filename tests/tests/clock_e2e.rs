//! Issue 9, clock jumps: the source's wall clock steps back one hour and forward two while the
//! recorder runs (a real `clock_settime`, undone at the end). Ordering stays by seq, the replica
//! converges, and `--until` behaves as docs/operations.md says: record times follow the wall
//! clock; a time the clock went back over resolves to its first occurrence (the longest prefix
//! whose times are all at or before it), and the report names the later occurrence, reachable
//! with `--until seq:N`.
//!
//! A test binary of its own: stepping the clock must not disturb other tests running beside it
//! (cargo runs test binaries one after another). Needs root and BPF.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foxing_applier::fs::FsTree;
use foxing_applier::snapshot::{diff, replicated_xattrs, snapshot};
use foxing_journal::JournalReader;
use foxing_tests::{require_bpf, start_recorder, workspace_bin};

/// Steps the wall clock; puts it back (true time = start + elapsed monotonic time) on drop.
struct Clock {
    start_wall: Duration,
    start_mono: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start_wall: SystemTime::now().duration_since(UNIX_EPOCH).unwrap(),
            start_mono: Instant::now(),
        }
    }

    fn true_now(&self) -> Duration {
        self.start_wall + self.start_mono.elapsed()
    }

    /// Sets the wall clock to the true time plus `offset_s`.
    fn set(&self, offset_s: i64) {
        let t = self.true_now().as_nanos() as i128 + offset_s as i128 * 1_000_000_000;
        let ts = rustix::time::Timespec {
            tv_sec: (t / 1_000_000_000) as i64,
            tv_nsec: (t % 1_000_000_000) as i64,
        };
        rustix::time::clock_settime(rustix::time::ClockId::Realtime, ts)
            .expect("clock_settime (needs root)");
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.set(0);
    }
}

fn write_synced(p: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o644)
        .open(p)
        .unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn restore(jdir: &Path, root: &Path, state: &Path, until: &str) -> serde_json::Value {
    let out = restore_cmd(jdir, root, state, until);
    assert!(
        out.status.success(),
        "restore --until {until}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn restore_cmd(jdir: &Path, root: &Path, state: &Path, until: &str) -> std::process::Output {
    Command::new(workspace_bin("foxing-applier"))
        .arg("--root")
        .arg(root)
        .arg("--state")
        .arg(state)
        .arg("--journal")
        .arg(jdir)
        .args(["--until", until, "--json"])
        .output()
        .unwrap()
}

fn names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn secs_arg(t_ns: u64) -> String {
    format!("{}.{:09}", t_ns / 1_000_000_000, t_ns % 1_000_000_000)
}

#[test]
fn wall_clock_steps_during_recording_keep_seq_order_and_until_is_honest() {
    if !require_bpf() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let jdir = d.path().join("journal");
    std::fs::create_dir_all(&src).unwrap();
    // The recorder runs as its own process: it does not record its own process's writes.
    let log = d.path().join("recorder.log");
    let mut rec = start_recorder(&src, &jdir, &log, &[]);
    let pause = || std::thread::sleep(Duration::from_millis(300));
    // The restores below expect the times sweep's record for a file (journaled a few ms after
    // its last change) to carry that file's timeline: wait until it is journaled before the
    // clock steps (the sweep of a busy recorder once came after the step and the test failed).
    let swept = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = JournalReader::open(&jdir).ok().is_some_and(|r| {
                r.meta().ok().is_some_and(|m| {
                    r.records(1, m.durable_seq).ok().is_some_and(|mut it| {
                        it.any(|rec| {
                            rec.is_ok_and(|rec| {
                                matches!(&rec.op, foxing_proto::Op::SetTimes { path, .. }
                                    if path.as_bytes() == name.as_bytes())
                            })
                        })
                    })
                })
            });
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the times sweep never journaled {name}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    {
        let clock = Clock::new();
        write_synced(&src.join("a"), b"A");
        pause();
        swept("a");
        clock.set(-3600);
        pause();
        write_synced(&src.join("b"), b"B");
        pause();
        clock.set(3600);
        pause();
        write_synced(&src.join("c"), b"C");
        pause();
        swept("c");
        clock.set(0);
        pause();
        write_synced(&src.join("d"), b"D");
        pause();
    }
    let st = rec
        .terminate(Duration::from_secs(20))
        .expect("recorder stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(st.success(), "{text}");
    assert!(
        text.matches("the wall clock stepped").count() >= 3,
        "each step is noticed and logged: {text}"
    );

    // Seq order is intact and the journal verifies; times are not monotone.
    let v = foxing_journal::verify::verify(&jdir).unwrap();
    assert!(v.ok(), "{:?}", v.damage);
    let r = JournalReader::open(&jdir).unwrap();
    let m = r.meta().unwrap();
    let syncs = r.sync_points(m.first_seq, m.durable_seq).unwrap();
    let fsync_of = |name: &str| {
        syncs
            .iter()
            .find(|s| {
                r.records(s.seq, s.seq).unwrap().next().unwrap().unwrap().op
                    == foxing_proto::Op::Sync {
                        path: Some(foxing_proto::RelPath::new(name)),
                        kind: foxing_proto::SyncKind::Fsync,
                    }
            })
            .unwrap_or_else(|| {
                let all: Vec<String> = r
                    .records(m.first_seq, m.durable_seq)
                    .unwrap()
                    .map(|x| format!("{:?}", x.unwrap()))
                    .collect();
                panic!("the fsync of {name} is a sync point: {all:#?}")
            })
    };
    let (sa, sb, sc, sd) = (fsync_of("a"), fsync_of("b"), fsync_of("c"), fsync_of("d"));
    assert!(sa.seq < sb.seq && sb.seq < sc.seq && sc.seq < sd.seq);
    let hour = 3_600_000_000_000u64;
    assert!(
        sb.time_ns + hour / 2 < sa.time_ns,
        "b's time follows the clock back"
    );
    assert!(
        sc.time_ns > sa.time_ns + hour / 2,
        "c's time follows it forward"
    );
    assert!(sd.time_ns < sc.time_ns, "d's time is back to the true time");
    drop(r);

    // The replica converges.
    let full = d.path().join("full");
    restore(
        &jdir,
        &full,
        &d.path().join("s-full"),
        &format!("seq:{}", m.durable_seq),
    );
    let a = snapshot(&mut FsTree::open(&src).unwrap(), replicated_xattrs).unwrap();
    let b = snapshot(&mut FsTree::open(&full).unwrap(), replicated_xattrs).unwrap();
    assert_eq!(diff(&a, &b), Vec::<String>::new());

    // By seq, b's state is reachable.
    let at_b = d.path().join("at-b");
    restore(
        &jdir,
        &at_b,
        &d.path().join("s-b"),
        &format!("seq:{}", sb.seq),
    );
    assert_eq!(names(&at_b), ["a", "b"]);

    // By time, b's time first occurred an hour before the recording began: no restore point
    // is at or before its first occurrence, so that restore is refused (exit 1), and the
    // message names b's sync point as the later occurrence and how to reach it.
    let out = restore_cmd(
        &jdir,
        &d.path().join("by-time"),
        &d.path().join("s-t"),
        &secs_arg(sb.time_ns),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no restore point at or before the target")
            || err.contains("before the oldest complete base"),
        "{err}"
    );
    assert!(err.contains(&format!("--until seq:{}", sb.seq)), "{err}");

    // Just after a's fsync (before the step back): a only.
    let at_a = d.path().join("at-a");
    let rep = restore(
        &jdir,
        &at_a,
        &d.path().join("s-a"),
        &secs_arg(sa.time_ns + 1000),
    );
    assert_eq!(names(&at_a), ["a"], "{rep}");
    assert_eq!(
        rep["restore"]["reached"]["seq"].as_u64(),
        Some(sa.seq),
        "{rep}"
    );

    // c's time (an hour ahead): the prefix ends at c's fsync, since what followed on that
    // timeline is later still. After the clock came back, d's fsync is again at or before it:
    // the report names it as the later occurrence.
    let at_c = d.path().join("at-c");
    let rep = restore(&jdir, &at_c, &d.path().join("s-c"), &secs_arg(sc.time_ns));
    assert_eq!(names(&at_c), ["a", "b", "c"], "{rep}");
    assert_eq!(
        rep["restore"]["reached"]["seq"].as_u64(),
        Some(sc.seq),
        "{rep}"
    );
    assert_eq!(
        rep["restore"]["time_occurs_again_at"]["seq"].as_u64(),
        Some(sd.seq),
        "{rep}"
    );
}
