//! `foxing-applier` as users run it: real journals, real directories, SIGKILL, restores.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{act, record_with_snapshots, Act, Snap};
use foxing_applier::fs::FsTree;
use foxing_applier::snapshot::{diff, snapshot, user_xattrs};
use foxing_journal::{Journal, JournalOptions};
use foxing_proto::{Event, Op, Record, RelPath, Writer};
use proptest::strategy::{Strategy, ValueTree};

const T0: u64 = 1_790_000_000_000_000_000;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_foxing-applier")
}

fn write_journal(dir: &Path, recs: &[Record]) {
    let mut j = Journal::open(
        dir,
        JournalOptions {
            fsync_window: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .unwrap();
    for chunk in recs.chunks(50) {
        assert_eq!(j.next_seq(), chunk[0].seq);
        j.append(
            chunk
                .iter()
                .map(|r| Event {
                    time_ns: r.time_ns,
                    writer: r.writer.clone(),
                    op: r.op.clone(),
                })
                .collect(),
        )
        .unwrap();
    }
    j.sync().unwrap();
}

fn workload(n: usize, seed: u64, snapshots: bool) -> (Vec<Record>, Snap, Vec<(u64, Snap)>) {
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &seed.to_le_bytes().repeat(4),
        ),
    );
    let mut acts: Vec<Act> = (0..n)
        .map(|_| act().new_tree(&mut runner).unwrap().current())
        .collect();
    acts.insert(0, Act::Base);
    let (mut src, mut recs, snaps) = record_with_snapshots(&acts, snapshots);
    for r in &mut recs {
        r.time_ns = T0 + r.seq * 1_000_000_000; // one record a second
    }
    let fin = snapshot(&mut src, user_xattrs).unwrap();
    (recs, fin, snaps)
}

