//! `foxing-applier --connect`: the replica's network side. A thread keeps a QUIC session to the
//! shipper (reconnecting with exponential backoff and jitter), archives every received frame in
//! the replica's own journal (`SDIR/archive`, same format as the source's), acknowledges what the
//! archive has fsynced, and hands frames to the apply engine through a bounded channel.
//!
//! The archive is the truth: the channel is only a low-latency shortcut. When the engine falls
//! behind and the channel is full, frames are not queued in memory; the engine reads them back
//! from the archive ([`NetSource`]). So memory stays bounded however slow the replica tree is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foxing_journal::{Journal, JournalOptions, JournalReader, RawFrame};
use foxing_proto::wire::{
    self, Ack, Message, MessageDecoder, RefuseCode, ReplicaError, ReplicaEvent, ReplicaSession,
    Welcome,
};
use foxing_shipper::TlsFiles;

use crate::run::{FrameSource, RunError};

/// Frames handed to the engine in memory before it must read them back from the archive.
pub const CHANNEL_FRAMES: usize = 256;
/// First reconnect delay; doubles per failed attempt up to [`RECONNECT_MAX_MS`], with ±50 %
/// jitter; a session that was welcomed resets it.
pub const RECONNECT_INITIAL_MS: u64 = 200;
pub const RECONNECT_MAX_MS: u64 = 10_000;
/// After the archive could not be written (full disk), it is opened again this often.
pub const ARCHIVE_RETRY_MS: u64 = 1_000;
/// Largest piece taken from the QUIC stream at once (copied once, into its message).
const RECV_CHUNK_BYTES: usize = 1 << 20;
/// The shipper must answer Hello within this long.
pub const WELCOME_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// host:port of the shipper.
    pub addr: String,
    /// Name the shipper's certificate must be valid for.
    pub server_name: String,
    /// This replica's name (its certificate must be valid for it).
    pub name: String,
    pub tls: TlsFiles,
    /// The replica's archive journal.
    pub archive: PathBuf,
    /// Keep reconnecting after failures (follow mode); otherwise the first failure is final.
    pub retry: bool,
    /// Serve Prometheus metrics over HTTP here.
    pub metrics_listen: Option<SocketAddr>,
}

/// What the network thread shares with the rest of the applier.
#[derive(Default)]
pub struct NetStatus {
    pub connected: AtomicBool,
    pub archived_seq: AtomicU64,
    pub source_durable_seq: AtomicU64,
    pub source_durable_time_ns: AtomicU64,
    pub bytes_received: AtomicU64,
    pub reconnects: AtomicU64,
    /// Times the archive could not be written (full disk, I/O error), and whether it is
    /// stalled on that now.
    pub archive_failures: AtomicU64,
    pub archive_stalled: AtomicBool,
    /// Whether applying waits for room on a full replica filesystem (the engine's flag).
    pub apply_stalled: Arc<AtomicBool>,
    /// Whether the replica's tree is a state the source had (the engine's flag, see
    /// `Applier::consistent_after`).
    pub consistent: Arc<AtomicBool>,
    /// Set when the network side stopped for good; the engine stops with this message.
    pub fatal: Mutex<Option<String>>,
    /// Set when the archive was re-seeded while running: the engine skips to this seq's base.
    pub reseed_to: AtomicU64,
    /// Set by the engine: the seq applied to the tree (reported in acks) and its record time.
    pub applied_seq: AtomicU64,
    pub applied_time_ns: AtomicU64,
}

