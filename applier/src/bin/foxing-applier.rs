//! `foxing-applier`: apply a journal to a replica tree, or restore a point in time.
//!
//! Exit codes: 0 ok, 1 damage/refusal/failure, 2 usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use foxing_applier::fs::FsTree;
use foxing_applier::pitr::{self, RestorePoint};
use foxing_applier::run::{Engine, JournalSource};
use foxing_applier::state::State;
use foxing_journal::JournalReader;
use foxing_proto::time::{fmt_time_ns, Point};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "foxing-applier",
    version,
    about = "Apply a Foxing journal to a replica tree, or restore a point in time"
)]
struct Args {
    /// The replica tree (created if missing).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Applier state: checkpoints (and, with --connect, the archive).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Journal to apply from (the source's or an archive).
    #[arg(long, conflicts_with = "connect")]
    journal: Option<PathBuf>,
    /// Replicate from a shipper at host:port (QUIC, mutual TLS). Received frames are archived in
    /// SDIR/archive (same format as a journal: restore from it with --journal SDIR/archive).
    #[arg(long, conflicts_with = "until")]
    connect: Option<String>,
    /// This replica's certificate (NAME.pem from `foxing-shipper certs`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The CA that signed the shipper's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The replica's name (its certificate must be valid for it); default: the --cert file name
    /// without extension.
    #[arg(long)]
    name: Option<String>,
    /// The name the shipper's certificate must be valid for; default: the host in --connect.
    #[arg(long)]
    server_name: Option<String>,
    /// With --connect: only archive what arrives (fsynced, acknowledged), do not apply it (an
    /// archive-only replica, like WAL archiving; restore from it later with --journal).
    #[arg(long)]
    archive_only: bool,
    /// With --connect: serve Prometheus metrics (lag, seqs, bytes) over HTTP on this address.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Restore to this point: RFC 3339, unix seconds, or seq:N. Stops at the last sync point
    /// at or before it.
    #[arg(long)]
    until: Option<Point>,
    /// With --until: stop at the last record at or before the point, not at a sync point.
    #[arg(long, requires = "until")]
    at_any_record: bool,
    /// Keep applying new records until SIGTERM/SIGINT.
    #[arg(long, conflicts_with = "until")]
    follow: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// TOML configuration file (its [applier] section; options given here win).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The options after merging the command line with the configuration file.
struct Cli {
    root: PathBuf,
    state: PathBuf,
    journal: Option<PathBuf>,
    connect: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    name: Option<String>,
    server_name: Option<String>,
    archive_only: bool,
    metrics_listen: Option<std::net::SocketAddr>,
    until: Option<Point>,
    at_any_record: bool,
    follow: bool,
    json: bool,
}

/// Command line first, then the config's [applier] section. A restore (--until) or a local
/// --journal on the command line is never turned into a network replica by the file.
fn resolve(a: Args) -> anyhow::Result<Cli> {
    let c = foxing_journal::config::Config::load(a.config.as_deref())?.applier;
    let need =
        |what: &str| format!("give --{what} (or `{what}` in the config's [applier] section)");
    let root = a.root.or(c.root).with_context(|| need("root"))?;
    let state = a.state.or(c.state).with_context(|| need("state"))?;
    let (journal, connect) = match (a.journal, a.connect) {
        (Some(j), None) => (Some(j), None),
        (None, Some(n)) => (None, Some(n)),
        (None, None) if a.until.is_some() => (c.journal, None),
        (None, None) => match (c.journal, c.connect) {
            (Some(_), Some(_)) => {
                bail!("the config's [applier] section sets both journal and connect; choose one")
            }
            (j, n) => (j, n),
        },
        (Some(_), Some(_)) => bail!("--journal and --connect exclude each other"),
    };
    if journal.is_none() && connect.is_none() {
        bail!("give --journal JDIR or --connect HOST:PORT (or one of them in the config's [applier] section)");
    }
    let network = connect.is_some();
    let metrics_listen = match a.metrics_listen {
        Some(m) => Some(m),
        None if network => c
            .metrics_listen
            .map(|m| {
                m.parse().with_context(|| {
                    format!("config [applier] metrics_listen = {m:?} is not an address")
                })
            })
            .transpose()?,
        None => None,
    };
    let cli = Cli {
        root,
        state,
        journal,
        connect,
        cert: a.cert.or(c.cert),
        key: a.key.or(c.key),
        ca: a.ca.or(c.ca),
        name: a.name.or(c.name),
        server_name: a.server_name.or(c.server_name),
        archive_only: a.archive_only || (network && c.archive_only.unwrap_or(false)),
        metrics_listen,
        follow: a.follow || (a.until.is_none() && c.follow.unwrap_or(false)),
        until: a.until,
        at_any_record: a.at_any_record,
        json: a.json,
    };
    // A state directory (checkpoint, archive) or journal inside the replica root would be
    // replaced by the tree it replicates; a root inside them, written over by them.
    let nested = foxing_journal::config::nested_dirs;
    if nested(&cli.root, &cli.state) {
        bail!(
            "the state directory {} and the replica root {} overlap; put the state outside the root",
            cli.state.display(),
            cli.root.display()
        );
    }
    if let Some(j) = cli.journal.as_ref().filter(|j| nested(&cli.root, j)) {
        bail!(
            "the journal {} and the replica root {} overlap; restore into a directory outside the journal",
            j.display(),
            cli.root.display()
        );
    }
    if !network && (cli.archive_only || cli.metrics_listen.is_some()) {
        bail!("--archive-only and --metrics-listen need --connect");
    }
    if network && (cli.cert.is_none() || cli.key.is_none() || cli.ca.is_none()) {
        bail!("--connect needs --cert, --key and --ca (or them in the config's [applier] section)");
    }
    Ok(cli)
}

fn main() -> ExitCode {
    foxing_applier::tune_allocator();
    // Like other command-line tools: a closed pipe (`... | head`) ends the process quietly
    // instead of a panic on the next print.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = match resolve(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("foxing-applier: usage: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("foxing-applier: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Applies shorter than this show no progress bar.
const PROGRESS_MIN_RECORDS: u64 = 10_000;

fn point_json(p: &RestorePoint) -> serde_json::Value {
    json!({"seq": p.seq, "time_ns": p.time_ns, "time": fmt_time_ns(p.time_ns), "kind": p.kind})
}

/// The restore points of seqs `first..=durable` (sync points outside gap windows, base ends).
fn restore_points(
    r: &JournalReader,
    first: u64,
    durable: u64,
) -> anyhow::Result<Vec<RestorePoint>> {
    Ok(pitr::offered_points(
        r.sync_points(first, durable)?
            .into_iter()
            .map(|s| (s.seq, s.time_ns)),
        &r.bases()?,
        &r.gap_windows()?,
    ))
}

/// Whether a replica that applied through `applied` is a state the source had. If not (it sits
/// between a Gap and its heal), a warning on stderr names the gap and the last consistent point
/// to restore instead. Returns the JSON fields `consistent`, `open_gap` and
/// `last_consistent_point`.
fn consistency(
    r: &JournalReader,
    applied: u64,
    journal: &Path,
) -> anyhow::Result<serde_json::Value> {
    // A replica that has not applied a whole base yet holds part of the tree.
    let bases = r.bases()?;
    if !bases.is_empty() && !pitr::base_applied(&bases, applied) {
        let first = &bases[0];
        eprintln!(
            "warning: the replica is not a state the source had: it holds part of the tree until its first base (seq {}..) is applied whole",
            first.begin_seq
        );
        return Ok(json!({
            "consistent": false,
            "open_gap": {"seq": first.begin_seq, "reason": "base_incomplete", "healed_seq": first.end_seq},
            "last_consistent_point": null,
        }));
    }
    let windows = r.gap_windows()?;
    let Some((gap_seq, healed)) = pitr::open_gap(&windows, applied) else {
        return Ok(json!({"consistent": true, "open_gap": null, "last_consistent_point": null}));
    };
    let reason = r
        .gaps()?
        .iter()
        .find(|g| g.seq == gap_seq)
        .map(|g| foxing_journal::index::gap_reason_name(g.reason))
        .unwrap_or("unknown");
    let meta = r.meta()?;
    let points = restore_points(r, meta.first_seq, meta.durable_seq)?;
    let last = pitr::plan(&bases, &points, gap_seq.saturating_sub(1), 0, false)
        .ok()
        .map(|p| p.stop);
    let healed = (healed != u64::MAX).then_some(healed);
    let advice = match &last {
        Some(p) => format!(
            "the last consistent point is seq {} at {} ({}): restore it into a new directory with `foxing-applier --journal {} --root NEW --state NEW_STATE --until seq:{}`",
            p.seq,
            fmt_time_ns(p.time_ns),
            p.kind,
            journal.display(),
            p.seq
        ),
        None => "no consistent point precedes it in this journal".to_string(),
    };
    let heal = match healed {
        Some(h) => format!("its heal is journaled at seq {h} but not applied yet"),
        None => {
            "the journal does not hold its heal (the recorder stopped before healing)".to_string()
        }
    };
    eprintln!(
        "warning: the replica is not a state the source had: events were lost at seq {gap_seq} ({reason}) and {heal}; {advice}"
    );
    Ok(json!({
        "consistent": false,
        "open_gap": {"seq": gap_seq, "reason": reason, "healed_seq": healed},
        "last_consistent_point": last.as_ref().map(point_json),
    }))
}

/// The longest prefix of the journal whose records are all at or before `t`: (seq, time).
fn cut_at_time(r: &JournalReader, first: u64, durable: u64, t: u64) -> anyhow::Result<(u64, u64)> {
    let mut cut = (first.saturating_sub(1), 0);
    let from = r
        .seq_at_or_before_time(t)?
        .map(|s| s.min(durable))
        .unwrap_or(first.saturating_sub(1));
    if from >= first {
        if let Some(rec) = r.records(from, from)?.next() {
            let rec = rec?;
            cut = (rec.seq, rec.time_ns);
        }
    }
    for rec in r.records(cut.0 + 1, durable)? {
        let rec = rec?;
        if rec.time_ns > t {
            break;
        }
        cut = (rec.seq, rec.time_ns);
    }
    Ok(cut)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.connect.is_some() {
        return run_connected(cli);
    }
    let Some(journal) = cli.journal.clone() else {
        bail!("give --journal JDIR or --connect ADDR");
    };
    if !journal.is_dir() {
        bail!("journal directory {} does not exist", journal.display());
    }
    let reader = JournalReader::open(&journal)
        .with_context(|| format!("cannot open journal {}", journal.display()))?;
    let meta = reader.meta()?;
    std::fs::create_dir_all(&cli.root)
        .with_context(|| format!("cannot create replica root {}", cli.root.display()))?;
    let tree = FsTree::open(&cli.root)
        .with_context(|| format!("cannot open replica root {}", cli.root.display()))?;
    let (state, resume) = State::open(&cli.state)
        .with_context(|| format!("cannot open state {}", cli.state.display()))?;

    let stop_flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop_flag.clone())
            .context("cannot install signal handlers")?;
    }

