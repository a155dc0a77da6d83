//! PostgreSQL disaster recovery through Foxing, with the real parts: a cluster initdb'ed inside
//! the watched root, pgbench (scale 10) writing while the eBPF recorder journals and the shipper
//! streams to a following replica over QUIC + mTLS. At random moments the source's postgres and
//! the recorder are killed with SIGKILL; once the replica holds everything that was shipped, a
//! copy of it is started as a PostgreSQL server: it must recover, pass pg_amcheck (heap and all
//! indexes), and hold every transaction pgbench saw committed before the last shipped sync point.
//! Then the source restarts (recovery), the recorder restarts (a new base), and the next round
//! runs. Finally a point-in-time restore of the middle of the run, from the replica's archive,
//! must start and pass pg_amcheck too.
//!
//! Needs root, BPF and PostgreSQL (`.ci/run` installs it): skipped without them unless
//! FOXING_REQUIRE_BPF=1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foxing_journal::JournalReader;
use foxing_tests::{free_udp_port, start_recorder, workspace_bin, Proc};

const ROUNDS: usize = 5;
const SCALE: &str = "10";
const CLIENTS: usize = 4;

fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn require() -> bool {
    let strict = std::env::var("FOXING_REQUIRE_BPF").is_ok_and(|v| v == "1");
    if !foxing_probes::bpf_available() {
        assert!(!strict, "FOXING_REQUIRE_BPF=1 but eBPF cannot be loaded");
        eprintln!("skipping: needs root and BPF");
        return false;
    }
    if pg_bin("initdb").is_none() || pg_bin("pg_amcheck").is_none() {
        assert!(
            !strict,
            "PostgreSQL (initdb, pg_ctl, pgbench, pg_amcheck) is missing: .ci/run installs postgresql"
        );
        eprintln!("skipping: PostgreSQL is not installed");
        return false;
    }
    true
}

/// Runs a PostgreSQL tool as the postgres user; returns stdout. Panics with stderr on failure
/// unless `may_fail`.
fn pg(tool: &str, args: &[&str], may_fail: bool) -> String {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin(tool).unwrap())
        .args(args)
        .output()
        .unwrap();
    if !may_fail {
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn chown_postgres(p: &Path) {
    let st = Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

struct Cluster {
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(&self, log: &Path) {
        let o = format!(
            "-p {} -k {} -c fsync=on -c full_page_writes=on",
            self.port,
            self.sock.display()
        );
        pg(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &o,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "120",
                "start",
            ],
            false,
        );
    }
    fn stop(&self) {
        pg(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            true,
        );
    }
    fn psql(&self, sql: &str) -> String {
        pg(
            "psql",
            &[
                "-h",
                self.sock.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                "postgres",
            ],
            false,
        )
        .trim()
        .to_string()
    }
    fn amcheck(&self) {
        pg(
            "pg_amcheck",
            &[
                "-h",
                self.sock.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "--all",
                "--install-missing",
                "--heapallindexed",
            ],
            false,
        );
    }
    /// kill -9 of the postmaster and every backend of this cluster.
    fn kill9(&self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            // The postmaster's children first (they would otherwise keep writing briefly).
            let _ = Command::new("pkill")
                .args(["-9", "-P", &pid.to_string()])
                .status();
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The last sync point at or before `applied` that a restore would offer (outside gap windows):
/// (seq, time_ns).
fn last_offered_sync(archive: &Path, applied: u64) -> (u64, u64) {
    let r = JournalReader::open(archive).unwrap();
    let windows = r.gap_windows().unwrap();
    let first = r.meta().unwrap().first_seq;
    let syncs = r.sync_points(first, applied).unwrap();
    foxing_applier::pitr::offered_points(syncs.iter().map(|s| (s.seq, s.time_ns)), &[], &windows)
        .last()
        .map(|p| (p.seq, p.time_ns))
        .expect("sync points were shipped")
}

fn durable(jdir: &Path) -> u64 {
    JournalReader::open(jdir)
        .and_then(|r| r.meta())
        .map(|m| m.durable_seq)
        .unwrap_or(0)
}

/// Parses pgbench -l logs: per client, the completion times (unix µs) of its transactions.
fn completions(dir: &Path) -> Vec<Vec<u64>> {
    let mut per_client = vec![Vec::new(); CLIENTS];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if !e.file_name().to_string_lossy().starts_with("pgbench_log") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            // client_id transaction_no time script_no time_epoch time_us ...
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                continue;
            }
            let (Ok(c), Ok(s), Ok(us)) = (
                f[0].parse::<usize>(),
                f[4].parse::<u64>(),
                f[5].parse::<u64>(),
            ) else {
                continue;
            };
            if c < CLIENTS {
                per_client[c].push(s * 1_000_000 + us);
            }
        }
    }
    per_client
}