impl NetStatus {
    fn fail(&self, msg: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(msg);
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Prometheus text exposition of the replica's side.
    pub fn render(&self, replica: &str) -> String {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (applied, archived, source) = (
            g(&self.applied_seq),
            g(&self.archived_seq),
            g(&self.source_durable_seq),
        );
        // Lag in time: the age of the newest applied record while records wait; 0 when caught up.
        let lag_s = if applied >= source {
            0.0
        } else {
            foxing_proto::time::now_ns().saturating_sub(g(&self.applied_time_ns)) as f64 / 1e9
        };
        let r = foxing_journal::metrics::label(replica);
        let mut o = String::new();
        let mut m = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{replica=\"{r}\"}} {v}"
            );
        };
        m(
            "foxing_applier_connected",
            "gauge",
            "Whether a session with the shipper is up.",
            (self.connected.load(Ordering::Relaxed) as u8).to_string(),
        );
        m(
            "foxing_applier_source_durable_seq",
            "gauge",
            "Newest durable seq of the source, as last heard.",
            source.to_string(),
        );
        m(
            "foxing_applier_archived_seq",
            "gauge",
            "Seq fsynced in the replica archive (acknowledged).",
            archived.to_string(),
        );
        m(
            "foxing_applier_applied_seq",
            "gauge",
            "Seq applied to the replica tree.",
            applied.to_string(),
        );
        m(
            "foxing_applier_lag_seq",
            "gauge",
            "Source records not yet applied.",
            source.saturating_sub(applied).to_string(),
        );
        m(
            "foxing_applier_lag_seconds",
            "gauge",
            "Age of the newest applied record while records wait (0 when caught up).",
            format!("{lag_s:.6}"),
        );
        m(
            "foxing_applier_bytes_received_total",
            "counter",
            "Stream bytes received from the shipper.",
            g(&self.bytes_received).to_string(),
        );
        m(
            "foxing_applier_reconnects_total",
            "counter",
            "Sessions that failed and were retried.",
            g(&self.reconnects).to_string(),
        );
        m(
            "foxing_applier_archive_failures_total",
            "counter",
            "Times the archive could not be written (full disk, I/O error).",
            g(&self.archive_failures).to_string(),
        );
        m(
            "foxing_applier_archive_stalled",
            "gauge",
            "1 while the archive cannot be written: nothing more is received or acknowledged.",
            (self.archive_stalled.load(Ordering::Relaxed) as u8).to_string(),
        );
        m(
            "foxing_applier_consistent",
            "gauge",
            "1 while the replica's tree is a state the source had: a whole base applied, and not between a gap (lost events, a recorder restart) and its heal. Do not start a database on a replica reading 0: restore the last consistent point instead.",
            (self.consistent.load(Ordering::Relaxed) as u8).to_string(),
        );
        m(
            "foxing_applier_apply_stalled",
            "gauge",
            "1 while the replica's filesystem is full and applying waits for room.",
            (self.apply_stalled.load(Ordering::Relaxed) as u8).to_string(),
        );
        o
    }
}

/// The first session's outcome, for the engine's start.
#[derive(Clone, Debug)]
pub struct Joined {
    pub welcome: Welcome,
    /// The archive was empty and took the source's identity in this session.
    pub adopted: bool,
}

pub struct NetHandle {
    pub status: Arc<NetStatus>,
    pub joined: Receiver<Result<Joined, String>>,
    pub frames: Receiver<RawFrame>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the network thread. It opens (and owns) the archive journal.
pub fn start(opts: ConnectOptions, stop: Arc<AtomicBool>) -> anyhow::Result<NetHandle> {
    let archive = Journal::open(&opts.archive, JournalOptions::default()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the replica archive {}: {e}",
            opts.archive.display()
        )
    })?;
    let client = foxing_shipper::tls::client_config(&opts.tls)?;
    let status = Arc::new(NetStatus::default());
    if let Some(addr) = opts.metrics_listen {
        let (st, name) = (status.clone(), opts.name.clone());
        foxing_journal::metrics::serve_metrics(addr, Arc::new(move || st.render(&name)))
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    }
    status
        .archived_seq
        .store(archive.durable_seq(), Ordering::Relaxed);
    let mut archive = Some(archive);
    let (jtx, jrx) = std::sync::mpsc::sync_channel(1);
    let (ftx, frx) = std::sync::mpsc::sync_channel(CHANNEL_FRAMES);
    let st = status.clone();
    let thread = std::thread::Builder::new()
        .name("foxing-net".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let msg = format!("cannot start the async runtime: {e}");
                    st.fail(msg.clone());
                    let _ = jtx.send(Err(msg));
                    return;
                }
            };
            rt.block_on(net_loop(opts, client, &mut archive, st, jtx, ftx, stop));
            if let Some(Err(e)) = archive.as_mut().map(|a| a.sync()) {
                tracing::error!(error = %e, "final fsync of the archive failed");
            }
        })?;
    Ok(NetHandle {
        status,
        joined: jrx,
        frames: frx,
        thread,
    })
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Fatal(String),
    #[error("{0}")]
    Retry(String),
    /// The shipper no longer holds what this replica needs: start again from its oldest base.
    #[error("{0}")]
    Reseed(String),
    /// The archive could not be written: reopen it (when there is room) and reconnect.
    #[error("{0}")]
    Archive(String),
}

fn retry(e: impl std::fmt::Display) -> SessionError {
    SessionError::Retry(e.to_string())
}

