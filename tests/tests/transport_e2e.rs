//! Transport end to end over loopback with the real binaries: a source journal is served by
//! `foxing-shipper serve` to `foxing-applier --connect` replicas (QUIC, mutual TLS).
//!
//! - replicas converge, byte for byte, while the shipper and one applier are killed with SIGKILL
//!   over and over mid-stream; the archives hold the source's frames unchanged;
//! - peers without a valid certificate (none, another CA, expired, wrong name) and a shipper
//!   with a foreign certificate are refused, logged with the reason, and receive no journal bytes.
//!
//! These need no BPF: the source journal is written by the crash-writer (synthetic records).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foxing_applier::fs::FsTree;
use foxing_applier::snapshot::{diff, diff_with_mtimes, replicated_xattrs, snapshot};
use foxing_journal::JournalReader;
use foxing_tests::{free_udp_port, require_bpf, start_recorder, workspace_bin, Proc};

/// Tests in this binary run on parallel threads; the two that measure rates and latencies take
/// the machine exclusively (the others share it), so a concurrent kill -9 storm does not skew
/// their numbers.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_machine() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive_machine() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(dir: &Path, names: &[&str]) -> Certs {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        foxing_shipper::certs::make_certs(dir, &names, 30).unwrap();
        Certs {
            dir: dir.to_path_buf(),
        }
    }
    fn cert(&self, n: &str) -> PathBuf {
        self.dir.join(format!("{n}.pem"))
    }
    fn key(&self, n: &str) -> PathBuf {
        self.dir.join(format!("{n}.key"))
    }
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