fn apply(root: &Path, state: &Path, journal: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args([
            "--root",
            root.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn tree_snap(root: &Path) -> Snap {
    snapshot(&mut FsTree::open(root).unwrap(), user_xattrs).unwrap()
}

#[test]
fn a_journal_applies_to_an_identical_tree_and_reapplying_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (recs, fin, _) = workload(400, 1, false);
    let j = d.path().join("j");
    write_journal(&j, &recs);
    let (root, state) = (d.path().join("root"), d.path().join("state"));
    let o = apply(&root, &state, &j, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["applied_seq"], recs.len());
    assert_eq!(diff(&fin, &tree_snap(&root)), Vec::<String>::new());
    let o = apply(&root, &state, &j, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stats"]["records"], 0, "nothing new to apply");
}

#[test]
fn applier_converges_after_50_sigkills() {
    let d = tempfile::tempdir().unwrap();
    let (recs, fin, _) = workload(100_000, 7, false);
    let j = d.path().join("j");
    write_journal(&j, &recs);
    let (root, state) = (d.path().join("root"), d.path().join("state"));
    let mut rng = fastrand::Rng::with_seed(99);
    let mut kills = 0;
    let mut last_progress = 0u64;
    let mut progressed = 0;
    // A loaded machine starts the applier slower: after a kill that landed before any
    // progress, wait longer next time (reset once one lands mid-apply).
    let mut slack_ms = 0u64;
    while kills < 50 {
        let mut child = Command::new(bin())
            .args([
                "--root",
                root.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--journal",
                j.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(
            rng.u64(2_000..40_000) + slack_ms * 1_000,
        ));
        let done = child.try_wait().unwrap();
        child.kill().ok();
        child.wait().unwrap();
        if let Some(st) = done {
            assert!(st.success(), "the applier failed on its own: {st}");
            break; // finished before the kill: the journal is too small for more kills
        }
        kills += 1;
        let (_, r) = foxing_applier::state::State::open(&state).unwrap();
        if r.applied_seq > last_progress {
            progressed += 1;
            last_progress = r.applied_seq;
            slack_ms = 0;
        } else {
            slack_ms = (slack_ms + 10).min(200);
        }
    }
    assert!(
        kills >= 50,
        "the apply finished after {kills} kills; make the workload larger"
    );
    assert!(
        progressed >= 10,
        "too few kills landed mid-apply: {progressed}"
    );
    let o = apply(&root, &state, &j, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(diff(&fin, &tree_snap(&root)), Vec::<String>::new());
}

#[test]
fn restore_reaches_the_last_sync_point_before_the_target_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let (recs, _, snaps) = workload(600, 3, true);
    assert!(snaps.len() > 10);
    let j = d.path().join("j");
    write_journal(&j, &recs);
    for (k, pick) in [1usize, snaps.len() / 3, snaps.len() / 2, snaps.len() - 1]
        .into_iter()
        .enumerate()
    {
        let (sync_seq, want) = &snaps[pick];
        // A time after this sync point but before the next record that is a sync point.
        let next_sync = snaps.get(pick + 1).map(|s| s.0).unwrap_or(u64::MAX);
        let t_seq = (*sync_seq + 1).min(next_sync - 1).max(*sync_seq);
        let t = T0 + t_seq * 1_000_000_000 + 500_000_000;
        let root = d.path().join(format!("r{k}"));
        let state = d.path().join(format!("s{k}"));
        let until = format!("{}.5", (T0 + t_seq * 1_000_000_000) / 1_000_000_000);
        let _ = t;
        let o = apply(&root, &state, &j, &["--until", &until, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["restore"]["reached"]["seq"], *sync_seq, "{v}");
        assert_eq!(v["restore"]["reached"]["kind"], "sync");
        assert_eq!(
            v["restore"]["reached"]["time_ns"],
            T0 + sync_seq * 1_000_000_000
        );
        if pick > 0 {
            assert_eq!(v["restore"]["nearest_before"]["seq"], snaps[pick - 1].0);
        }
        if pick + 1 < snaps.len() {
            assert_eq!(v["restore"]["nearest_after"]["seq"], snaps[pick + 1].0);
        }
        assert_eq!(
            diff(want, &tree_snap(&root)),
            Vec::<String>::new(),
            "restore to sync seq {sync_seq}"
        );
    }
    // seq:N and --at-any-record.
    let (sync_seq, want) = &snaps[2];
    let root = d.path().join("rs");
    let o = apply(
        &root,
        &d.path().join("ss"),
        &j,
        &["--until", &format!("seq:{sync_seq}"), "--json"],
    );
    assert!(o.status.success());
    assert_eq!(diff(want, &tree_snap(&root)), Vec::<String>::new());
    let o = apply(
        &d.path().join("ra"),
        &d.path().join("sa"),
        &j,
        &[
            "--until",
            &format!("seq:{}", sync_seq + 1),
            "--at-any-record",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["restore"]["reached"]["seq"], sync_seq + 1);
    assert_eq!(v["restore"]["reached"]["kind"], "record");
}

#[test]
fn restore_before_the_oldest_base_exits_1_and_explains() {
    let d = tempfile::tempdir().unwrap();
    let (recs, _, _) = workload(50, 5, false);
    let j = d.path().join("j");
    write_journal(&j, &recs);
    let o = apply(
        &d.path().join("r"),
        &d.path().join("s"),
        &j,
        &["--until", "1000"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no restore point") || err.contains("before the oldest"),
        "{err}"
    );
}

/// Hostile records: each is refused with an error naming its seq; the prefix before it is
/// applied; nothing outside the replica root is touched.
#[test]
fn crafted_paths_are_refused_and_nothing_outside_the_root_is_written() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"precious").unwrap();
    let out = outside.to_str().unwrap().as_bytes().to_vec();
    let mut abs_victim = out.clone();
    abs_victim.extend_from_slice(b"/victim");
    let w = |data: &[u8]| data.to_vec();
    let hostile: Vec<(&str, Vec<Op>)> = vec![
        (
            "absolute",
            vec![Op::Write {
                path: RelPath(abs_victim.clone()),
                offset: 0,
                data: w(b"pwned"),
            }],
        ),
        (
            "dotdot",
            vec![Op::Create {
                path: RelPath::new("../outside/new"),
                mode: 0o644,
                uid: 0,
                gid: 0,
            }],
        ),
        (
            "inner dotdot",
            vec![Op::Unlink {
                path: RelPath::new("a/../../outside/victim"),
            }],
        ),
        (
            "nul",
            vec![Op::Create {
                path: RelPath::new(&b"a\0b"[..]),
                mode: 0o644,
                uid: 0,
                gid: 0,
            }],
        ),
        (
            "long name",
            vec![Op::Create {
                path: RelPath::new(vec![b'x'; 300]),
                mode: 0o644,
                uid: 0,
                gid: 0,
            }],
        ),
        (
            "symlink dir escape",
            vec![
                Op::Symlink {
                    path: RelPath::new("esc"),
                    target: out.clone(),
                    uid: 0,
                    gid: 0,
                },
                Op::Create {
                    path: RelPath::new("esc/new"),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            ],
        ),
        (
            "symlink dir write",
            vec![
                Op::Symlink {
                    path: RelPath::new("esc"),
                    target: out.clone(),
                    uid: 0,
                    gid: 0,
                },
                Op::Write {
                    path: RelPath::new("esc/victim"),
                    offset: 0,
                    data: w(b"pwned"),
                },
            ],
        ),
        (
            "rename through symlink",
            vec![
                Op::Symlink {
                    path: RelPath::new("esc"),
                    target: out.clone(),
                    uid: 0,
                    gid: 0,
                },
                Op::Rename {
                    from: RelPath::new("esc/victim"),
                    to: RelPath::new("stolen"),
                    flags: 0,
                },
            ],
        ),
        (
            "link through symlink",
            vec![
                Op::Symlink {
                    path: RelPath::new("esc"),
                    target: out.clone(),
                    uid: 0,
                    gid: 0,
                },
                Op::Link {
                    existing: RelPath::new("esc/victim"),
                    new: RelPath::new("hard"),
                },
            ],
        ),
        (
            "whiteout exchange",
            vec![Op::Rename {
                from: RelPath::new("a"),
                to: RelPath::new("b"),
                flags: 6,
            }],
        ),
        (
            "huge offset",
            vec![Op::Write {
                path: RelPath::new("a/f"),
                offset: u64::MAX - 2,
                data: w(b"xyz"),
            }],
        ),
    ];
    for (name, ops) in hostile {
        let jd = d.path().join(format!("j-{name}"));
        let mut all = vec![
            Op::BaseBegin { base_id: 1 },
            Op::BaseEnd { base_id: 1 },
            Op::Mkdir {
                path: RelPath::new("a"),
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
            Op::Create {
                path: RelPath::new("a/f"),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        ];
        let bad_seq = all.len() as u64 + ops.len() as u64;
        all.extend(ops);
        all.push(Op::Create {
            path: RelPath::new("after"),
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
        let recs: Vec<Record> = all
            .into_iter()
            .enumerate()
            .map(|(i, op)| Record {
                seq: i as u64 + 1,
                time_ns: T0 + i as u64,
                writer: Writer::default(),
                op,
            })
            .collect();
        write_journal(&jd, &recs);
        let root = d.path().join(format!("r-{name}"));
        let o = apply(&root, &d.path().join(format!("s-{name}")), &jd, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("seq {bad_seq}")),
            "{name}: error does not name seq {bad_seq}: {err}"
        );
        assert!(
            root.join("a/f").exists(),
            "{name}: the prefix before the refused record was not applied"
        );
        assert!(
            !root.join("after").exists(),
            "{name}: records after a refused one were applied"
        );
        assert_eq!(
            std::fs::read(outside.join("victim")).unwrap(),
            b"precious",
            "{name}"
        );
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            1,
            "{name}: something was created outside: {names:?}"
        );
        assert!(!d.path().join("stolen").exists() && !d.path().join("hard").exists());
    }
}

/// A replica that applied past a Gap whose heal it does not hold (the recorder died before
/// healing) is not a state the source had: the applier says so, on stderr and in --json, and
/// names the last consistent point; restoring it gives exactly the source's state there. Once
/// the heal is journaled and applied, the replica is consistent again.
#[test]
fn a_replica_between_a_gap_and_its_heal_says_so_and_names_the_last_consistent_point() {
    let d = tempfile::tempdir().unwrap();
    let (recs, _, snaps) = workload(200, 9, true);
    // A sync point after the workload's last BaseBegin: a base begun after the gap would close
    // its window at its end (the heal a recorder journals after a whole base).
    let last_base = recs
        .iter()
        .filter(|r| matches!(r.op, Op::BaseBegin { .. }))
        .map(|r| r.seq)
        .max()
        .unwrap();
    let (sync_seq, want) = snaps
        .iter()
        .find(|(s, _)| *s > last_base)
        .expect("a sync point after the last base");
    let ev = |r: &Record| Event {
        time_ns: r.time_ns,
        writer: r.writer.clone(),
        op: r.op.clone(),
    };
    // The gap right after that sync point; the records after it are still applied.
    let mut events: Vec<Event> = recs.iter().map(ev).collect();
    let gap_seq = sync_seq + 1;
    events.insert(
        *sync_seq as usize,
        Event {
            time_ns: T0 + sync_seq * 1_000_000_000 + 500_000_000,
            writer: Writer::default(),
            op: Op::Gap {
                lost: 3,
                reason: foxing_proto::GapReason::RingFull,
            },
        },
    );
    let j = d.path().join("j");
    let mut journal = Journal::open(&j, JournalOptions::default()).unwrap();
    for chunk in events.chunks(50) {
        journal.append(chunk.to_vec()).unwrap();
    }
    journal.sync().unwrap();
    drop(journal);
    let (root, state) = (d.path().join("r"), d.path().join("s"));
    let o = apply(&root, &state, &j, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consistent"], false, "{v}");
    assert_eq!(v["open_gap"]["seq"], gap_seq, "{v}");
    assert_eq!(v["open_gap"]["reason"], "ring_full", "{v}");
    assert_eq!(v["open_gap"]["healed_seq"], serde_json::Value::Null, "{v}");
    assert_eq!(v["last_consistent_point"]["seq"], *sync_seq, "{v}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a state the source had")
            && err.contains(&format!("--until seq:{sync_seq}")),
        "{err}"
    );
    // The advice, followed.
    let o = apply(
        &d.path().join("r2"),
        &d.path().join("s2"),
        &j,
        &["--until", &format!("seq:{sync_seq}"), "--json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consistent"], true, "{v}");
    assert_eq!(
        diff(want, &tree_snap(&d.path().join("r2"))),
        Vec::<String>::new()
    );
    // The heal arrives: the same replica, resumed, is consistent.
    let mut journal = Journal::open(&j, JournalOptions::default()).unwrap();
    journal
        .append(vec![Event {
            time_ns: T0 + 1_000_000 * 1_000_000_000,
            writer: Writer::default(),
            op: Op::GapHealed { gap_seq },
        }])
        .unwrap();
    journal.sync().unwrap();
    drop(journal);
    let o = apply(&root, &state, &j, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consistent"], true, "{v}");
    assert_eq!(v["open_gap"], serde_json::Value::Null, "{v}");
}

/// A replica that has not applied its first base whole holds part of the tree: not consistent.
#[test]
fn a_replica_inside_its_first_base_is_not_consistent() {
    let d = tempfile::tempdir().unwrap();
    let (recs, _, _) = workload(40, 11, false);
    let end = recs
        .iter()
        .position(|r| matches!(r.op, Op::BaseEnd { .. }))
        .expect("the workload starts with a base");
    let j = d.path().join("j");
    write_journal(&j, &recs[..end]);
    let o = apply(&d.path().join("r"), &d.path().join("s"), &j, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consistent"], false, "{v}");
    assert_eq!(v["open_gap"]["reason"], "base_incomplete", "{v}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("first base"));
    // The whole journal: consistent.
    let j2 = d.path().join("j2");
    write_journal(&j2, &recs);
    let o = apply(&d.path().join("r2"), &d.path().join("s2"), &j2, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consistent"], true, "{v}");
}

/// A state directory inside the replica root would be replaced by the tree it replicates (a
/// base removes what the source does not have), a journal inside it written over: refused as
/// usage errors (exit 2).
#[test]
fn state_or_journal_inside_the_replica_root_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let (recs, _, _) = workload(20, 5, false);
    let j = d.path().join("j");
    write_journal(&j, &recs);
    let root = d.path().join("root");
    let o = apply(&root, &root.join(".state"), &j, &[]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("overlap"));
    let o = apply(&d.path().join("j/restored"), &d.path().join("s"), &j, &[]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("overlap"));
}