async fn resolve(addr: &str) -> Result<SocketAddr, SessionError> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| retry(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| retry(format!("{addr} resolves to no address")))
}

/// What every session of the network thread shares.
struct Link {
    opts: ConnectOptions,
    status: Arc<NetStatus>,
    frames: SyncSender<RawFrame>,
    stop: Arc<AtomicBool>,
    /// After a re-seed: the journal id the shipper must still serve.
    expect_journal_id: std::cell::Cell<Option<u64>>,
}

/// Moves the archive aside (`archive.behind-SEQ`, kept for restores of older points) and opens
/// a new, empty one in its place. Returns the old directory and its journal id.
fn reseed_archive(
    archive: &mut Journal,
    opts: &ConnectOptions,
) -> Result<(PathBuf, u64), foxing_journal::JournalError> {
    archive.sync()?;
    let id = archive.journal_id()?;
    let old = opts
        .archive
        .with_file_name(format!("archive.behind-{}", archive.next_seq() - 1));
    std::fs::rename(&opts.archive, &old).map_err(|source| foxing_journal::JournalError::Io {
        op: "move the old archive aside",
        path: old.clone(),
        source,
    })?;
    *archive = Journal::open(&opts.archive, JournalOptions::default())?;
    Ok((old, id))
}

async fn net_loop(
    opts: ConnectOptions,
    client: quinn::ClientConfig,
    slot: &mut Option<Journal>,
    status: Arc<NetStatus>,
    joined: SyncSender<Result<Joined, String>>,
    frames: SyncSender<RawFrame>,
    stop: Arc<AtomicBool>,
) {
    // Dual-stack where IPv6 exists, IPv4 otherwise.
    let bound = foxing_shipper::tls::endpoint((std::net::Ipv6Addr::UNSPECIFIED, 0).into(), None)
        .or_else(|_| {
            foxing_shipper::tls::endpoint((std::net::Ipv4Addr::UNSPECIFIED, 0).into(), None)
        });
    let mut endpoint = match bound {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("cannot open a UDP socket: {e}");
            status.fail(msg.clone());
            let _ = joined.send(Err(msg));
            return;
        }
    };
    endpoint.set_default_client_config(client);
    let link = Link {
        opts,
        status,
        frames,
        stop,
        expect_journal_id: std::cell::Cell::new(None),
    };
    let (opts, status, stop) = (&link.opts, &link.status, &link.stop);
    let mut joined = Some(joined);
    let mut backoff = RECONNECT_INITIAL_MS;
    while !stop.load(Ordering::Relaxed) {
        let Some(archive) = archive_or_reopen(slot, opts, status, stop).await else {
            continue;
        };
        let mut welcomed = false;
        let res = session(&endpoint, &link, archive, &mut joined, &mut welcomed).await;
        status.connected.store(false, Ordering::Relaxed);
        let msg = match res {
            Ok(()) => break,
            Err(SessionError::Fatal(m)) => {
                tracing::error!(shipper = %opts.addr, error = %m, "replication stopped");
                status.fail(m.clone());
                if let Some(j) = joined.take() {
                    let _ = j.send(Err(m));
                }
                break;
            }
            Err(SessionError::Reseed(why)) => match reseed_archive(archive, opts) {
                Ok((old, id)) => {
                    tracing::warn!(shipper = %opts.addr, reason = %why, kept = %old.display(),
                            "this replica fell behind the source's retention: starting again from the source's oldest base; the old archive is kept for restores of older points");
                    link.expect_journal_id.set(Some(id));
                    continue;
                }
                Err(e) => {
                    let m = format!("cannot re-seed the archive {}: {e}", opts.archive.display());
                    status.fail(m.clone());
                    if let Some(j) = joined.take() {
                        let _ = j.send(Err(m));
                    }
                    break;
                }
            },
            Err(SessionError::Archive(m)) => {
                tracing::error!(archive = %opts.archive.display(), error = %m,
                    "cannot write the replica archive: replication stalls (nothing unarchived is acknowledged, so nothing is lost) and resumes by itself when the archive can be written again (free space on its filesystem)");
                status.archive_failures.fetch_add(1, Ordering::Relaxed);
                status.archive_stalled.store(true, Ordering::Relaxed);
                // Dropped here; opened again, without what was not durable, by the next turn.
                *slot = None;
                continue;
            }
            Err(SessionError::Retry(m)) => m,
        };
        if !opts.retry {
            status.fail(msg.clone());
            if let Some(j) = joined.take() {
                let _ = j.send(Err(msg));
            }
            break;
        }
        status.reconnects.fetch_add(1, Ordering::Relaxed);
        if welcomed {
            backoff = RECONNECT_INITIAL_MS;
        }
        let wait = backoff / 2 + fastrand::u64(0..=backoff);
        tracing::warn!(shipper = %opts.addr, error = %msg, retry_in_ms = wait, "session failed; reconnecting");
        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
        let deadline = Instant::now() + Duration::from_millis(wait);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50).min(deadline - Instant::now())).await;
        }
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"replica stopping");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// The archive, opened again after a failure if it had to be dropped; `None` (after waiting
/// ARCHIVE_RETRY_MS) while it still cannot be opened.
async fn archive_or_reopen<'a>(
    archive: &'a mut Option<Journal>,
    opts: &ConnectOptions,
    status: &NetStatus,
    stop: &AtomicBool,
) -> Option<&'a mut Journal> {
    if archive.is_none() {
        // Frames acknowledged before the failure were fsynced: they are kept.
        let acked = status.archived_seq.load(Ordering::Relaxed);
        match Journal::open_after_failure(&opts.archive, JournalOptions::default(), acked) {
            Ok(j) => {
                tracing::warn!(archive = %opts.archive.display(), durable_seq = j.durable_seq(),
                    "the replica archive can be written again: replication resumes");
                status.archive_stalled.store(false, Ordering::Relaxed);
                *archive = Some(j);
            }
            Err(e) => {
                tracing::debug!(archive = %opts.archive.display(), error = %e, "archive still cannot be opened");
                let deadline = Instant::now() + Duration::from_millis(ARCHIVE_RETRY_MS);
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return None;
            }
        }
    }
    archive.as_mut()
}