    let bases = reader.bases()?;
    let mut plan = None;
    // A later restore point at or before the target time (the source's clock went back).
    let mut repeats: Option<RestorePoint> = None;
    let stop_seq = match cli.until {
        None if cli.follow => u64::MAX,
        None => meta.durable_seq,
        Some(target) => {
            let (cut_seq, cut_time) = match target {
                Point::Seq(s) => {
                    let s = s.min(meta.durable_seq);
                    let t = reader
                        .records(s, s)?
                        .next()
                        .transpose()?
                        .map(|r| r.time_ns)
                        .unwrap_or(0);
                    (s, t)
                }
                Point::TimeNs(t) => cut_at_time(&reader, meta.first_seq, meta.durable_seq, t)?,
            };
            // Sync points inside a gap window (records were lost, or content arrived from
            // outside, until the heal) are not consistent states: they are not offered.
            let points = restore_points(&reader, meta.first_seq, meta.durable_seq)?;
            if let Point::TimeNs(t) = target {
                repeats = pitr::later_occurrence(&points, cut_seq, t);
            }
            let p = pitr::plan(&bases, &points, cut_seq, cut_time, cli.at_any_record)
                .map_err(|e| match &repeats {
                    Some(r) => anyhow::anyhow!(
                        "cannot restore to {target}: {e}; but the source's clock went back and this time occurs again later: the last restore point at or before it there is seq {} at {}: restore it with --until seq:{}",
                        r.seq,
                        fmt_time_ns(r.time_ns),
                        r.seq
                    ),
                    None => anyhow::anyhow!("cannot restore to {target}: {e}"),
                })?;
            plan = Some(p);
            plan.as_ref().map(|p| p.stop.seq).unwrap_or(0)
        }
    };

