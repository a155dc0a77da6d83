//! `foxing-journal`: inspect and maintain a Foxing journal.
//!
//! Exit codes: 0 ok, 1 damage found or the command failed, 2 usage error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use foxing_journal::index::{gap_reason_name, sync_kind_name};
use foxing_journal::reader::JournalReader;
use foxing_journal::{prune, replicas, show, verify, Journal, JournalOptions};
use foxing_proto::time::{fmt_time_ns, now_ns, parse_duration, Point};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "foxing-journal",
    version,
    about = "Inspect and maintain a Foxing change journal"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture every change under ROOT into the journal until SIGTERM/SIGINT (needs root).
    Record {
        /// The tree to watch (or `[recorder] root` in the config).
        #[arg(long)]
        root: Option<PathBuf>,
        /// The journal directory (or `[recorder] journal`).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Group commit window in milliseconds (0: fsync every batch; default 5).
        #[arg(long)]
        fsync_window_ms: Option<u64>,
        /// Writes up to this size carry their bytes; larger ones are re-read (inexact; default
        /// 262144).
        #[arg(long)]
        payload_cap_bytes: Option<u32>,
        /// Kernel ring buffer size in bytes (a power of two; default 64 MiB).
        #[arg(long)]
        ring_size_bytes: Option<u32>,
        /// Rotate journal segments at this size (default 64 MiB); prune deletes whole segments.
        #[arg(long)]
        segment_size_bytes: Option<u64>,
        /// Serve Prometheus metrics (records, bytes, losses, bases) over HTTP on this address.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// TOML configuration file (its [recorder] section; options given here win).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the final statistics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running recorder of JDIR for a new base, and wait until it is complete.
    Base {
        #[arg(long)]
        journal: PathBuf,
        /// Give up after this long (e.g. 10min).
        #[arg(long, default_value = "1h")]
        timeout: String,
    },
    /// Print records, one a line (JSON lines with --json).
    Dump {
        #[arg(long)]
        journal: PathBuf,
        /// First seq to print.
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this point: RFC 3339, unix seconds, or seq:N.
        #[arg(long)]
        until: Option<Point>,
        #[arg(long)]
        json: bool,
    },
    /// Summarize the journal: seqs, times, sizes, bases, sync points, gaps, replicas.
    Stat {
        #[arg(long)]
        journal: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every crc, seq continuity and the index; exit 1 on damage.
    Verify {
        #[arg(long)]
        journal: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run crash recovery now (repair the index, cut a torn tail), as the next writer would.
    Recover {
        #[arg(long)]
        journal: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Delete whole segments older than a horizon, keeping the newest complete base before it.
    Prune {
        #[arg(long)]
        journal: PathBuf,
        /// Keep this much history (e.g. 7d, 36h).
        #[arg(long, conflicts_with = "before", required_unless_present = "before")]
        keep: Option<String>,
        /// Horizon as a point in time: RFC 3339 or unix seconds.
        #[arg(long)]
        before: Option<Point>,
        /// Also delete what registered replicas have not acknowledged.
        #[arg(long)]
        force: bool,
        /// Print the plan without deleting anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
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
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("foxing-journal: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Record {
            root,
            journal,
            fsync_window_ms,
            payload_cap_bytes,
            ring_size_bytes,
            segment_size_bytes,
            metrics_listen,
            config,
            json,
        } => {
            let c = foxing_journal::config::Config::load(config.as_deref())?.recorder;
            let metrics_listen = match metrics_listen {
                Some(m) => Some(m),
                None => c
                    .metrics_listen
                    .map(|m| {
                        m.parse().with_context(|| {
                            format!("config [recorder] metrics_listen = {m:?} is not an address")
                        })
                    })
                    .transpose()?,
            };
            let root = root
                .or(c.root)
                .context("give --root (or `root` in the config's [recorder] section)")?;
            let journal = journal
                .or(c.journal)
                .context("give --journal (or `journal` in the config's [recorder] section)")?;
            let journal_opts = JournalOptions {
                fsync_window: std::time::Duration::from_millis(
                    fsync_window_ms
                        .or(c.fsync_window_ms)
                        .unwrap_or(foxing_journal::writer::DEFAULT_FSYNC_WINDOW_MS),
                ),
                segment_size_bytes: segment_size_bytes
                    .or(c.segment_size_bytes)
                    .unwrap_or(foxing_journal::writer::DEFAULT_SEGMENT_SIZE_BYTES),
                ..JournalOptions::default()
            };
            let opts = foxing_journal::recorder::RecorderOptions {
                root,
                journal,
                journal_opts,
                payload_cap_bytes: payload_cap_bytes
                    .or(c.payload_cap_bytes)
                    .unwrap_or(256 * 1024),
                ring_size_bytes: ring_size_bytes
                    .or(c.ring_size_bytes)
                    .unwrap_or(foxing_probes::DEFAULT_RING_SIZE_BYTES),
            };
            record(opts, metrics_listen, json)
        }
        Cmd::Base { journal, timeout } => request_base(&journal, &timeout),
        Cmd::Dump {
            journal,
            from,
            until,
            json,
        } => dump(&journal, from, until, json),
        Cmd::Stat { journal, json } => stat(&journal, json),
        Cmd::Verify { journal, json } => verify_cmd(&journal, json),
        Cmd::Recover { journal, json } => {
            if !journal.is_dir() {
                bail!("journal directory {} does not exist", journal.display());
            }
            let j = Journal::open(&journal, JournalOptions::default())
                .with_context(|| format!("recovery of journal {} failed", journal.display()))?;
            let rec = j.recovery().clone();
            if json {
                let v = json!({
                    "durable_seq": j.durable_seq(),
                    "frames_reindexed": rec.frames_reindexed,
                    "cut_bytes": rec.cut_bytes,
                    "cut_at": rec.cut_at.as_ref().map(|(p, o)| json!({"segment": p.display().to_string(), "offset": o})),
                    "segments_removed": rec.segments_removed,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "recovered: durable up to seq {}; {} frames re-indexed, {} bytes of torn tail cut{}, {} segments removed",
                    j.durable_seq(),
                    rec.frames_reindexed,
                    rec.cut_bytes,
                    rec.cut_at.as_ref().map(|(p, o)| format!(" at {} offset {o}", p.display())).unwrap_or_default(),
                    rec.segments_removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Prune {
            journal,
            keep,
            before,
            force,
            dry_run,
            json,
        } => {
            let horizon = match (keep, before) {
                (Some(k), _) => {
                    let d = parse_duration(&k).map_err(anyhow::Error::msg)?;
                    now_ns().saturating_sub(d.as_nanos() as u64)
                }
                (None, Some(Point::TimeNs(t))) => t,
                (None, Some(Point::Seq(_))) => {
                    bail!("--before takes a time (RFC 3339 or unix seconds), not a seq")
                }
                (None, None) => bail!("give --keep DURATION or --before TIME"),
            };
            prune_cmd(&journal, horizon, force, dry_run, json)
        }
    }
}

fn open_reader(journal: &Path) -> anyhow::Result<JournalReader> {
    if !journal.is_dir() {
        bail!("journal directory {} does not exist", journal.display());
    }
    JournalReader::open(journal)
        .with_context(|| format!("cannot open journal {}", journal.display()))
}

fn dump(
    journal: &Path,
    from: Option<u64>,
    until: Option<Point>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let r = open_reader(journal)?;
    let meta = r.meta()?;
    let from = from.unwrap_or(meta.first_seq).max(meta.first_seq);
    let (until_seq, until_time) = match until {
        Some(Point::Seq(s)) => (s.min(meta.durable_seq), u64::MAX),
        Some(Point::TimeNs(t)) => {
            let bound = r.first_seq_after_time(t)?.unwrap_or(meta.durable_seq);
            (bound.min(meta.durable_seq), t)
        }
        None => (meta.durable_seq, u64::MAX),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for rec in r.records(from, until_seq)? {
        let rec = rec?;
        if rec.time_ns > until_time {
            // Records are in seq order; the first one past the time ends the prefix.
            break;
        }
        let line = if as_json {
            show::record_json(&rec).to_string()
        } else {
            show::record_line(&rec)
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS); // reader went away (e.g. `| head`)
        }
    }
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}

fn stat(journal: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let r = open_reader(journal)?;
    let meta = r.meta()?;
    let fl = r.first_last_frames()?;
    let segments = r.segments()?;
    let mut seg_bytes = 0u64;
    for (s, _) in &segments {
        let p = r
            .layout()
            .segments
            .join(foxing_journal::segment::segment_file_name(*s));
        seg_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    let index_bytes = std::fs::metadata(&r.layout().index)
        .map(|m| m.len())
        .unwrap_or(0);
    let bases = r.bases()?;
    let gaps = r.gaps()?;
    let syncs = r.sync_point_count()?;
    let last_sync = r.last_sync_point()?;
    let acks = replicas::list_acks(journal)?;
    // First record time: the first frame's min time needs a decode; the max time is indexed.
    let first_time = match &fl {
        Some((f, _)) => r
            .frames(f.first_seq, f.first_seq)?
            .first()
            .map(|fr| fr.header.min_time_ns),
        None => None,
    };
    let last_time = fl.as_ref().map(|(_, l)| l.max_time_ns);
    let records = fl
        .as_ref()
        .map(|(f, l)| l.last_seq() - f.first_seq + 1)
        .unwrap_or(0);
    let unhealed = gaps.iter().filter(|g| g.healed_seq.is_none()).count();
    let lost: u64 = gaps.iter().map(|g| g.lost).sum();
    if as_json {
        let v = json!({
            "journal": journal.display().to_string(),
            "journal_id": format!("{:016x}", meta.journal_id),
            "first_seq": fl.as_ref().map(|(f, _)| f.first_seq),
            "last_seq": fl.as_ref().map(|(_, l)| l.last_seq()),
            "durable_seq": meta.durable_seq,
            "durable_time_ns": meta.durable_time_ns,
            "first_time_ns": first_time,
            "last_time_ns": last_time,
            "records": records,
            "segments": segments.len(),
            "segment_bytes": seg_bytes,
            "index_bytes": index_bytes,
            "sync_points": syncs,
            "last_sync_point": last_sync.map(|s| json!({"seq": s.seq, "time_ns": s.time_ns, "kind": sync_kind_name(s.kind)})),
            "bases": bases.iter().map(|b| json!({"id": b.id, "begin_seq": b.begin_seq, "end_seq": b.end_seq,
                "begin_time_ns": b.begin_time_ns, "end_time_ns": b.end_time_ns, "complete": b.end_seq.is_some()})).collect::<Vec<_>>(),
            "gaps": gaps.iter().map(|g| json!({"seq": g.seq, "lost": g.lost, "reason": gap_reason_name(g.reason),
                "healed_seq": g.healed_seq, "time_ns": g.time_ns})).collect::<Vec<_>>(),
            "lost_records": lost,
            "unhealed_gaps": unhealed,
            "replicas": acks.iter().map(|a| json!({"name": a.name, "acked_seq": a.acked_seq, "ack_time_ns": a.time_ns,
                "lag_records": meta.durable_seq.saturating_sub(a.acked_seq)})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let t = |x: Option<u64>| x.map(fmt_time_ns).unwrap_or_else(|| "-".into());
    println!(
        "journal      {} (id {:016x})",
        journal.display(),
        meta.journal_id
    );
    match &fl {
        Some((f, l)) => println!(
            "seqs         {}..={} ({} records), durable up to {}",
            f.first_seq,
            l.last_seq(),
            records,
            meta.durable_seq
        ),
        None => println!("seqs         (empty)"),
    }
    println!("times        {} .. {}", t(first_time), t(last_time));
    println!(
        "size         {} segments, {} bytes; index {} bytes",
        segments.len(),
        seg_bytes,
        index_bytes
    );
    match last_sync {
        Some(s) => println!(
            "sync points  {} (last: seq {} at {}, {})",
            syncs,
            s.seq,
            fmt_time_ns(s.time_ns),
            sync_kind_name(s.kind)
        ),
        None => println!("sync points  0"),
    }
    println!("bases        {}", bases.len());
    for b in &bases {
        match (b.end_seq, b.end_time_ns) {
            (Some(e), Some(et)) => println!(
                "  base {} seq {}..={} ({} .. {})",
                b.id,
                b.begin_seq,
                e,
                fmt_time_ns(b.begin_time_ns),
                fmt_time_ns(et)
            ),
            _ => println!(
                "  base {} seq {}.. (incomplete, started {})",
                b.id,
                b.begin_seq,
                fmt_time_ns(b.begin_time_ns)
            ),
        }
    }
    println!(
        "gaps         {} ({} records lost, {} not yet healed)",
        gaps.len(),
        lost,
        unhealed
    );
    for g in &gaps {
        println!(
            "  gap at seq {}: {} lost ({}), {}",
            g.seq,
            g.lost,
            gap_reason_name(g.reason),
            g.healed_seq
                .map(|h| format!("healed at seq {h}"))
                .unwrap_or_else(|| "NOT HEALED".into())
        );
    }
    println!("replicas     {}", acks.len());
    for a in &acks {
        println!(
            "  {} acked seq {} at {} (lag {} records)",
            a.name,
            a.acked_seq,
            fmt_time_ns(a.time_ns),
            meta.durable_seq.saturating_sub(a.acked_seq)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(journal: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    if !journal.is_dir() {
        bail!("journal directory {} does not exist", journal.display());
    }
    let rep = verify::verify(journal)?;
    if as_json {
        let v = json!({
            "ok": rep.ok(),
            "segments": rep.segments, "frames": rep.frames, "records": rep.records, "bytes": rep.bytes,
            "first_seq": rep.first_seq, "last_seq": rep.last_seq, "durable_seq": rep.durable_seq,
            "index_present": rep.index_present,
            "damage": rep.damage.iter().map(|d| json!({"segment": d.segment.display().to_string(), "offset": d.offset, "what": d.what})).collect::<Vec<_>>(),
            "notes": rep.notes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} segments, {} frames, {} records, {} bytes; seqs {}..={}; durable up to {}",
            rep.segments,
            rep.frames,
            rep.records,
            rep.bytes,
            rep.first_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            rep.last_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            rep.durable_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
        );
        for n in &rep.notes {
            println!("note: {n}");
        }
        for d in &rep.damage {
            println!(
                "DAMAGE: segment {} offset {}: {}",
                d.segment.display(),
                d.offset,
                d.what
            );
        }
        if rep.ok() {
            println!("ok");
        } else {
            println!(
                "journal is damaged ({} problems). Replicas hold their own archive; restore from one, or cut the journal before the first damaged offset.",
                rep.damage.len()
            );
        }
    }
    Ok(if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn prune_cmd(
    journal: &Path,
    horizon_ns: u64,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let (meta, bases) = {
        let r = open_reader(journal)?;
        (r.meta()?, r.bases()?)
    };
    let acks = replicas::list_acks(journal)?;
    let plan = prune::plan(meta.first_seq, &bases, &acks, horizon_ns, force);
    let removed = if dry_run || plan.nothing_because.is_some() {
        Vec::new()
    } else {
        match Journal::open(journal, JournalOptions::default()) {
            Ok(mut j) => j.prune_before(plan.keep_from_seq)?,
            Err(foxing_journal::JournalError::Locked { .. }) => {
                prune_through_recorder(journal, plan.keep_from_seq)?
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot open journal {} for pruning", journal.display())
                })
            }
        }
    };
    if as_json {
        let v = json!({
            "horizon_ns": horizon_ns,
            "keep_from_seq": plan.keep_from_seq,
            "base": plan.base.map(|b| json!({"id": b.id, "begin_seq": b.begin_seq, "end_seq": b.end_seq})),
            "held_back_by": plan.held_back_by.iter().map(|(n, s)| json!({"replica": n, "acked_seq": s})).collect::<Vec<_>>(),
            "nothing_because": plan.nothing_because,
            "dry_run": dry_run,
            "segments_removed": removed,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("horizon {}", fmt_time_ns(horizon_ns));
    if let Some(why) = &plan.nothing_because {
        println!("nothing to prune: {why}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(b) = plan.base {
        println!(
            "keeping base {} (seq {}) and everything after it",
            b.id, b.begin_seq
        );
    }
    for (name, seq) in &plan.held_back_by {
        println!("held back by replica {name}: acknowledged only up to seq {seq} (use --force to prune anyway)");
    }
    if dry_run {
        println!("dry run: would keep seq {} onwards", plan.keep_from_seq);
    } else {
        println!(
            "removed {} segments; the journal now starts at the segment holding seq {}",
            removed.len(),
            plan.keep_from_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A running recorder holds the journal's writer lock: hand it the plan (a request file and
/// SIGUSR2) and wait for its answer.
fn prune_through_recorder(journal: &Path, keep_from_seq: u64) -> anyhow::Result<Vec<u64>> {
    use foxing_journal::recorder::{PRUNE_REQUEST_FILE, PRUNE_RESULT_FILE};
    let pid: i32 = std::fs::read_to_string(pid_file(journal))
        .with_context(|| {
            format!(
                "journal {} is locked by another writer that is not a recorder (no {}); stop it to prune",
                journal.display(),
                pid_file(journal).display()
            )
        })?
        .trim()
        .parse()
        .context("recorder.pid is not a pid")?;
    let (req, res) = (
        journal.join(PRUNE_REQUEST_FILE),
        journal.join(PRUNE_RESULT_FILE),
    );
    let _ = std::fs::remove_file(&res);
    std::fs::write(&req, keep_from_seq.to_string())
        .with_context(|| format!("cannot write {}", req.display()))?;
    let target =
        rustix::process::Pid::from_raw(pid).ok_or_else(|| anyhow::anyhow!("bad pid {pid}"))?;
    rustix::process::kill_process(target, rustix::process::Signal::USR2)
        .with_context(|| format!("cannot signal the recorder (pid {pid}); is it still running?"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while req.exists() {
        if std::time::Instant::now() > deadline {
            let _ = std::fs::remove_file(&req);
            bail!("the recorder (pid {pid}) did not answer the prune request within 5 minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let answer = std::fs::read_to_string(&res)
        .with_context(|| format!("the recorder left no answer in {}", res.display()))?;
    let _ = std::fs::remove_file(&res);
    match answer.split_once(' ').unwrap_or((answer.as_str(), "")) {
        ("ok", list) => Ok(list
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect()),
        (_, why) => bail!("the recorder could not prune: {why}"),
    }
}

/// The file where a running recorder leaves its pid.
fn pid_file(journal: &Path) -> PathBuf {
    journal.join("recorder.pid")
}

fn record(
    opts: foxing_journal::recorder::RecorderOptions,
    metrics_listen: Option<std::net::SocketAddr>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    use foxing_journal::recorder::{Recorder, RecorderStats, RootReplaced};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let base = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, base.clone())?;
    let (root, journal) = (opts.root.clone(), opts.journal.clone());
    // Kept across restarts (below): the signal flag and what the metrics endpoint reads.
    let prune = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, prune.clone())?;
    let shared: Arc<std::sync::Mutex<(RecorderStats, u64)>> = Default::default();
    if let Some(addr) = metrics_listen {
        let shared = shared.clone();
        let root_s = root.display().to_string();
        foxing_journal::metrics::serve_metrics(
            addr,
            std::sync::Arc::new(move || {
                let (st, durable) = shared.lock().map(|g| g.clone()).unwrap_or_default();
                st.render(durable, &root_s)
            }),
        )
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    let rec = loop {
        let mut rec = Recorder::start(opts.clone())?;
        rec.prune_requested = prune.clone();
        rec.shared = shared.clone();
        std::fs::write(pid_file(&journal), std::process::id().to_string())
            .with_context(|| format!("cannot write {}", pid_file(&journal).display()))?;
        tracing::info!(root = %root.display(), journal = %journal.display(), "recording");
        base_spinner(rec.shared.clone());
        let res = rec.run(&stop, &base);
        let _ = std::fs::remove_file(pid_file(&journal));
        match res {
            // The root path names another directory now (or none): record that one, from a new
            // base, once the path names a directory again.
            Err(e) if e.is::<RootReplaced>() && !stop.load(Ordering::Relaxed) => {
                let was_dev = e.downcast_ref::<RootReplaced>().map(|r| r.was_dev);
                tracing::error!(
                    "{e}; what was journaled before is durable; recording starts again on what {} names now, with a new base, once it is a directory on the same filesystem",
                    root.display()
                );
                drop(rec);
                if !wait_for_root_dir(&root, was_dev, &stop) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            r => {
                r?;
                break rec;
            }
        }
    };
    let durable = rec.durable_seq();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"durable_seq": durable, "stats": rec.stats}))?
        );
    } else {
        let s = &rec.stats;
        println!(
            "stopped: durable up to seq {durable}; {} events, {} records, {} payload bytes, {} inexact ranges, {} lost events, {} bases ({} entries)",
            s.events, s.records, s.payload_bytes, s.inexact_ranges, s.lost_events, s.bases, s.base_entries
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The first base can take long on a big tree: a spinner with the entries walked (stderr,
/// hidden when it is not a terminal), until the recorder's first base ends.
fn base_spinner(
    shared: std::sync::Arc<std::sync::Mutex<(foxing_journal::recorder::RecorderStats, u64)>>,
) {
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} base: {pos} entries ({per_sec}, {elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        loop {
            let (st, _) = shared.lock().map(|g| g.clone()).unwrap_or_default();
            if st.bases > 0 {
                break;
            }
            bar.set_position(st.base_entries);
            bar.tick();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
}

/// How often a recorder whose root path names no directory looks again.
const ROOT_WAIT_POLL_MS: u64 = 1_000;
/// How often it says it is still waiting.
const ROOT_WAIT_LOG_S: u64 = 60;

/// Waits until `root` names a directory on the filesystem the recorder watched (`dev`, a
/// kernel dev): false when stopped first (SIGTERM/SIGINT). A directory on another filesystem
/// means one was unmounted from the path (or mounted over it): recording the empty mount point
/// would empty every replica, so that takes an operator's restart of the recorder.
fn wait_for_root_dir(root: &Path, dev: Option<u64>, stop: &std::sync::atomic::AtomicBool) -> bool {
    use std::sync::atomic::Ordering;
    let since = std::time::Instant::now();
    let mut logged: Option<std::time::Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let why = match std::fs::metadata(root) {
            Ok(md) if md.is_dir() => match dev {
                Some(d) if foxing_journal::recorder::kernel_dev_of(&md) != d => {
                    "a directory on another filesystem (one was unmounted from the path or mounted over it): restart the recorder to record it, or mount the filesystem back".to_string()
                }
                _ => return true,
            },
            Ok(_) => "not a directory".to_string(),
            Err(e) => e.to_string(),
        };
        if logged.is_none_or(|t| t.elapsed().as_secs() >= ROOT_WAIT_LOG_S) {
            logged = Some(std::time::Instant::now());
            tracing::warn!(
                root = %root.display(),
                waited_s = since.elapsed().as_secs(),
                now = %why,
                "waiting for the watched root to name a directory again"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(ROOT_WAIT_POLL_MS));
    }
}

fn request_base(journal: &Path, timeout: &str) -> anyhow::Result<ExitCode> {
    let timeout = parse_duration(timeout).map_err(anyhow::Error::msg)?;
    let pid: i32 = std::fs::read_to_string(pid_file(journal))
        .with_context(|| {
            format!(
                "no recorder is running for {} ({} is missing)",
                journal.display(),
                pid_file(journal).display()
            )
        })?
        .trim()
        .parse()
        .context("recorder.pid is not a pid")?;
    let before = open_reader(journal)?
        .bases()?
        .iter()
        .filter(|b| b.end_seq.is_some())
        .count();
    let target =
        rustix::process::Pid::from_raw(pid).ok_or_else(|| anyhow::anyhow!("bad pid {pid}"))?;
    rustix::process::kill_process(target, rustix::process::Signal::USR1)
        .with_context(|| format!("cannot signal the recorder (pid {pid}); is it still running?"))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = open_reader(journal)?;
        let bases = r.bases()?;
        let complete: Vec<_> = bases.iter().filter(|b| b.end_seq.is_some()).collect();
        if complete.len() > before {
            if let Some(b) = complete.last() {
                println!(
                    "base {} complete: seq {}..={} ({} .. {})",
                    b.id,
                    b.begin_seq,
                    b.end_seq.unwrap_or(0),
                    fmt_time_ns(b.begin_time_ns),
                    fmt_time_ns(b.end_time_ns.unwrap_or(0))
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        if std::time::Instant::now() > deadline {
            bail!("the recorder did not complete a base within the timeout");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