async fn write_message(send: &mut quinn::SendStream, m: &Message) -> Result<(), SessionError> {
    send.write_all(&wire::encode_message(m)).await.map_err(|e| {
        retry(format!(
            "send to shipper: {}",
            foxing_journal::error::chain(&e)
        ))
    })
}

fn archive_err(dir: &Path, e: foxing_journal::JournalError) -> SessionError {
    SessionError::Archive(format!("cannot archive into {}: {e}", dir.display()))
}

async fn session(
    endpoint: &quinn::Endpoint,
    link: &Link,
    archive: &mut Journal,
    joined: &mut Option<SyncSender<Result<Joined, String>>>,
    welcomed: &mut bool,
) -> Result<(), SessionError> {
    let (opts, status, frames, stop) = (&link.opts, &*link.status, &link.frames, &*link.stop);
    let addr = resolve(&opts.addr).await?;
    let conn = endpoint
        .connect(addr, &opts.server_name)
        .map_err(|e| retry(format!("cannot connect to {addr}: {}", foxing_journal::error::chain(&e))))?
        .await
        .map_err(|e| {
            retry(format!(
                "TLS handshake with {addr} (expecting a certificate for {:?} from our CA) failed: {e}",
                opts.server_name
            ))
        })?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| retry(format!("open stream: {}", foxing_journal::error::chain(&e))))?;
    archive.sync().map_err(|e| archive_err(&opts.archive, e))?;
    // A new archive says Hello as a new replica; one that adopted its source's identity asks
    // for its next seq even if no frame arrived yet (or the frames were lost in a power cut).
    let adopted = archive
        .is_adopted()
        .map_err(|e| archive_err(&opts.archive, e))?;
    let empty = !adopted && archive.is_empty();
    let (id, next) = if empty {
        (0, 0)
    } else {
        let id = archive
            .journal_id()
            .map_err(|e| archive_err(&opts.archive, e))?;
        (id, archive.next_seq())
    };
    let mut sess = ReplicaSession::new(&opts.name, id, next);
    write_message(&mut send, &sess.hello_message()).await?;
    let mut dec = MessageDecoder::new();
    let mut buf = vec![0u8; 256 << 10];
    let first = tokio::time::timeout(
        Duration::from_millis(WELCOME_TIMEOUT_MS),
        read_message(&mut recv, &mut dec, &mut buf),
    )
    .await
    .map_err(|_| {
        retry(format!(
            "no answer from {addr} within {WELCOME_TIMEOUT_MS} ms"
        ))
    })??;
    let Some(first) = first else {
        return Err(retry(format!("{addr} closed the stream before answering")));
    };
    match sess.on_message(first) {
        Ok(_) => {}
        Err(ReplicaError::Refused {
            code: RefuseCode::Behind,
            reason,
        }) if !empty => return Err(SessionError::Reseed(reason)),
        Err(ReplicaError::Refused { code, reason }) if !code.retryable() => {
            return Err(SessionError::Fatal(format!(
                "the shipper at {addr} refused this replica ({}): {reason}",
                code.name()
            )))
        }
        Err(e) => return Err(retry(e)),
    }
    let welcome = sess.welcome.clone().ok_or_else(|| retry("no welcome"))?;
    if let Some(id) = link.expect_journal_id.get() {
        if welcome.journal_id != id {
            return Err(SessionError::Fatal(format!(
                "after re-seeding, {addr} serves journal {:016x}, not {id:016x} as before; this replica stays as it is",
                welcome.journal_id
            )));
        }
    }
    if empty {
        archive
            .adopt(welcome.journal_id, welcome.start_seq)
            .map_err(|e| archive_err(&opts.archive, e))?;
        if joined.is_none() {
            // A re-seed while running: the engine jumps to the base (see NetSource).
            status
                .reseed_to
                .store(welcome.apply_from_seq, Ordering::Relaxed);
        }
    }
    *welcomed = true;
    status.connected.store(true, Ordering::Relaxed);
    status
        .source_durable_seq
        .store(welcome.durable_seq, Ordering::Relaxed);
    status
        .source_durable_time_ns
        .store(welcome.durable_time_ns, Ordering::Relaxed);
    tracing::info!(shipper = %addr, start_seq = welcome.start_seq, source_durable_seq = welcome.durable_seq,
        "connected; receiving");
    if let Some(j) = joined.take() {
        let _ = j.send(Ok(Joined {
            welcome: welcome.clone(),
            adopted: empty,
        }));
    }
    let mut acked = archive.synced_seq();
    // The archive's group commit runs on its own thread; it wakes this loop when its fsync
    // returns, so the ack (and the archived-seq metric) follows at once (the loop used to
    // notice only at its next packet or 100 ms tick: ~35 ms of replica lag per record). The ack
    // does not wait for the index commit: frames fsynced in a segment survive a crash.
    let committed = Arc::new(tokio::sync::Notify::new());
    let hook = committed.clone();
    archive.set_commit_hook(Some(Arc::new(move || hook.notify_one())));
    let mut stop_tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        // Ack what the archive's group commit has fsynced.
        let durable = archive.synced_seq();
        status.archived_seq.store(durable, Ordering::Relaxed);
        if durable > acked {
            acked = durable;
            write_message(
                &mut send,
                &Message::Ack(Ack {
                    archived_seq: durable,
                    applied_seq: status.applied_seq.load(Ordering::Relaxed).min(durable),
                }),
            )
            .await?;
        }
        let wake = archive.sync_deadline();
        tokio::select! {
            biased;
            r = recv.read_chunk(RECV_CHUNK_BYTES, true) => {
                match r.map_err(|e| retry(format!("receive from {addr}: {}", foxing_journal::error::chain(&e))))? {
                    None => return Err(retry(format!("{addr} ended the stream"))),
                    Some(chunk) => {
                        status.bytes_received.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                        dec.push(&chunk.bytes);
                    }
                }
                while let Some(m) = dec.next_message().map_err(|e| retry(format!("from {addr}: {e}")))? {
                    match sess.on_message(m).map_err(retry)? {
                        Some(ReplicaEvent::Frame(h, bytes)) => {
                            tracing::trace!(first_seq = h.first_seq, last_seq = h.last_seq(), "frame received");
                            archive.append_frame(&bytes).map_err(|e| archive_err(&opts.archive, e))?;
                            status.source_durable_seq.fetch_max(h.last_seq(), Ordering::Relaxed);
                            match frames.try_send(RawFrame { header: h, bytes }) {
                                Ok(()) | Err(TrySendError::Full(_)) => {}
                                Err(TrySendError::Disconnected(_)) => return Ok(()),
                            }
                        }
                        Some(ReplicaEvent::Heartbeat(hb)) => {
                            status.source_durable_seq.fetch_max(hb.durable_seq, Ordering::Relaxed);
                            status.source_durable_time_ns.fetch_max(hb.durable_time_ns, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
                archive.maybe_sync().map_err(|e| archive_err(&opts.archive, e))?;
            }
            _ = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.max(Instant::now() + Duration::from_micros(200)).into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                archive.maybe_sync().map_err(|e| archive_err(&opts.archive, e))?;
            }
            _ = committed.notified() => {}
            _ = stop_tick.tick() => {
                if stop.load(Ordering::Relaxed) {
                    archive.sync().map_err(|e| archive_err(&opts.archive, e))?;
                    let durable = archive.synced_seq();
                    if durable > acked {
                        let _ = write_message(&mut send, &Message::Ack(Ack {
                            archived_seq: durable,
                            applied_seq: status.applied_seq.load(Ordering::Relaxed).min(durable),
                        })).await;
                    }
                    let _ = send.finish();
                    conn.close(quinn::VarInt::from_u32(0), b"replica stopping");
                    return Ok(());
                }
            }
        }
    }
}

async fn read_message(
    recv: &mut quinn::RecvStream,
    dec: &mut MessageDecoder,
    buf: &mut [u8],
) -> Result<Option<Message>, SessionError> {
    loop {
        if let Some(m) = dec.next_message().map_err(retry)? {
            return Ok(Some(m));
        }
        match recv
            .read(buf)
            .await
            .map_err(|e| retry(format!("receive: {}", foxing_journal::error::chain(&e))))?
        {
            Some(n) => dec.push(&buf[..n]),
            None => return Ok(None),
        }
    }
}

/// Frames for the engine: from the network channel when it continues the engine's position,
/// else from the archive (catch-up after a restart, or frames the full channel did not take).
pub struct NetSource<'a> {
    archive_dir: PathBuf,
    archive: JournalReader,
    pub frames: &'a Receiver<RawFrame>,
    pub status: &'a NetStatus,
    pending: std::collections::VecDeque<RawFrame>,
}