    let mut engine = Engine::new(tree, state, resume, Some(&stop_flag));
    engine.applier.set_gap_windows(reader.gap_windows()?);
    let applied_before = engine.applied_seq();
    // Where to start: a restore starts at its base; a new replica where the shipper starts one
    // too (the journal's start, or its oldest base if older history was pruned).
    if applied_before == 0 {
        let start = match &plan {
            Some(p) => p.base.begin_seq,
            None => reader.fresh_start_seq()?,
        };
        if start > 1 {
            if std::fs::read_dir(&cli.root)?.next().is_some() {
                bail!("replica root {} is not empty and has no checkpoint; restore into an empty directory", cli.root.display());
            }
            engine.skip_to(start - 1)?;
        }
    } else if let Some(p) = &plan {
        if applied_before > p.stop.seq {
            bail!(
                "the replica at {} is already at seq {applied_before}, past the restore point seq {}; restore into a new --root and --state",
                cli.root.display(),
                p.stop.seq
            );
        }
    }
    let mut src = JournalSource {
        reader: &reader,
        poll: Duration::from_millis(1),
    };
    // A progress bar on stderr for long applies and restores (hidden when not a terminal).
    let total = stop_seq
        .min(meta.durable_seq)
        .saturating_sub(engine.applied_seq());
    let bar = if cli.follow || cli.json || total < PROGRESS_MIN_RECORDS {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(if plan.is_some() {
            "restoring"
        } else {
            "applying"
        });
        b
    };
    let from = engine.applied_seq();
    let show = |seq: u64, _| bar.set_position(seq.saturating_sub(from));
    if cli.follow {
        engine.run(&mut src, stop_seq, true, show)?;
    } else {
        engine.catch_up(&mut src, stop_seq, show)?;
    }
    bar.finish_and_clear();
    engine.durable()?;
    let applied = engine.applied_seq();
    let stats = engine.applier.stats.clone();
    let reached_time = engine.last_record.map(|(_, t)| t);
    let consistent = consistency(&reader, applied, &journal)?;