const SCRIPT: &str = r#"\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO ledger(round, client, seq) SELECT :round, :client_id, coalesce(max(seq), 0) + 1 FROM ledger WHERE round = :round AND client = :client_id;
END;
"#;

#[test]
fn postgres_survives_kill9_of_source_and_recorder_and_recovers_on_the_replica() {
    if !require() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let top = d.path();
    std::fs::set_permissions(top, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let src = top.join("src");
    let jdir = top.join("journal");
    let sock = top.join("sock");
    for p in [&src, &sock, &top.join("logs")] {
        std::fs::create_dir_all(p).unwrap();
    }
    chown_postgres(&sock);
    chown_postgres(&top.join("logs"));
    chown_postgres(&src);
    let source = Cluster {
        data: src.join("pgdata"),
        sock: sock.clone(),
        port: free_udp_port(),
    };
    pg(
        "initdb",
        &[
            "-D",
            source.data.to_str().unwrap(),
            "-A",
            "trust",
            "--no-sync",
        ],
        false,
    );
    let certs = top.join("certs");
    foxing_shipper::certs::make_certs(&certs, &["source".into(), "replica1".into()], 2).unwrap();
    let recorder = || start_recorder(&src, &jdir, &top.join("recorder.log"), &[]);
    let mut rec = recorder();
    let port = free_udp_port();
    let _ship = Proc::spawn(
        "shipper",
        Command::new(workspace_bin("foxing-shipper"))
            .arg("serve")
            .arg("--journal")
            .arg(&jdir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cert")
            .arg(certs.join("source.pem"))
            .arg("--key")
            .arg(certs.join("source.key"))
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .stderr(std::fs::File::create(top.join("shipper.log")).unwrap()),
    );
    let replica_root = top.join("replica");
    let state = top.join("state");
    let applier = |follow: bool| {
        let mut c = Command::new(workspace_bin("foxing-applier"));
        c.arg("--root")
            .arg(&replica_root)
            .arg("--state")
            .arg(&state)
            .arg("--connect")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--server-name", "source", "--name", "replica1"])
            .arg("--cert")
            .arg(certs.join("replica1.pem"))
            .arg("--key")
            .arg(certs.join("replica1.key"))
            .arg("--ca")
            .arg(certs.join("ca.pem"));
        if follow {
            c.arg("--follow");
        }
        c
    };
    let mut follower = Proc::spawn(
        "applier",
        applier(true)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(top.join("applier.log")).unwrap()),
    );
    source.start(&top.join("logs/source.log"));
    source.psql(
        "CREATE TABLE ledger(round int, client int, seq int, PRIMARY KEY (round, client, seq));",
    );
    pg(
        "pgbench",
        &[
            "-i",
            "-s",
            SCALE,
            "-h",
            sock.to_str().unwrap(),
            "-p",
            &source.port.to_string(),
            "postgres",
        ],
        false,
    );
    std::fs::write(top.join("logs/script.sql"), SCRIPT).unwrap();
    chown_postgres(&top.join("logs"));
    let mut rng = fastrand::Rng::with_seed(
        std::env::var("FOXING_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20261126),
    );
    let mut mid_time_ns = 0u64;
    let (mut live_checks, mut checked_txns) = (0, 0);
    for round in 0..ROUNDS {
        let logdir = top.join(format!("logs/round{round}"));
        std::fs::create_dir_all(&logdir).unwrap();
        chown_postgres(&logdir);
        let run_ms = rng.u64(2_000..6_000);
        let bench = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pgbench").unwrap())
            .args([
                "-n",
                "-s",
                SCALE,
                "-c",
                &CLIENTS.to_string(),
                "-T",
                "60",
                "-l",
                "-D",
            ])
            .arg(format!("round={round}"))
            .arg("-f")
            .arg(top.join("logs/script.sql"))
            .args([
                "-h",
                sock.to_str().unwrap(),
                "-p",
                &source.port.to_string(),
                "postgres",
            ])
            .current_dir(&logdir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut bench = Proc {
            child: bench,
            name: "pgbench".into(),
        };
        std::thread::sleep(Duration::from_millis(run_ms));
        if round == ROUNDS / 2 {
            mid_time_ns = foxing_proto::time::now_ns();
            std::thread::sleep(Duration::from_millis(500));
        }
        // The disaster: postgres and the recorder die at once.
        source.kill9();
        rec.kill9();
        let _ = bench.child.wait();
        // Everything the source journal made durable reaches the replica's archive.
        let end = durable(&jdir);
        let deadline = Instant::now() + Duration::from_secs(120);
        while durable(&state.join("archive")) < end {
            assert!(
                Instant::now() < deadline,
                "round {round}: the replica did not catch up to seq {end}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(follower
            .terminate(Duration::from_secs(30))
            .is_some_and(|s| s.success()));
        let out = applier(false).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let applied = report["applied_seq"].as_u64().unwrap();
        // What a DBA would start: the replica itself when it is a state the source had; else
        // (it sits between a gap and its heal, e.g. the recorder died before its restart base
        // ended) the last consistent point the applier names, restored from the archive.
        let archive = state.join("archive");
        let check = top.join(format!("check{round}"));
        let (from, cut) = if report["consistent"] == true {
            live_checks += 1;
            let cut = last_offered_sync(&archive, applied);
            let st = Command::new("cp")
                .arg("-a")
                .arg(replica_root.join("pgdata"))
                .arg(&check)
                .status()
                .unwrap();
            assert!(st.success());
            ("the replica", cut)
        } else {
            let p = &report["last_consistent_point"];
            let seq = p["seq"].as_u64().unwrap_or_else(|| panic!("{report}"));
            let time_ns = p["time_ns"].as_u64().unwrap();
            let into = top.join(format!("restore{round}"));
            let v = foxing_tests::restore_json(
                &archive,
                &into,
                &top.join(format!("restore{round}-state")),
                &format!("seq:{seq}"),
            );
            assert_eq!(v["restore"]["reached"]["seq"].as_u64(), Some(seq), "{v}");
            assert_eq!(v["consistent"], true, "{v}");
            std::fs::rename(into.join("pgdata"), &check).unwrap();
            std::fs::remove_dir_all(&into).unwrap();
            ("a restore of the last consistent point", (seq, time_ns))
        };
        // Every transaction pgbench saw committed before that sync point must be there. (2 ms
        // margin: BPF timestamps and pgbench's clock are converted between clock domains.)
        let cut_us = (cut.1 / 1000).saturating_sub(2_000);
        // Start a copy as a server: crash recovery, then checks.
        let _ = std::fs::remove_file(check.join("postmaster.pid"));
        let replica = Cluster {
            data: check.clone(),
            sock: sock.clone(),
            port: free_udp_port(),
        };
        replica.start(&top.join(format!("logs/replica{round}.log")));
        replica.amcheck();
        let per_client = completions(&logdir);
        let total: usize = per_client.iter().map(|c| c.len()).sum();
        assert!(
            total > 50,
            "round {round}: pgbench committed only {total} transactions"
        );
        for (client, done) in per_client.iter().enumerate() {
            let must = done.iter().filter(|&&t| t <= cut_us).count();
            let got = replica.psql(&format!(
                "SELECT count(*) || '|' || coalesce(max(seq), 0) FROM ledger WHERE round = {round} AND client = {client}"
            ));
            let (count, max) = got.split_once('|').unwrap();
            let (count, max): (usize, usize) = (count.parse().unwrap(), max.parse().unwrap());
            assert_eq!(
                count, max,
                "round {round} client {client}: the ledger has holes"
            );
            eprintln!("round {round} client {client}: {} committed, {must} before the sync point checked (seq {}, {from}), it holds {max}", done.len(), cut.0);
            checked_txns += must;
            assert!(
                max >= must,
                "round {round} client {client}: {must} transactions were committed before the sync point checked (seq {}, {from}), it holds {max}", cut.0
            );
        }
        replica.stop();
        std::fs::remove_dir_all(&check).unwrap();
        // Back to work: the source recovers; the recorder restarts with a new base.
        if round + 1 < ROUNDS {
            rec = recorder();
            follower = Proc::spawn(
                "applier",
                applier(true).stdout(Stdio::null()).stderr(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(top.join("applier.log"))
                        .unwrap(),
                ),
            );
            source.start(&top.join("logs/source.log"));
        }
    }
    // Not a test of restores alone: most rounds end with the replica consistent and checked
    // as it is, holding thousands of transactions.
    assert!(
        live_checks >= 2 && checked_txns > 1000,
        "{live_checks} rounds ended consistent, {checked_txns} transactions checked"
    );
    // A point-in-time restore of the middle of the run, from the replica's archive.
    let restored = top.join("restored");
    let v = foxing_tests::restore_json(
        &state.join("archive"),
        &restored,
        &top.join("restore-state"),
        &format!("{}", mid_time_ns as f64 / 1e9),
    );
    assert_eq!(v["consistent"], true, "{v}");
    let _ = std::fs::remove_file(restored.join("pgdata/postmaster.pid"));
    let pitr = Cluster {
        data: restored.join("pgdata"),
        sock: sock.clone(),
        port: free_udp_port(),
    };
    pitr.start(&top.join("logs/pitr.log"));
    pitr.amcheck();
    let rows: u64 = pitr
        .psql("SELECT count(*) FROM pgbench_accounts")
        .parse()
        .unwrap();
    assert_eq!(rows, 1_000_000);
    pitr.stop();
}