fn shipper(
    jdir: &Path,
    port: u16,
    certs: &Certs,
    name: &str,
    log: &Path,
    metrics_port: Option<u16>,
) -> Proc {
    let mut c = Command::new(workspace_bin("foxing-shipper"));
    c.arg("serve")
        .arg("--journal")
        .arg(jdir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cert")
        .arg(certs.cert(name))
        .arg("--key")
        .arg(certs.key(name))
        .arg("--ca")
        .arg(certs.ca())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    if let Some(m) = metrics_port {
        c.arg("--metrics-listen").arg(format!("127.0.0.1:{m}"));
    }
    let before = count_listening(log);
    let p = Proc::spawn("shipper", &mut c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_listening(log) <= before {
        assert!(
            Instant::now() < deadline,
            "shipper did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    p
}

fn count_listening(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("shipper listening")
        .count()
}

struct Replica<'a> {
    certs: &'a Certs,
    name: &'a str,
    root: PathBuf,
    state: PathBuf,
}

impl Replica<'_> {
    fn command(&self, port: u16, follow: bool) -> Command {
        self.command_as(port, follow, self.name)
    }

    /// Like `command`, but the replica claims `claimed` as its name.
    fn command_as(&self, port: u16, follow: bool, claimed: &str) -> Command {
        let mut c = Command::new(workspace_bin("foxing-applier"));
        c.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--server-name")
            .arg("source")
            .arg("--name")
            .arg(claimed)
            .arg("--cert")
            .arg(self.certs.cert(self.name))
            .arg("--key")
            .arg(self.certs.key(self.name))
            .arg("--ca")
            .arg(self.certs.ca());
        if follow {
            c.arg("--follow");
        }
        c
    }

    fn archive(&self) -> PathBuf {
        self.state.join("archive")
    }

    /// A one-shot run against the shipper at `port` whose certificate is valid for `server`.
    fn command_to(&self, port: u16, server: &str) -> Command {
        let mut c = Command::new(workspace_bin("foxing-applier"));
        c.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--server-name")
            .arg(server)
            .arg("--name")
            .arg(self.name)
            .arg("--cert")
            .arg(self.certs.cert(self.name))
            .arg("--key")
            .arg(self.certs.key(self.name))
            .arg("--ca")
            .arg(self.certs.ca());
        c
    }
}

fn durable(jdir: &Path) -> u64 {
    JournalReader::open(jdir)
        .and_then(|r| r.meta())
        .map(|m| m.durable_seq)
        .unwrap_or(0)
}

fn run_ok(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The source journal's frames, byte for byte, must be the archive's.
fn assert_same_frames(src: &Path, archive: &Path) {
    let a = JournalReader::open(src).unwrap();
    let b = JournalReader::open(archive).unwrap();
    let (ma, mb) = (a.meta().unwrap(), b.meta().unwrap());
    assert_eq!(
        ma.durable_seq, mb.durable_seq,
        "archive {archive:?} is not caught up"
    );
    assert_eq!(
        ma.journal_id, mb.journal_id,
        "the archive takes the source's identity"
    );
    let fa = a.frames(1, ma.durable_seq).unwrap();
    let fb = b.frames(1, mb.durable_seq).unwrap();
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(
            x.bytes, y.bytes,
            "frame at seq {} differs",
            x.header.first_seq
        );
    }
}

fn tree(
    p: &Path,
) -> std::collections::BTreeMap<foxing_proto::RelPath, foxing_applier::snapshot::EntrySnap> {
    snapshot(&mut FsTree::open(p).unwrap(), replicated_xattrs).unwrap()
}

#[test]
fn replicas_converge_through_repeated_kill9_of_shipper_and_applier() {
    let _machine = shared_machine();
    const KILLS_EACH: usize = 20;
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1", "replica2"]);
    let log = d.path().join("shipper.log");
    let port = free_udp_port();
    // The source: a journal growing with synthetic records, fsync window 2 ms, paced.
    let mut writer = Proc::spawn(
        "crash-writer",
        Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(&jdir)
            .args(["2", "3", "3"])
            .stdout(Stdio::null()),
    );
    while durable(&jdir) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut ship = shipper(&jdir, port, &certs, "source", &log, None);
    let r1 = Replica {
        certs: &certs,
        name: "replica1",
        root: d.path().join("r1"),
        state: d.path().join("s1"),
    };
    let r2 = Replica {
        certs: &certs,
        name: "replica2",
        root: d.path().join("r2"),
        state: d.path().join("s2"),
    };
    let a1_log = d.path().join("a1.log");
    let spawn_r1 = || {
        Proc::spawn(
            "replica1",
            r1.command(port, true).stdout(Stdio::null()).stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&a1_log)
                    .unwrap(),
            ),
        )
    };
    let mut a1 = spawn_r1();
    let a2_log = d.path().join("a2.log");
    let a2_metrics = free_udp_port();
    let mut a2 = Proc::spawn(
        "replica2",
        r2.command(port, true)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{a2_metrics}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&a2_log).unwrap()),
    );
    let mut rng = fastrand::Rng::with_seed(99);
    let mut last_archived = 0;
    for i in 0..KILLS_EACH {
        std::thread::sleep(Duration::from_millis(rng.u64(50..400)));
        ship.kill9();
        std::thread::sleep(Duration::from_millis(rng.u64(0..200)));
        ship = shipper(&jdir, port, &certs, "source", &log, None);
        std::thread::sleep(Duration::from_millis(rng.u64(50..400)));
        a1.kill9();
        assert!(a2.running(), "replica2 must ride out shipper restarts");
        a1 = spawn_r1();
        // The archive's index is readable again once the restarted applier has reopened it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let archived = loop {
            if let Ok(m) = JournalReader::open(r1.archive()).and_then(|r| r.meta()) {
                break m.durable_seq;
            }
            assert!(
                Instant::now() < deadline,
                "the archive stayed unreadable at round {i}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            archived >= last_archived,
            "the archive went back at round {i}"
        );
        last_archived = archived;
    }
    assert!(
        last_archived > 0,
        "replica1 never archived anything in {KILLS_EACH} rounds: {}\nshipper: {}",
        std::fs::read_to_string(&a1_log).unwrap_or_default(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Quiesce the source; make its journal whole again (the writer was killed).
    writer.kill9();
    run_ok(
        Command::new(workspace_bin("foxing-journal"))
            .arg("recover")
            .arg("--journal")
            .arg(&jdir),
        "recover",
    );
    // A restarted shipper reads the recovered journal.
    ship.kill9();
    ship = shipper(&jdir, port, &certs, "source", &log, None);
    let end = durable(&jdir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while durable(&r1.archive()) < end || durable(&r2.archive()) < end {
        assert!(
            Instant::now() < deadline,
            "replicas did not catch up to seq {end}: {} / {}\n{}",
            durable(&r1.archive()),
            durable(&r2.archive()),
            std::fs::read_to_string(&a2_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The replica's metrics say it is caught up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics(a2_metrics);
        if m.contains("foxing_applier_lag_seq{replica=\"replica2\"} 0")
            && m.contains(&format!(
                "foxing_applier_archived_seq{{replica=\"replica2\"}} {end}"
            ))
            && m.contains("foxing_applier_connected{replica=\"replica2\"} 1")
            && m.contains("foxing_applier_consistent{replica=\"replica2\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica2 metrics never showed it caught up:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(a1
        .terminate(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert!(a2
        .terminate(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    // A final one-shot run applies whatever the follow runs had archived but not applied.
    for r in [&r1, &r2] {
        let out = run_ok(r.command(port, false).arg("--json"), "one-shot applier");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["applied_seq"].as_u64(), Some(end), "{out}");
        assert_same_frames(&jdir, &r.archive());
    }
    // The reference: the same journal applied locally.
    let reference = d.path().join("reference");
    run_ok(
        Command::new(workspace_bin("foxing-applier"))
            .arg("--root")
            .arg(&reference)
            .arg("--state")
            .arg(d.path().join("sref"))
            .arg("--journal")
            .arg(&jdir),
        "local apply",
    );
    let want = tree(&reference);
    assert!(
        want.len() > 3,
        "the synthetic workload made too little: {want:?}"
    );
    assert_eq!(diff(&want, &tree(&r1.root)), Vec::<String>::new());
    assert_eq!(diff(&want, &tree(&r2.root)), Vec::<String>::new());
    // The shipper recorded both replicas' acknowledgements for prune.
    let acks = foxing_journal::replicas::list_acks(&jdir).unwrap();
    for n in ["replica1", "replica2"] {
        let a = acks
            .iter()
            .find(|a| a.name == n)
            .unwrap_or_else(|| panic!("no ack for {n}: {acks:?}"));
        assert!(a.acked_seq > 0 && a.acked_seq <= end, "{a:?}");
    }
    drop(ship);
}

fn make_small_journal(jdir: &Path) -> u64 {
    let mut j =
        foxing_journal::Journal::open(jdir, foxing_journal::JournalOptions::default()).unwrap();
    j.append((1..=500).map(foxing_tests::synth_event).collect())
        .unwrap();
    j.sync().unwrap()
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn assert_refused(r: &Replica, port: u16, why: &str) -> String {
    let out = r.command(port, false).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{why}: the replica was not refused: {err}"
    );
    assert_eq!(
        durable(&r.archive()),
        0,
        "{why}: journal records reached the replica"
    );
    let empty = std::fs::read_dir(&r.root)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    assert!(empty, "{why}: the replica tree was written");
    err
}

#[test]
fn peers_without_a_valid_certificate_are_refused_and_get_nothing() {
    let _machine = shared_machine();
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let end = make_small_journal(&jdir);
    assert!(end >= 500);
    let good = Certs::make(&d.path().join("good"), &["source", "replica1"]);
    let foreign = Certs::make(&d.path().join("foreign"), &["source", "replica1"]);
    // An expired certificate from the right CA.
    let expired = Certs {
        dir: d.path().join("expired"),
    };
    {
        std::fs::create_dir_all(&expired.dir).unwrap();
        let ca = foxing_shipper::certs::Ca::load(
            std::fs::read_to_string(good.ca()).unwrap(),
            &std::fs::read_to_string(good.dir.join("ca.key")).unwrap(),
        )
        .unwrap();
        let now = time::OffsetDateTime::now_utc();
        let (c, k) = ca
            .issue(
                "replica1",
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            )
            .unwrap();
        std::fs::write(expired.cert("replica1"), c).unwrap();
        std::fs::write(expired.key("replica1"), k).unwrap();
        std::fs::copy(good.ca(), expired.ca()).unwrap();
    }
    let port = free_udp_port();
    let mport = free_udp_port();
    let log = d.path().join("shipper.log");
    let _ship = shipper(&jdir, port, &good, "source", &log, Some(mport));
    let mk = |certs, name, tag: &str| Replica {
        certs,
        name,
        root: d.path().join(format!("root-{tag}")),
        state: d.path().join(format!("state-{tag}")),
    };

    // A client certificate from another CA.
    let e = assert_refused(&mk(&foreign, "replica1", "foreign"), port, "foreign CA");
    assert!(
        e.to_lowercase().contains("tls") || e.contains("certificate"),
        "{e}"
    );
    // An expired client certificate from the right CA.
    assert_refused(&mk(&expired, "replica1", "expired"), port, "expired");
    // A valid certificate used under another name.
    let out = mk(&good, "replica1", "name")
        .command_as(port, false, "replica9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("refused this replica (name)"), "{e}");
    // No client certificate at all.
    no_client_certificate_gets_nothing(port, &good.ca());

    // The shipper logged every refusal with its reason and counted it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(mport);
        let found = |r: &str| {
            m.contains(&format!(
                "foxing_shipper_handshake_failures_total{{reason=\"{r}\"}}"
            ))
        };
        if found("unknown_ca")
            && found("certificate_expired")
            && found("no_client_certificate")
            && m.contains("foxing_shipper_refusals_total{reason=\"name\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics lack a refusal reason:\n{m}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(l.contains("TLS handshake failed"), "{l}");
    assert!(
        !l.contains("streaming"),
        "a refused peer was streamed to: {l}"
    );

    // A shipper with a certificate from a foreign CA: the replica refuses it.
    let port2 = free_udp_port();
    let _bad_ship = shipper(
        &jdir,
        port2,
        &foreign,
        "source",
        &d.path().join("bad.log"),
        None,
    );
    let e = assert_refused(&mk(&good, "replica1", "badserver"), port2, "foreign server");
    assert!(e.contains("TLS handshake"), "{e}");

    // And with everything right, the same replica gets the journal.
    let ok = mk(&good, "replica1", "ok");
    run_ok(&mut ok.command(port, false), "valid replica");
    assert_eq!(durable(&ok.archive()), end);
}

/// A QUIC client that presents no certificate: the handshake is refused by the shipper and no
/// stream data ever arrives.
fn no_client_certificate_gets_nothing(port: u16, ca: &Path) {
    use rustls::pki_types::pem::PemObject;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![foxing_proto::wire::ALPN.to_vec()];
        let q = quinn::crypto::rustls::QuicClientConfig::try_from(c).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(q)));
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let got = async {
            let conn = ep.connect(addr, "source")?.await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            let hello = foxing_proto::wire::encode_message(&foxing_proto::wire::Message::Hello(
                foxing_proto::wire::Hello {
                    version_min: 1,
                    version_max: 1,
                    name: "replica1".into(),
                    journal_id: 0,
                    next_seq: 0,
                },
            ));
            send.write_all(&hello).await?;
            let mut buf = vec![0u8; 4096];
            let n = recv.read(&mut buf).await?;
            anyhow::Ok(n)
        };
        match tokio::time::timeout(Duration::from_secs(10), got).await {
            Ok(Ok(Some(n))) => panic!("a client without a certificate received {n} bytes"),
            Ok(Ok(None)) => panic!("a client without a certificate was not refused"),
            Ok(Err(_)) => {}
            Err(_) => panic!("no refusal within 10 s"),
        }
    });
}

/// record -> serve -> connect -> apply on real workloads (data, then namespace changes with
/// moves in from outside), two replicas following live; both end identical to the source.
#[test]
fn recorded_tree_replicates_live_to_two_replicas() {
    let _machine = shared_machine();
    if !require_bpf() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let jdir = d.path().join("journal");
    std::fs::create_dir_all(src.join("db")).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..4 {
        let mut data = vec![0u8; 200_000 + i * 50_000];
        rng.fill(&mut data);
        std::fs::write(src.join(format!("db/{i}.dat")), &data).unwrap();
    }
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1", "replica2"]);
    let mut rec = start_recorder(&src, &jdir, &d.path().join("recorder.log"), &[]);
    let port = free_udp_port();
    let _ship = shipper(
        &jdir,
        port,
        &certs,
        "source",
        &d.path().join("shipper.log"),
        None,
    );
    let reps: Vec<Replica> = ["replica1", "replica2"]
        .iter()
        .map(|n| Replica {
            certs: &certs,
            name: n,
            root: d.path().join(format!("root-{n}")),
            state: d.path().join(format!("state-{n}")),
        })
        .collect();
    let mut followers: Vec<Proc> = reps
        .iter()
        .map(|r| {
            Proc::spawn(
                r.name,
                r.command(port, true)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
        })
        .collect();
    for args in [vec!["5", "2000"], vec!["6", "2000", "ns"]] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_workload"));
        c.arg(&src).args(&args);
        if args.len() == 3 {
            c.arg(d.path().join("outside"));
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(rec
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let end = durable(&jdir);
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &reps {
        while durable(&r.archive()) < end {
            assert!(
                Instant::now() < deadline,
                "{} did not catch up to {end}",
                r.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for f in &mut followers {
        assert!(f
            .terminate(Duration::from_secs(10))
            .is_some_and(|s| s.success()));
    }
    let want = tree(&src);
    for r in &reps {
        run_ok(&mut r.command(port, false), "one-shot applier");
        assert_same_frames(&jdir, &r.archive());
        assert_eq!(
            diff_with_mtimes(&want, &tree(&r.root)),
            Vec::<String>::new(),
            "{}",
            r.name
        );
    }
}

/// One TOML file drives both ends (docs/foxing.example.toml's format); flags still win.
#[test]
fn one_config_file_drives_shipper_and_applier() {
    let _machine = shared_machine();
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let end = make_small_journal(&jdir);
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1"]);
    let port = free_udp_port();
    let cfg = d.path().join("foxing.toml");
    std::fs::write(
        &cfg,
        format!(
            "[shipper]\njournal = {j:?}\nlisten = \"127.0.0.1:{port}\"\ncert = {sc:?}\nkey = {sk:?}\nca = {ca:?}\n\n\
             [applier]\nroot = {r:?}\nstate = {s:?}\nconnect = \"127.0.0.1:{port}\"\nserver_name = \"source\"\n\
             cert = {rc:?}\nkey = {rk:?}\nca = {ca:?}\n",
            j = jdir,
            sc = certs.cert("source"),
            sk = certs.key("source"),
            ca = certs.ca(),
            r = d.path().join("root"),
            s = d.path().join("state"),
            rc = certs.cert("replica1"),
            rk = certs.key("replica1"),
        ),
    )
    .unwrap();
    let log = d.path().join("shipper.log");
    let mut c = Command::new(workspace_bin("foxing-shipper"));
    c.arg("serve")
        .arg("--config")
        .arg(&cfg)
        .stderr(std::fs::File::create(&log).unwrap());
    let _ship = Proc::spawn("shipper", &mut c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_listening(&log) == 0 {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    run_ok(
        Command::new(workspace_bin("foxing-applier"))
            .arg("--config")
            .arg(&cfg),
        "applier from config",
    );
    assert_eq!(durable(&d.path().join("state/archive")), end);
    // A typo in the file is an error that names it, with the usage exit code.
    std::fs::write(&cfg, "[applier]\nrot = \"/x\"\n").unwrap();
    let out = Command::new(workspace_bin("foxing-applier"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rot"));
}

/// A replica that was away while the source pruned what it still needed is refused as behind
/// retention, and re-seeds itself from the source's oldest base without manual steps: the old
/// archive is kept aside, the tree converges.
#[test]
fn a_replica_behind_retention_reseeds_itself_from_a_base() {
    let _machine = shared_machine();
    if !require_bpf() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let jdir = d.path().join("journal");
    std::fs::create_dir_all(src.join("db")).unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    for i in 0..3 {
        let mut data = vec![0u8; 300_000];
        rng.fill(&mut data);
        std::fs::write(src.join(format!("db/{i}.dat")), &data).unwrap();
    }
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1"]);
    let mut rec = start_recorder(
        &src,
        &jdir,
        &d.path().join("recorder.log"),
        &["--segment-size-bytes", "262144"],
    );
    let port = free_udp_port();
    let _ship = shipper(
        &jdir,
        port,
        &certs,
        "source",
        &d.path().join("shipper.log"),
        None,
    );
    let r = Replica {
        certs: &certs,
        name: "replica1",
        root: d.path().join("root"),
        state: d.path().join("state"),
    };
    let workload = |seed: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_workload"))
            .arg(&src)
            .args([seed, "400"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    workload("21");
    std::thread::sleep(Duration::from_millis(200));
    run_ok(&mut r.command(port, false), "first sync");
    // While the replica is away: more changes, a new base, more changes, and a forced prune
    // (the replica's acknowledgement would otherwise hold it back).
    workload("22");
    run_ok(
        Command::new(workspace_bin("foxing-journal"))
            .args(["base", "--journal"])
            .arg(&jdir),
        "base",
    );
    workload("23");
    std::thread::sleep(Duration::from_millis(200));
    let acked = foxing_journal::replicas::list_acks(&jdir).unwrap()[0].acked_seq;
    run_ok(
        Command::new(workspace_bin("foxing-journal"))
            .args(["prune", "--keep", "0s", "--force", "--journal"])
            .arg(&jdir),
        "prune",
    );
    let first = JournalReader::open(&jdir)
        .unwrap()
        .meta()
        .unwrap()
        .first_seq;
    assert!(
        first > acked + 1,
        "the prune must leave the replica behind: first {first}, acked {acked}"
    );
    workload("24");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rec
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let end = durable(&jdir);
    // The replica comes back: refused as behind, it re-seeds by itself.
    let out = r.command(port, false).arg("--json").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("fell behind"), "{err}");
    assert_eq!(durable(&r.archive()), end);
    let kept: Vec<_> = std::fs::read_dir(&r.state)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("archive.behind-")
        })
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the old archive is kept for older restore points"
    );
    assert_eq!(
        diff_with_mtimes(&tree(&src), &tree(&r.root)),
        Vec::<String>::new()
    );
}

/// A partition: the link between replica and shipper is cut (every datagram dropped, both
/// ways) for 60 s (FOXING_PARTITION_SECS) while the source keeps writing, then healed. The
/// session times out, the replica keeps retrying with backoff, reconnects by itself after the
/// heal and converges; memory on both sides stays bounded during the cut.
#[test]
fn a_60s_partition_heals_by_itself_with_bounded_memory() {
    let _machine = shared_machine();
    const RSS_LIMIT_BYTES: u64 = 256 << 20;
    let cut_secs: u64 = std::env::var("FOXING_PARTITION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1"]);
    let mut writer = Proc::spawn(
        "crash-writer",
        Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(&jdir)
            .args(["5", "8", "20"])
            .stdout(Stdio::null()),
    );
    while durable(&jdir) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let port = free_udp_port();
    let log = d.path().join("shipper.log");
    let mut ship = shipper(&jdir, port, &certs, "source", &log, None);
    let relay = foxing_tests::Impair::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        foxing_tests::ImpairConfig {
            delay: Duration::from_millis(1),
            loss: 0.0,
            rate_bytes_per_sec: 0,
            mtu_bytes: 0,
        },
    );
    let r = Replica {
        certs: &certs,
        name: "replica1",
        root: d.path().join("root"),
        state: d.path().join("state"),
    };
    let alog = d.path().join("applier.log");
    let mut cmd = r.command(relay.listen.port(), true);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&alog).unwrap());
    let mut app = Proc::spawn("applier", &mut cmd);
    let archived = || {
        JournalReader::open(r.archive())
            .and_then(|x| x.meta())
            .map(|m| m.durable_seq)
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while archived() == 0 {
        assert!(Instant::now() < deadline, "no replication before the cut");
        std::thread::sleep(Duration::from_millis(20));
    }
    relay.cut.store(true, std::sync::atomic::Ordering::Relaxed);
    let cut_at = Instant::now();
    let before = archived();
    let mut max_rss = (0u64, 0u64);
    while cut_at.elapsed() < Duration::from_secs(cut_secs) {
        max_rss.0 = max_rss.0.max(foxing_tests::rss_bytes(ship.pid()));
        max_rss.1 = max_rss.1.max(foxing_tests::rss_bytes(app.pid()));
        assert!(app.running() && ship.running());
        std::thread::sleep(Duration::from_millis(500));
    }
    let during = archived();
    assert!(
        during <= before + 100_000,
        "the cut must stop replication (before {before}, after {during})"
    );
    relay.cut.store(false, std::sync::atomic::Ordering::Relaxed);
    // The source keeps going a little after the heal, then quiesces.
    std::thread::sleep(Duration::from_secs(2));
    writer.kill9();
    run_ok(
        Command::new(workspace_bin("foxing-journal"))
            .arg("recover")
            .arg("--journal")
            .arg(&jdir),
        "recover",
    );
    ship.kill9();
    ship = shipper(&jdir, port, &certs, "source", &log, None);
    let end = durable(&jdir);
    let deadline = Instant::now() + Duration::from_secs(90);
    while archived() < end {
        assert!(
            Instant::now() < deadline,
            "no convergence after the heal: {} of {end}\n{}",
            archived(),
            std::fs::read_to_string(&alog).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(app
        .terminate(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert_same_frames(&jdir, &r.archive());
    let l = std::fs::read_to_string(&alog).unwrap();
    assert!(
        l.contains("reconnecting"),
        "the replica never noticed the cut:\n{l}"
    );
    assert!(
        max_rss.0 < RSS_LIMIT_BYTES && max_rss.1 < RSS_LIMIT_BYTES,
        "memory during the cut: shipper {} MiB, applier {} MiB",
        max_rss.0 >> 20,
        max_rss.1 >> 20
    );
    eprintln!(
        "partition of {cut_secs} s: peak RSS shipper {} MiB, applier {} MiB; converged to seq {end}",
        max_rss.0 >> 20,
        max_rss.1 >> 20
    );
    drop(ship);
}

fn incompressible_journal(jdir: &Path, mib: u64) -> u64 {
    let mut j =
        foxing_journal::Journal::open(jdir, foxing_journal::JournalOptions::default()).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    // Eight files, created first so that a replica's tree holds the bytes too.
    let mut batch: Vec<foxing_proto::Event> = (0..8)
        .map(|i| foxing_proto::Event {
            time_ns: foxing_proto::time::now_ns(),
            writer: Default::default(),
            op: foxing_proto::Op::Create {
                path: foxing_proto::RelPath::new(format!("f{i}")),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        })
        .collect();
    for i in 0..mib * 16 {
        let mut data = vec![0u8; 64 << 10];
        rng.fill(&mut data);
        batch.push(foxing_proto::Event {
            time_ns: foxing_proto::time::now_ns(),
            writer: Default::default(),
            op: foxing_proto::Op::Write {
                path: foxing_proto::RelPath::new(format!("f{}", i % 8)),
                offset: (i / 8) * (64 << 10),
                data,
            },
        });
        if batch.len() >= 16 {
            j.append(std::mem::take(&mut batch)).unwrap();
        }
    }
    j.append(batch).unwrap();
    j.sync().unwrap();
    foxing_tests::segment_bytes(jdir)
}

/// The WAN of issue 9: 50 ms RTT, 1 % loss each way, 100 Mbit/s, 1500-byte MTU, a 1000-packet
/// tail-drop link buffer (a userspace relay; this kernel has no sch_netem). FOXING_WAN_LOSS
/// (a fraction) and FOXING_WAN_DELAY_MS (one way) override loss and delay for experiments.
fn wan_config() -> foxing_tests::ImpairConfig {
    foxing_tests::ImpairConfig {
        delay: Duration::from_millis(
            std::env::var("FOXING_WAN_DELAY_MS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(25),
        ),
        loss: std::env::var("FOXING_WAN_LOSS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.01),
        rate_bytes_per_sec: WAN_RATE_BYTES_PER_SEC,
        mtu_bytes: 1500,
    }
}

/// 100 Mbit/s.
const WAN_RATE_BYTES_PER_SEC: u64 = 12_500_000;

/// One metric's value from the text at `port`, if the endpoint answers and holds it.
fn metric_value(port: u16, name: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A shipper serving `jdir` (under `d`) and an archive-only replica reaching it through the
/// WAN relay, with its metrics on a port of its own and its log in `d`/applier.log.
struct WanReplica {
    _ship: Proc,
    _relay: foxing_tests::Impair,
    app: Proc,
    metrics_port: u16,
    log: PathBuf,
    archive: PathBuf,
}

fn wan_replica(d: &Path, jdir: &Path, follow: bool) -> WanReplica {
    let certs = Certs::make(&d.join("certs"), &["source", "replica1"]);
    let port = free_udp_port();
    let ship = shipper(jdir, port, &certs, "source", &d.join("shipper.log"), None);
    let relay =
        foxing_tests::Impair::start(format!("127.0.0.1:{port}").parse().unwrap(), wan_config());
    let r = Replica {
        certs: &certs,
        name: "replica1",
        root: d.join("root"),
        state: d.join("state"),
    };
    let metrics_port = free_udp_port();
    let log = d.join("applier.log");
    let app = Proc::spawn(
        "applier",
        r.command(relay.listen.port(), follow)
            .arg("--archive-only")
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .stdout(Stdio::null())
            .stderr(logged(&log)),
    );
    WanReplica {
        _ship: ship,
        _relay: relay,
        app,
        metrics_port,
        log,
        archive: r.archive(),
    }
}

/// Goal: sustained goodput >= 0.8x of the link rate (journal bytes delivered to the replica, so
/// QUIC, TLS and IP/UDP headers, retransmissions and the handshake all count against it).
/// Measured 0.86-0.91x (docs/benchmarks.md). With Cubic, random loss held the same link at
/// 0.02x; with a 16 MiB stream window quinn closed the connection ("too many gaps in stream
/// buffer"). FOXING_WAN_MIB sets the size.
#[test]
fn wan_link_with_1pct_loss_keeps_most_of_its_rate() {
    let _machine = exclusive_machine();
    let mib: u64 = std::env::var("FOXING_WAN_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96);
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let bytes = incompressible_journal(&jdir, mib);
    let start = Instant::now();
    let mut wan = wan_replica(d.path(), &jdir, false);
    let (mport, log) = (wan.metrics_port, wan.log.clone());
    // Goodput from the first journal byte received to the last (the handshake is excluded,
    // the congestion controller's start-up is not), from the replica's own byte counter.
    const RECEIVED: &str = "foxing_applier_bytes_received_total";
    let mut first: Option<Instant> = None;
    let mut last = (Instant::now(), 0f64);
    let mut timeline = Vec::new();
    let mut next_tick = Instant::now();
    let status = loop {
        if let Some(st) = wan.app.child.try_wait().unwrap() {
            break st;
        }
        if let Some(b) = metric_value(mport, RECEIVED) {
            let now = Instant::now();
            if b > 0.0 && first.is_none() {
                first = Some(now);
            }
            if b > last.1 {
                last = (now, b);
            }
            if now >= next_tick {
                timeline.push(format!(
                    "{:.0}s {:.1}MB",
                    (now - start).as_secs_f64(),
                    b / 1e6
                ));
                next_tick = now + Duration::from_secs(1);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the WAN transfer takes too long; applier log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let applier_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "the applier failed:\n{applier_log}");
    let first = first.expect("journal bytes arrived");
    let rate = last.1 / (last.0 - first).as_secs_f64();
    eprintln!("received over time: {}", timeline.join(", "));
    eprintln!(
        "WAN: {} MiB in {:.1} s; goodput {:.2} MB/s = {:.2}x of the {:.1} MB/s link",
        bytes >> 20,
        (last.0 - start).as_secs_f64(),
        rate / 1e6,
        rate / WAN_RATE_BYTES_PER_SEC as f64,
        WAN_RATE_BYTES_PER_SEC as f64 / 1e6
    );
    assert_eq!(durable(&wan.archive), durable(&jdir));
    assert!(
        rate >= 0.8 * WAN_RATE_BYTES_PER_SEC as f64,
        "WAN goodput {:.2} MB/s is under 0.8x of the link; applier log:\n{applier_log}",
        rate / 1e6
    );
}

/// Issue 9: on the WAN, lag stays within RTT/2 plus transfer time. Single 1 KiB records are
/// committed to the source journal 60 ms apart (the link is idle in between); the lag of each is
/// from its commit to the replica archive holding it durably (fsynced, acknowledged). Bound:
/// 25 ms one-way delay + the record's transfer time at the link rate + Foxing's own work: the
/// shipper's wake-up, the replica's fdatasync (0.7 ms median, 1.1 ms p90 on this VM disk), the
/// debug build and this test's 1 ms polling; 5 ms of it for the median, 8 ms for p90 (lost
/// packets wait for a retransmission). Measured p50 26.6-26.8 ms, p90 27.6-27.8 ms. Also pins
/// two bugs: the replica noticed its archive's completed group commit only at its next packet
/// or 100 ms tick (p50 37 ms with no delay at all on the link), and it acknowledged only after
/// the archive's index commit (1.4 ms more) where the segment's fdatasync suffices.
#[test]
fn wan_lag_stays_within_half_rtt_plus_transfer_time() {
    let _machine = exclusive_machine();
    const RECORDS: u64 = 120;
    const RECORD_BYTES: usize = 1024;
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let mut j =
        foxing_journal::Journal::open(&jdir, foxing_journal::JournalOptions::default()).unwrap();
    let record = |i: u64| foxing_proto::Event {
        time_ns: foxing_proto::time::now_ns(),
        writer: Default::default(),
        op: foxing_proto::Op::Write {
            path: foxing_proto::RelPath::new("lag"),
            offset: i * RECORD_BYTES as u64,
            data: vec![i as u8; RECORD_BYTES],
        },
    };
    j.append(vec![record(0)]).unwrap();
    j.sync().unwrap();
    let wan = wan_replica(d.path(), &jdir, true);
    let (mport, log) = (wan.metrics_port, wan.log.clone());
    const ARCHIVED: &str = "foxing_applier_archived_seq";
    let archived = || metric_value(mport, ARCHIVED).unwrap_or(0.0) as u64;
    let first = j.durable_seq();
    let deadline = Instant::now() + Duration::from_secs(60);
    while archived() < first {
        assert!(
            Instant::now() < deadline,
            "the replica never caught up; applier log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lags = Vec::new();
    for i in 1..=RECORDS {
        std::thread::sleep(Duration::from_millis(60));
        j.append(vec![record(i)]).unwrap();
        let seq = j.sync().unwrap();
        let t0 = Instant::now();
        while archived() < seq {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "record {seq} did not reach the replica within 10 s; applier log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        lags.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let transfer_ms = (RECORD_BYTES + 200) as f64 / WAN_RATE_BYTES_PER_SEC as f64 * 1e3;
    let bound_ms = 25.0 + transfer_ms + 5.0;
    let bound_p90_ms = 25.0 + transfer_ms + 8.0;
    eprintln!(
        "lags: {}",
        lags.iter()
            .map(|l| format!("{l:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!(
        "WAN lag over {RECORDS} records: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (bounds {bound_ms:.1} / {bound_p90_ms:.1} ms)",
        pct(0.5),
        pct(0.9),
        sorted[sorted.len() - 1]
    );
    assert!(
        pct(0.5) <= bound_ms && pct(0.9) <= bound_p90_ms,
        "WAN lag p50 {:.1} ms / p90 {:.1} ms exceeds RTT/2 + transfer + 5 ms = {bound_ms:.1} ms / + 8 ms = {bound_p90_ms:.1} ms",
        pct(0.5),
        pct(0.9)
    );
}

/// The disaster-recovery drill of docs/operations.md: the source stops for good; replica A is
/// promoted (records its own tree into a new journal, with a new base, and serves it); replica
/// B, which followed the old source, is refused by A (another journal), re-seeded as the drill
/// says, and then follows A, including changes made on A after the promotion.
#[test]
fn promotion_drill_from_operations_md_works() {
    let _machine = shared_machine();
    if !require_bpf() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("db")).unwrap();
    std::fs::write(src.join("db/a.dat"), vec![7u8; 100_000]).unwrap();
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1", "replica2"]);
    let record =
        |root: &Path, jdir: &Path, log: &str| start_recorder(root, jdir, &d.path().join(log), &[]);
    let workload = |root: &Path, seed: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_workload"))
            .arg(root)
            .args([seed, "300"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The old source and two replicas.
    let j1 = d.path().join("journal1");
    let mut rec = record(&src, &j1, "rec1.log");
    let port1 = free_udp_port();
    let mut ship1 = shipper(
        &j1,
        port1,
        &certs,
        "source",
        &d.path().join("ship1.log"),
        None,
    );
    let a = Replica {
        certs: &certs,
        name: "replica1",
        root: d.path().join("a"),
        state: d.path().join("a-state"),
    };
    let b = Replica {
        certs: &certs,
        name: "replica2",
        root: d.path().join("b"),
        state: d.path().join("b-state"),
    };
    workload(&src, "31");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rec
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    for r in [&a, &b] {
        run_ok(&mut r.command(port1, false), "replica of the old source");
        assert_eq!(
            diff_with_mtimes(&tree(&src), &tree(&r.root)),
            Vec::<String>::new()
        );
    }
    // Step 1: the source is gone.
    ship1.kill9();
    // Steps 3: A records its own tree into a new journal and serves it (its certificate
    // serves both roles).
    let j2 = d.path().join("journal2");
    let mut rec2 = record(&a.root, &j2, "rec2.log");
    let port2 = free_udp_port();
    let _ship2 = {
        let mut c = Command::new(workspace_bin("foxing-shipper"));
        c.arg("serve")
            .arg("--journal")
            .arg(&j2)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port2}"))
            .arg("--cert")
            .arg(certs.cert("replica1"))
            .arg("--key")
            .arg(certs.key("replica1"))
            .arg("--ca")
            .arg(certs.ca())
            .stderr(std::fs::File::create(d.path().join("ship2.log")).unwrap());
        let p = Proc::spawn("shipper2", &mut c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while count_listening(&d.path().join("ship2.log")) == 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    };
    // Step 4: B's archive holds the old history: A refuses it.
    let out = b.command_to(port2, "replica1").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong_journal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Re-seed B: move its root and state aside, connect again.
    std::fs::rename(&b.root, d.path().join("b-old")).unwrap();
    std::fs::rename(&b.state, d.path().join("b-state-old")).unwrap();
    // Changes on the promoted node after the promotion.
    workload(&a.root, "32");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rec2
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    run_ok(
        &mut b.command_to(port2, "replica1"),
        "re-seeded replica of the promoted node",
    );
    assert_eq!(
        diff_with_mtimes(&tree(&a.root), &tree(&b.root)),
        Vec::<String>::new()
    );
    // Step 5: the new source lists B.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !foxing_journal::replicas::list_acks(&j2)
        .unwrap()
        .iter()
        .any(|x| x.name == "replica2")
    {
        assert!(
            Instant::now() < deadline,
            "the new source never recorded replica2's ack"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Applies the journal at `jdir` one-shot into WORK/reference (the expected replica tree).
fn reference_apply(jdir: &Path, work: &Path) -> PathBuf {
    let reference = work.join("reference");
    run_ok(
        Command::new(workspace_bin("foxing-applier"))
            .arg("--root")
            .arg(&reference)
            .arg("--state")
            .arg(work.join("ref-state"))
            .arg("--journal")
            .arg(jdir),
        "reference apply",
    );
    assert!(tree(&reference).len() >= 8, "the reference holds the files");
    reference
}

fn wait_log(log: &Path, needle: &str, secs: u64, alive: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(alive.running(), "{} exited: {text}", alive.name);
        assert!(
            Instant::now() < deadline,
            "no {needle:?} within {secs} s: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn logged(log: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap()
        .into()
}

/// Issue 9, full disks on the replica. The replica root's filesystem (a small loop-mounted
/// ext4) fills up while a following applier applies a 24 MiB journal: it stalls with a clear
/// message, stays up, and resumes by itself when space is freed; the tree then equals a
/// reference apply of the same journal.
#[test]
fn a_full_replica_root_stalls_the_applier_which_resumes_when_space_returns() {
    let _machine = shared_machine();
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    incompressible_journal(&jdir, 24);
    let reference = reference_apply(&jdir, d.path());
    let disk = foxing_tests::LoopExt4::mount(&d.path().join("rdisk"), 64);
    disk.fill_leaving("filler", 8 << 20);
    let root = disk.dir.join("root");
    let log = d.path().join("applier.log");
    let mut app = Proc::spawn(
        "applier",
        Command::new(workspace_bin("foxing-applier"))
            .arg("--root")
            .arg(&root)
            .arg("--state")
            .arg(d.path().join("state"))
            .arg("--journal")
            .arg(&jdir)
            .arg("--follow")
            .stdout(Stdio::null())
            .stderr(logged(&log)),
    );
    wait_log(&log, "the replica's filesystem is full", 60, &mut app);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("No space left on device"), "{text}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(app.running(), "the applier must wait, not exit");
    disk.free("filler");
    wait_log(&log, "applying resumed", 30, &mut app);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !diff(&tree(&reference), &tree(&root)).is_empty() {
        assert!(Instant::now() < deadline, "the replica did not converge");
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = app
        .terminate(Duration::from_secs(10))
        .expect("applier stops");
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap());
}

/// Issue 9, full disks on the replica's archive: `--connect` with the state directory (and so
/// the archive) on a small filesystem that fills. Replication stalls with a clear message,
/// nothing unarchived is acknowledged, and it resumes by itself when space is freed: the
/// archive then holds the source's frames byte for byte and the tree equals the reference.
#[test]
fn a_full_replica_archive_stalls_replication_which_resumes_when_space_returns() {
    let _machine = shared_machine();
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    incompressible_journal(&jdir, 24);
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1"]);
    let port = free_udp_port();
    let _ship = shipper(
        &jdir,
        port,
        &certs,
        "source",
        &d.path().join("shipper.log"),
        None,
    );
    let disk = foxing_tests::LoopExt4::mount(&d.path().join("sdisk"), 64);
    disk.fill_leaving("filler", 8 << 20);
    let r = Replica {
        certs: &certs,
        name: "replica1",
        root: d.path().join("root"),
        state: disk.dir.join("state"),
    };
    let log = d.path().join("applier.log");
    let mut app = Proc::spawn(
        "applier",
        r.command(port, true)
            .stdout(Stdio::null())
            .stderr(logged(&log)),
    );
    wait_log(&log, "cannot write the replica archive", 60, &mut app);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(app.running(), "the applier must wait, not exit");
    assert!(durable(&r.archive()) < durable(&jdir));
    disk.free("filler");
    wait_log(&log, "replication resumes", 30, &mut app);
    let deadline = Instant::now() + Duration::from_secs(60);
    while durable(&r.archive()) < durable(&jdir) {
        assert!(Instant::now() < deadline, "the archive did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = app
        .terminate(Duration::from_secs(10))
        .expect("applier stops");
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert_same_frames(&jdir, &r.archive());
    let reference = reference_apply(&jdir, d.path());
    assert_eq!(
        diff(&tree(&reference), &tree(&r.root)),
        Vec::<String>::new()
    );
}

/// A supervisor restarting the shipper the moment it was killed (kill -9, not yet reaped): the
/// dead process keeps its UDP port until the kernel has torn it down, and the new shipper used
/// to exit with "Address already in use" (found by a stress-ng run killing the shipper every
/// 4 s; the replica then had nothing to reconnect to). It now retries the address for up to
/// LISTEN_RETRY_MS; after two such restarts a replica fetches the whole journal.
#[test]
fn a_shipper_restarted_at_once_after_kill9_gets_its_port_back() {
    let _machine = shared_machine();
    let d = tempfile::tempdir().unwrap();
    let jdir = d.path().join("journal");
    let end = make_small_journal(&jdir);
    let certs = Certs::make(&d.path().join("certs"), &["source", "replica1"]);
    let port = free_udp_port();
    let log = d.path().join("shipper.log");
    let mut s = shipper(&jdir, port, &certs, "source", &log, None);
    let mut dead = Vec::new();
    for _ in 0..2 {
        unsafe {
            libc::kill(s.pid(), libc::SIGKILL);
        }
        dead.push(s); // reaped only at the end
        s = shipper(&jdir, port, &certs, "source", &log, None);
    }
    let r = Replica {
        certs: &certs,
        name: "replica1",
        root: d.path().join("replica"),
        state: d.path().join("state"),
    };
    std::fs::create_dir_all(&r.root).unwrap();
    run_ok(&mut r.command(port, false), "applier");
    assert_same_frames(&jdir, &r.archive());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("already in use"), "{text}");
    eprintln!(
        "port retries: {} (journal up to seq {end})",
        text.matches("the listen address is in use").count()
    );
    drop(s);
    drop(dead);
}