impl<'a> NetSource<'a> {
    pub fn new(
        archive_dir: &Path,
        frames: &'a Receiver<RawFrame>,
        status: &'a NetStatus,
    ) -> Result<NetSource<'a>, foxing_journal::JournalError> {
        Ok(NetSource {
            archive_dir: archive_dir.to_path_buf(),
            archive: JournalReader::open(archive_dir)?,
            frames,
            status,
            pending: Default::default(),
        })
    }

    pub fn archive(&self) -> &JournalReader {
        &self.archive
    }
}

/// Longest a catch-up read from the archive returns at once (records).
const ARCHIVE_READ_RECORDS: u64 = 64 * 1024;

impl FrameSource for NetSource<'_> {
    fn next_frames(&mut self, next_seq: u64, timeout: Duration) -> Result<Vec<RawFrame>, RunError> {
        let deadline = Instant::now() + timeout;
        loop {
            let reseed = self.status.reseed_to.swap(0, Ordering::Relaxed);
            if reseed != 0 {
                self.archive = JournalReader::open(&self.archive_dir)?;
                return Err(RunError::Reseed(reseed));
            }
            while let Ok(f) = self.frames.try_recv() {
                self.pending.push_back(f);
            }
            while self
                .pending
                .front()
                .is_some_and(|f| f.header.last_seq() < next_seq)
            {
                self.pending.pop_front();
            }
            if self
                .pending
                .front()
                .is_some_and(|f| f.header.first_seq <= next_seq)
            {
                let mut out: Vec<RawFrame> = Vec::new();
                while let Some(f) = self.pending.front() {
                    let expect = out.last().map(|l| l.header.last_seq() + 1);
                    if expect.is_some_and(|e| f.header.first_seq != e) {
                        break;
                    }
                    out.extend(self.pending.pop_front());
                }
                return Ok(out);
            }
            let durable = self.archive.meta()?.durable_seq;
            if durable >= next_seq {
                let until = durable.min(next_seq.saturating_add(ARCHIVE_READ_RECORDS));
                return Ok(self.archive.frames_bounded(
                    next_seq,
                    until,
                    crate::run::READ_BATCH_BYTES,
                )?);
            }
            if let Some(msg) = self.status.fatal() {
                return Err(RunError::Source(msg));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Frames ahead of us in `pending` mean the archive will have the missing ones
            // as soon as its commit lands: poll it briefly.
            let wait = if self.pending.is_empty() {
                deadline - now
            } else {
                Duration::from_millis(1).min(deadline - now)
            };
            match self.frames.recv_timeout(wait) {
                Ok(f) => self.pending.push_back(f),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(msg) = self.status.fatal() {
                        return Err(RunError::Source(msg));
                    }
                    std::thread::sleep(Duration::from_millis(1).min(deadline - now));
                }
            }
        }
    }
}