    if cli.json {
        let v = json!({
            "root": cli.root.display().to_string(),
            "journal": journal.display().to_string(),
            "applied_from": applied_before + 1,
            "applied_seq": applied,
            "reached_time_ns": reached_time,
            "journal_durable_seq": meta.durable_seq,
            "consistent": consistent["consistent"],
            "open_gap": consistent["open_gap"],
            "last_consistent_point": consistent["last_consistent_point"],
            "stats": stats,
            "restore": plan.as_ref().map(|p| json!({
                "base": {"id": p.base.id, "begin_seq": p.base.begin_seq, "end_seq": p.base.end_seq},
                "reached": point_json(&p.stop),
                "nearest_before": p.before.as_ref().map(point_json),
                "nearest_after": p.after.as_ref().map(point_json),
                "time_occurs_again_at": repeats.as_ref().map(point_json),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "applied seq {}..={} to {} ({} records, {} bytes written; {} skipped as absent, {} replaced, {} inexact ranges)",
            applied_before + 1,
            applied,
            cli.root.display(),
            stats.records,
            stats.bytes_written,
            stats.skipped_absent,
            stats.replaced,
            stats.inexact_ranges
        );
        if stats.heal_failed > 0 {
            println!(
                "warning: {} records of a heal did not apply (see the log): the replica may differ until the next base (foxing-journal base)",
                stats.heal_failed
            );
        }
        if let Some(p) = &plan {
            println!(
                "restored to seq {} at {} ({}), from base {}",
                p.stop.seq,
                fmt_time_ns(p.stop.time_ns),
                p.stop.kind,
                p.base.id
            );
            match &p.before {
                Some(b) => println!(
                    "nearest point before: seq {} at {} ({})",
                    b.seq,
                    fmt_time_ns(b.time_ns),
                    b.kind
                ),
                None => println!("nearest point before: none since the base"),
            }
            match &p.after {
                Some(a) => println!(
                    "nearest point after:  seq {} at {} ({})",
                    a.seq,
                    fmt_time_ns(a.time_ns),
                    a.kind
                ),
                None => println!("nearest point after:  none yet"),
            }
            if let Some(r) = &repeats {
                println!(
                    "note: the source's clock went back: the target time occurs again later; the last restore point at or before it there is seq {} at {} ({}): reach it with --until seq:{}",
                    r.seq,
                    fmt_time_ns(r.time_ns),
                    r.kind,
                    r.seq
                );
            }
        }
        if stats.ownership_skipped > 0 {
            println!(
                "note: {} ownership changes were refused (run as root to reproduce owners)",
                stats.ownership_skipped
            );
        }
    }
    Ok(())
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    Ok(stop)
}

fn run_connected(cli: Cli) -> anyhow::Result<()> {
    use foxing_applier::net::{self, ConnectOptions, NetSource};
    use std::sync::atomic::Ordering;
    let addr = cli.connect.clone().unwrap_or_default();
    let (Some(cert), Some(key), Some(ca)) = (cli.cert.clone(), cli.key.clone(), cli.ca.clone())
    else {
        bail!("--connect needs --cert, --key and --ca");
    };
    let name = match &cli.name {
        Some(n) => n.clone(),
        None => cert
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .context("give --name: the replica name its certificate is valid for")?,
    };
    let server_name = match &cli.server_name {
        Some(n) => n.clone(),
        None => addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .with_context(|| format!("--connect {addr}: expected host:port"))?,
    };
    std::fs::create_dir_all(&cli.root)
        .with_context(|| format!("cannot create replica root {}", cli.root.display()))?;
    let tree = FsTree::open(&cli.root)
        .with_context(|| format!("cannot open replica root {}", cli.root.display()))?;
    let (state, resume) = State::open(&cli.state)
        .with_context(|| format!("cannot open state {}", cli.state.display()))?;
    let archive_dir = cli.state.join("archive");
    let stop = stop_flag()?;
    let handle = net::start(
        ConnectOptions {
            addr: addr.clone(),
            server_name,
            name: name.clone(),
            tls: foxing_shipper::TlsFiles { cert, key, ca },
            archive: archive_dir.clone(),
            retry: cli.follow,
            metrics_listen: cli.metrics_listen,
        },
        stop.clone(),
    )?;
    // Wait for the first session (or its failure).
    let joined = loop {
        match handle.joined.recv_timeout(Duration::from_millis(100)) {
            Ok(j) => break Some(j),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => break None,
        }
    };
    let joined = match joined {
        Some(Ok(j)) => j,
        Some(Err(msg)) => {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.thread.join();
            bail!("cannot replicate from {addr}: {msg}");
        }
        None => {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.thread.join();
            if let Some(msg) = handle.status.fatal() {
                bail!("cannot replicate from {addr}: {msg}");
            }
            return Ok(());
        }
    };
    if cli.archive_only {
        let target = if cli.follow {
            u64::MAX
        } else {
            joined.welcome.durable_seq
        };
        while !stop.load(Ordering::Relaxed)
            && handle.status.archived_seq.load(Ordering::Relaxed) < target
            && handle.status.fatal().is_none()
        {
            // Frames go to the archive only; drop the engine's copies.
            while handle.frames.try_recv().is_ok() {}
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        let _ = handle.thread.join();
        if let Some(msg) = handle.status.fatal() {
            bail!("replication from {addr} stopped: {msg}");
        }
        let archived = handle.status.archived_seq.load(Ordering::Relaxed);
        if cli.json {
            let v = json!({"shipper": addr, "replica": name, "archive": archive_dir.display().to_string(),
                "archived_seq": archived, "bytes_received": handle.status.bytes_received.load(Ordering::Relaxed)});
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "archived through seq {archived} from {addr} as {name} in {}",
                archive_dir.display()
            );
        }
        return Ok(());
    }
    let reader = JournalReader::open(&archive_dir)
        .with_context(|| format!("cannot read the archive {}", archive_dir.display()))?;
    let mut engine = Engine::new(tree, state, resume, Some(&stop));
    engine.applier.set_gap_windows(reader.gap_windows()?);
    let applied_before = engine.applied_seq();
    if applied_before == 0 {
        let start = if joined.adopted {
            joined.welcome.apply_from_seq
        } else {
            reader.fresh_start_seq()?
        };
        if start > 1 {
            if std::fs::read_dir(&cli.root)?.next().is_some() {
                stop.store(true, Ordering::Relaxed);
                bail!("replica root {} is not empty and has no checkpoint; replicate into an empty directory", cli.root.display());
            }
            engine.skip_to(start - 1)?;
        }
    } else if joined.adopted && joined.welcome.apply_from_seq <= applied_before {
        // The checkpoint is past the base a new archive starts with: applying from there would
        // skip the start of the base. The state belongs to another archive.
        stop.store(true, Ordering::Relaxed);
        bail!(
            "the state in {} has applied up to seq {applied_before}, but its archive is new (it starts at seq {}); the archive was removed or the state belongs to another replica: use a new --root and --state",
            cli.state.display(),
            joined.welcome.apply_from_seq
        );
    } else if joined.adopted && joined.welcome.apply_from_seq > applied_before + 1 {
        // Re-seeded at connect (the replica was behind the source's retention): the base that
        // starts there rebuilds the tree.
        tracing::warn!(
            applied_before,
            base_seq = joined.welcome.apply_from_seq,
            "re-seeding this replica from the source's oldest base"
        );
        engine.skip_to(joined.welcome.apply_from_seq - 1)?;
        engine.applier.set_gap_windows(Vec::new());
    }
    drop(reader);
    let stop_seq = if cli.follow {
        u64::MAX
    } else {
        joined.welcome.durable_seq
    };
    let status = handle.status.clone();
    let mut src = NetSource::new(&archive_dir, &handle.frames, &status)
        .with_context(|| format!("cannot read the archive {}", archive_dir.display()))?;
    engine.stalled = status.apply_stalled.clone();
    engine.applier.consistent = status.consistent.clone();
    let bases = JournalReader::open(&archive_dir)
        .and_then(|r| r.bases())
        .with_context(|| format!("cannot read the archive {}", archive_dir.display()))?;
    let from = engine.applied_seq();
    // A new replica with an empty archive: its first record decides (see `set_base_applied`).
    engine
        .applier
        .set_base_applied(if from == 0 && bases.is_empty() {
            None
        } else {
            Some(bases.is_empty() || pitr::base_applied(&bases, from))
        });
    status
        .consistent
        .store(engine.applier.consistent_after(from), Ordering::Relaxed);
    let res = loop {
        let r = engine.run(&mut src, stop_seq, true, |seq, time_ns| {
            status.applied_seq.store(seq, Ordering::Relaxed);
            status.applied_time_ns.store(time_ns, Ordering::Relaxed);
        });
        match r {
            Err(foxing_applier::run::RunError::Reseed(seq)) => {
                tracing::warn!(
                    base_seq = seq,
                    "re-seeding this replica from the source's oldest base"
                );
                if seq > engine.applied_seq() + 1 {
                    engine.skip_to(seq - 1)?;
                }
                engine.applier.set_gap_windows(Vec::new());
                engine.applier.set_base_applied(Some(false));
            }
            other => break other,
        }
    };
    let res = res.and_then(|()| engine.durable());
    stop.store(true, Ordering::Relaxed);
    let _ = handle.thread.join();
    res?;
    let applied = engine.applied_seq();
    let stats = engine.applier.stats.clone();
    let archived = status.archived_seq.load(Ordering::Relaxed);
    if let Some(msg) = status.fatal() {
        bail!("replication from {addr} stopped: {msg}");
    }
    let consistent = consistency(
        &JournalReader::open(&archive_dir)
            .with_context(|| format!("cannot read the archive {}", archive_dir.display()))?,
        applied,
        &archive_dir,
    )?;
    if cli.json {
        let v = json!({
            "root": cli.root.display().to_string(),
            "shipper": addr,
            "replica": name,
            "archive": archive_dir.display().to_string(),
            "applied_from": applied_before + 1,
            "applied_seq": applied,
            "consistent": consistent["consistent"],
            "open_gap": consistent["open_gap"],
            "last_consistent_point": consistent["last_consistent_point"],
            "archived_seq": archived,
            "source_durable_seq": status.source_durable_seq.load(Ordering::Relaxed),
            "reconnects": status.reconnects.load(Ordering::Relaxed),
            "bytes_received": status.bytes_received.load(Ordering::Relaxed),
            "stats": stats,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "replicated from {addr} as {name}: applied seq {}..={} to {} ({} records, {} bytes written); archived through seq {archived} in {}",
            applied_before + 1,
            applied,
            cli.root.display(),
            stats.records,
            stats.bytes_written,
            archive_dir.display()
        );
    }
    Ok(())
}
