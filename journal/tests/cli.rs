//! The `foxing-journal` command line: output, JSON, exit codes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use foxing_journal::{list_segments, Journal, JournalOptions, Layout};
use foxing_proto::{Event, Op, RelPath, SyncKind, Writer};

fn fj(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foxing-journal"))
        .args(args)
        .output()
        .unwrap()
}

fn make(dir: &Path) {
    let mut j = Journal::open(
        dir,
        JournalOptions {
            fsync_window: Duration::ZERO,
            segment_size_bytes: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let w = Writer {
        pid: 9,
        comm: *b"pg\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        ..Default::default()
    };
    let e = |t: u64, op: Op| Event {
        time_ns: t * 1_000_000_000,
        writer: w.clone(),
        op,
    };
    j.append(vec![
        e(100, Op::BaseBegin { base_id: 1 }),
        e(100, Op::BaseEnd { base_id: 1 }),
    ])
    .unwrap();
    for i in 0..200u64 {
        j.append(vec![
            e(
                101 + i,
                Op::Write {
                    path: RelPath::new(&b"data/\xffbin"[..]),
                    offset: i * 10,
                    data: vec![i as u8; 100 + i as usize],
                },
            ),
            e(
                101 + i,
                Op::Sync {
                    path: Some(RelPath::new("data/x")),
                    kind: SyncKind::Fdatasync,
                },
            ),
        ])
        .unwrap();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn dump_prints_one_record_a_line_and_json_lines() {
    let d = tempfile::tempdir().unwrap();
    make(d.path());
    let j = d.path().to_str().unwrap();
    let o = fj(&["dump", "--journal", j]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 402);
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .starts_with("3 1970-01-01T00:01:41"),
        "{}",
        text.lines().nth(2).unwrap()
    );
    assert!(text.contains("pg[9]") && text.contains("data/\\xffbin"));

    let o = fj(&[
        "dump",
        "--journal",
        j,
        "--from",
        "10",
        "--until",
        "seq:19",
        "--json",
    ]);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0]["seq"], 10);
    assert_eq!(lines[0]["op"], "sync");
    assert_eq!(lines[0]["kind"], "fdatasync");
    assert_eq!(lines[1]["path_hex"], "646174612fff62696e");

    // --until a time: every record at or before it, nothing after.
    let o = fj(&["dump", "--journal", j, "--until", "110", "--json"]);
    let seqs: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=22).collect::<Vec<_>>());
}

#[test]
fn stat_reports_seqs_bases_syncs_and_sizes() {
    let d = tempfile::tempdir().unwrap();
    make(d.path());
    let o = fj(&["stat", "--journal", d.path().to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["first_seq"], 1);
    assert_eq!(v["last_seq"], 402);
    assert_eq!(v["durable_seq"], 402);
    assert_eq!(v["sync_points"], 200);
    assert_eq!(v["bases"][0]["complete"], true);
    assert_eq!(v["first_time_ns"], 100_000_000_000u64);
    assert!(v["segments"].as_u64().unwrap() > 1);
    let o = fj(&["stat", "--journal", d.path().to_str().unwrap()]);
    assert!(stdout(&o).contains("seqs         1..=402"));
}

#[test]
fn verify_exits_1_and_names_segment_and_offset_on_damage() {
    let d = tempfile::tempdir().unwrap();
    make(d.path());
    let j = d.path().to_str().unwrap();
    let o = fj(&["verify", "--journal", j]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).trim_end().ends_with("ok"));
    let seg = list_segments(&Layout::new(d.path())).unwrap()[1].1.clone();
    let mut b = std::fs::read(&seg).unwrap();
    b[100] ^= 0xff;
    std::fs::write(&seg, &b).unwrap();
    let o = fj(&["verify", "--journal", j]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("DAMAGE: segment {} offset", seg.display())),
        "{out}"
    );
    let o = fj(&["verify", "--journal", j, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["damage"][0]["offset"].as_u64().unwrap() <= 100);
}

#[test]
fn usage_errors_exit_2_and_missing_journals_are_explained() {
    assert_eq!(fj(&["dump"]).status.code(), Some(2));
    assert_eq!(
        fj(&["dump", "--journal", "/x", "--until", "tomorrow"])
            .status
            .code(),
        Some(2)
    );
    let o = fj(&["stat", "--journal", "/nonexistent/j"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/j does not exist"));
}

#[test]
fn prune_keeps_the_base_and_recover_reports() {
    let d = tempfile::tempdir().unwrap();
    make(d.path());
    let j = d.path().to_str().unwrap();
    // The only base is at the start: nothing can go.
    let o = fj(&["prune", "--journal", j, "--keep", "1s", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["keep_from_seq"], 1);
    assert_eq!(v["segments_removed"].as_array().unwrap().len(), 0);
    let o = fj(&["recover", "--journal", j]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("durable up to seq 402"));
}

/// A journal inside the watched root would record itself (its segments were read by every
/// base and shipped as part of the tree): refused before anything is created.
#[test]
fn record_refuses_a_journal_inside_the_watched_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("src");
    std::fs::create_dir(&root).unwrap();
    let j = root.join(".journal");
    let o = fj(&[
        "record",
        "--root",
        root.to_str().unwrap(),
        "--journal",
        j.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("overlap"), "{err}");
    assert!(!j.exists(), "nothing created");
}
