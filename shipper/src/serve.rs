//! `foxing-shipper serve`: accepts replicas over QUIC (mutual TLS), answers their Hello, streams
//! the journal's frames as stored from the seq each one holds, follows the tail, and records each
//! replica's acknowledged seq in the journal (`replicas.redb`, which prune honours).
//!
//! One task per replica. Frames are read from the journal in batches of at most
//! [`SEND_BATCH_BYTES`] and written to the QUIC stream, whose flow control (the replica's receive
//! window) is the backpressure: a slow replica holds at most one batch in the shipper's memory.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foxing_journal::reader::SegmentFiles;
use foxing_journal::replicas::ReplicaAcks;
use foxing_journal::{JournalReader, RawFrame};
use foxing_proto::time::now_ns;
use foxing_proto::wire::{
    self, answer_hello, message_header, JournalView, Message, MessageDecoder, RefuseCode,
    ShipperSession,
};
use tokio::sync::watch;

use crate::tls::{failure_reason, peer_valid_for, TlsFiles};

/// Most bytes of frames read from the journal per batch (per replica).
pub const SEND_BATCH_BYTES: usize = 4 << 20;
/// Below this many records behind the tail, frames are read on the session's task itself
/// (latency); further behind, on the blocking pool (a catch-up read may wait for the disk).
pub const INLINE_READ_RECORDS: u64 = 256;
/// A replica must say Hello within this long after connecting.
pub const HELLO_TIMEOUT_MS: u64 = 10_000;
/// A heartbeat (the journal's durable seq and time) goes to idle replicas this often.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// Acknowledged seqs are written to `replicas.redb` at most this often (and on disconnect).
pub const ACK_STORE_INTERVAL_MS: u64 = 1_000;
/// The journal watcher re-reads the index at least this often even without a notification.
pub const WATCH_FALLBACK_POLL_MS: u64 = 100;
/// QUIC application close codes.
pub const CLOSE_OK: u32 = 0;
pub const CLOSE_REFUSED: u32 = 1;
pub const CLOSE_PROTOCOL: u32 = 2;
pub const CLOSE_SHUTDOWN: u32 = 3;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub journal: PathBuf,
    pub listen: SocketAddr,
    pub tls: TlsFiles,
    /// Per-replica send rate limit in bytes per second (None: unlimited).
    pub max_bytes_per_sec: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no journal at {0}: start `foxing-journal record` first (it creates the journal)")]
    NoJournal(PathBuf),
    #[error(transparent)]
    Journal(#[from] foxing_journal::JournalError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("journal watcher: {0}")]
    Watch(std::io::Error),
}

/// Live state of one replica, for metrics and logs.
#[derive(Clone, Debug, Default)]
pub struct ReplicaStatus {
    pub connected: bool,
    pub peer: String,
    pub acked_seq: u64,
    pub applied_seq: u64,
    pub sent_seq: u64,
    pub bytes_sent: u64,
    /// acked_seq last written to replicas.redb.
    stored_seq: u64,
}

/// Counters and gauges shown by the metrics endpoint.
#[derive(Default)]
pub struct Metrics {
    pub bytes_sent: AtomicU64,
    pub frames_sent: AtomicU64,
    pub sessions_total: AtomicU64,
    pub handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    pub refusals: Mutex<BTreeMap<&'static str, u64>>,
    pub replicas: Mutex<BTreeMap<String, ReplicaStatus>>,
    /// (durable seq, when it was first seen) for lag in seconds; bounded.
    durable_history: Mutex<VecDeque<(u64, Instant)>>,
    pub durable_seq: AtomicU64,
}

const DURABLE_HISTORY_LEN: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    fn count_failure(&self, reason: &'static str) {
        *lock(&self.handshake_failures).entry(reason).or_default() += 1;
    }

    fn note_durable(&self, seq: u64) {
        self.durable_seq.store(seq, Ordering::Relaxed);
        let mut h = lock(&self.durable_history);
        if h.back().is_none_or(|b| b.0 < seq) {
            h.push_back((seq, Instant::now()));
            if h.len() > DURABLE_HISTORY_LEN {
                h.pop_front();
            }
        }
    }

    /// Seconds since the oldest durable record the replica has not acknowledged became durable.
    pub fn lag_seconds(&self, acked: u64) -> f64 {
        let h = lock(&self.durable_history);
        h.iter()
            .find(|(s, _)| *s > acked)
            .map(|(_, t)| t.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let durable = self.durable_seq.load(Ordering::Relaxed);
        let reps = lock(&self.replicas).clone();
        let connected = reps.values().filter(|r| r.connected).count();
        let _ = writeln!(o, "# HELP foxing_shipper_journal_durable_seq Newest durable seq of the journal.\n# TYPE foxing_shipper_journal_durable_seq gauge\nfoxing_shipper_journal_durable_seq {durable}");
        let _ = writeln!(o, "# HELP foxing_shipper_replicas_connected Replicas with a live session.\n# TYPE foxing_shipper_replicas_connected gauge\nfoxing_shipper_replicas_connected {connected}");
        let _ = writeln!(o, "# HELP foxing_shipper_bytes_sent_total Frame bytes sent to replicas.\n# TYPE foxing_shipper_bytes_sent_total counter\nfoxing_shipper_bytes_sent_total {}", self.bytes_sent.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP foxing_shipper_frames_sent_total Frames sent to replicas.\n# TYPE foxing_shipper_frames_sent_total counter\nfoxing_shipper_frames_sent_total {}", self.frames_sent.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP foxing_shipper_sessions_total Replica sessions welcomed.\n# TYPE foxing_shipper_sessions_total counter\nfoxing_shipper_sessions_total {}", self.sessions_total.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP foxing_shipper_handshake_failures_total TLS handshakes refused, by reason.\n# TYPE foxing_shipper_handshake_failures_total counter");
        for (r, n) in lock(&self.handshake_failures).iter() {
            let _ = writeln!(
                o,
                "foxing_shipper_handshake_failures_total{{reason=\"{r}\"}} {n}"
            );
        }
        let _ = writeln!(o, "# HELP foxing_shipper_refusals_total Replicas refused after the TLS handshake, by reason.\n# TYPE foxing_shipper_refusals_total counter");
        for (r, n) in lock(&self.refusals).iter() {
            let _ = writeln!(o, "foxing_shipper_refusals_total{{reason=\"{r}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP foxing_shipper_replica_acked_seq Seq the replica holds durably.\n# TYPE foxing_shipper_replica_acked_seq gauge");
        for (n, r) in &reps {
            let _ = writeln!(
                o,
                "foxing_shipper_replica_acked_seq{{replica=\"{}\"}} {}",
                esc(n),
                r.acked_seq
            );
        }
        let _ = writeln!(o, "# HELP foxing_shipper_replica_lag_seq Durable seqs the replica has not acknowledged.\n# TYPE foxing_shipper_replica_lag_seq gauge");
        for (n, r) in &reps {
            let _ = writeln!(
                o,
                "foxing_shipper_replica_lag_seq{{replica=\"{}\"}} {}",
                esc(n),
                durable.saturating_sub(r.acked_seq)
            );
        }
        let _ = writeln!(o, "# HELP foxing_shipper_replica_lag_seconds Age of the oldest durable record the replica has not acknowledged.\n# TYPE foxing_shipper_replica_lag_seconds gauge");
        for (n, r) in &reps {
            let _ = writeln!(
                o,
                "foxing_shipper_replica_lag_seconds{{replica=\"{}\"}} {:.6}",
                esc(n),
                self.lag_seconds(r.acked_seq)
            );
        }
        let _ = writeln!(o, "# HELP foxing_shipper_replica_connected Whether the replica has a live session.\n# TYPE foxing_shipper_replica_connected gauge");
        for (n, r) in &reps {
            let _ = writeln!(
                o,
                "foxing_shipper_replica_connected{{replica=\"{}\"}} {}",
                esc(n),
                r.connected as u8
            );
        }
        o
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Ctx {
    reader: Arc<JournalReader>,
    acks: Arc<ReplicaAcks>,
    journal_dir: PathBuf,
    durable: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
    max_bytes_per_sec: Option<u64>,
}

/// What a new replica gets: the journal from its start if whole, else from its oldest base.
pub fn journal_view(r: &JournalReader) -> Result<JournalView, foxing_journal::JournalError> {
    let m = r.meta()?;
    let apply_from = r.fresh_start_seq()?;
    // Frames are sent whole: start at the frame holding the base's first record.
    let start = r
        .locate(apply_from)?
        .map(|e| e.first_seq)
        .unwrap_or(apply_from);
    Ok(JournalView {
        journal_id: m.journal_id,
        first_seq: m.first_seq,
        // Frames past the index may have been sent already (the synced hint): a replica that
        // holds them is not ahead of this journal (regression: a kill -9 of the recorder
        // between its fsync and its index commit made the shipper refuse such a replica as
        // "ahead_of_source", for good; postgres_dr found it).
        durable_seq: r.served_seq()?,
        durable_time_ns: m.durable_time_ns,
        new_replica_start: start,
        new_replica_apply_from: apply_from,
    })
}

/// Watches the journal index for commits (inotify, with a fallback poll) and publishes the
/// durable seq. Runs on its own thread until `stop` is set.
fn watch_journal(
    reader: Arc<JournalReader>,
    tx: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ServeError> {
    use rustix::fs::inotify;
    // The journal directory: the index and the synced hint both live there.
    let dir = reader.layout().dir.clone();
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(|e| ServeError::Watch(e.into()))?;
    inotify::add_watch(
        &fd,
        &dir,
        inotify::WatchFlags::MODIFY | inotify::WatchFlags::CLOSE_WRITE,
    )
    .map_err(|e| ServeError::Watch(e.into()))?;
    std::thread::Builder::new()
        .name("foxing-watch".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
            // (index durable seq, synced hint seq): a change of either wakes the streams, so
            // one that waits for the index to catch up with a hint it could not read resumes.
            let mut last = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match reader.meta() {
                    Ok(m) => {
                        let hinted = reader.synced_hint().map_or(0, |h| h.seq);
                        if (m.durable_seq, hinted) != last {
                            last = (m.durable_seq, hinted);
                            let on_disk = m.durable_seq.max(hinted);
                            metrics.note_durable(on_disk);
                            let _ = tx.send(on_disk);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the journal index; retrying"),
                }
                let mut pfd = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                let ts = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: (WATCH_FALLBACK_POLL_MS * 1_000_000) as i64,
                };
                let _ = rustix::event::poll(&mut pfd, Some(&ts));
                let mut rd = inotify::Reader::new(&fd, &mut buf);
                while rd.next().is_ok() {}
            }
        })
        .map_err(ServeError::Watch)
}

/// How long a starting shipper retries a listen address that is in use. A shipper killed with
/// SIGKILL keeps its UDP port until the kernel has torn the process down: a restart at once
/// found it still bound and exited. Another live process on the port still gets the error after
/// this wait.
pub const LISTEN_RETRY_MS: u64 = 10_000;

/// `quinn::Endpoint::server`, retrying while the address is in use (up to LISTEN_RETRY_MS).
async fn listen(
    server_config: quinn::ServerConfig,
    addr: std::net::SocketAddr,
) -> Result<quinn::Endpoint, ServeError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LISTEN_RETRY_MS);
    let mut told = false;
    loop {
        match quinn::Endpoint::server(server_config.clone(), addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !told {
                    tracing::info!(%addr, "the listen address is in use (a previous shipper still exiting?): retrying for up to {} s", LISTEN_RETRY_MS / 1000);
                    told = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            r => return r.map_err(|source| ServeError::Listen { addr, source }),
        }
    }
}

/// Runs the shipper until `stop` turns true.
pub async fn serve(
    opts: ServeOptions,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let layout = foxing_journal::Layout::new(&opts.journal);
    if !layout.index.exists() {
        return Err(ServeError::NoJournal(opts.journal.clone()));
    }
    let reader = Arc::new(JournalReader::open(&opts.journal)?);
    let acks = Arc::new(ReplicaAcks::open(&opts.journal)?);
    let server_config = crate::tls::server_config(&opts.tls)?;
    let endpoint = listen(server_config, opts.listen).await?;
    let (tx, rx) = watch::channel(reader.meta()?.durable_seq);
    let watch_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_journal(reader.clone(), tx, metrics.clone(), watch_stop.clone())?;
    tracing::info!(listen = %endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        journal = %opts.journal.display(), "shipper listening");
    let ctx = Arc::new(Ctx {
        reader,
        acks: acks.clone(),
        journal_dir: opts.journal.clone(),
        durable: rx,
        metrics: metrics.clone(),
        max_bytes_per_sec: opts.max_bytes_per_sec,
    });
    let flusher = tokio::spawn(store_acks_periodically(acks.clone(), metrics.clone()));
    loop {
        tokio::select! {
            inc = endpoint.accept() => {
                let Some(inc) = inc else { break };
                let ctx = ctx.clone();
                tokio::spawn(async move { handle(inc, ctx).await });
            }
            _ = stop.changed() => {
                if *stop.borrow() { break; }
            }
        }
    }
    endpoint.close(
        quinn::VarInt::from_u32(CLOSE_SHUTDOWN),
        b"shipper shutting down",
    );
    flusher.abort();
    store_acks(&acks, &metrics);
    watch_stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle())
        .await
        .ok();
    tracing::info!(journal = %ctx.journal_dir.display(), "shipper stopped");
    Ok(())
}

fn store_acks(acks: &ReplicaAcks, metrics: &Metrics) {
    let todo: Vec<(String, u64)> = lock(&metrics.replicas)
        .iter()
        .filter(|(_, r)| r.acked_seq > r.stored_seq)
        .map(|(n, r)| (n.clone(), r.acked_seq))
        .collect();
    for (name, seq) in todo {
        match acks.set(&name, seq, now_ns()) {
            Ok(()) => {
                if let Some(r) = lock(&metrics.replicas).get_mut(&name) {
                    r.stored_seq = r.stored_seq.max(seq);
                }
            }
            Err(e) => {
                tracing::warn!(replica = %name, error = %e, "cannot store the replica's acknowledged seq (retried); until then prune honours the older one, keeping more")
            }
        }
    }
}

async fn store_acks_periodically(acks: Arc<ReplicaAcks>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_millis(ACK_STORE_INTERVAL_MS));
    loop {
        tick.tick().await;
        let (a, m) = (acks.clone(), metrics.clone());
        let _ = tokio::task::spawn_blocking(move || store_acks(&a, &m)).await;
    }
}

async fn handle(inc: quinn::Incoming, ctx: Arc<Ctx>) {
    let peer = inc.remote_address();
    let conn = match inc.await {
        Ok(c) => c,
        Err(e) => {
            let reason = failure_reason(&e);
            ctx.metrics.count_failure(reason);
            tracing::warn!(%peer, reason, error = %e, "TLS handshake failed: peer refused, nothing sent");
            return;
        }
    };
    match session(&conn, &ctx).await {
        Ok(name) => tracing::info!(%peer, replica = %name, "replica session ended"),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "replica session ended with an error");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("no Hello within {HELLO_TIMEOUT_MS} ms")]
    HelloTimeout,
    #[error("connection: {0}")]
    Conn(#[from] quinn::ConnectionError),
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("peer closed the stream before Hello")]
    Closed,
    #[error("wire: {0}")]
    Wire(#[from] wire::WireError),
    #[error("refused replica {name:?}: {reason}")]
    Refused { name: String, reason: String },
    #[error("replica {name:?} broke the protocol: {reason}")]
    Protocol { name: String, reason: String },
    #[error(transparent)]
    Journal(#[from] foxing_journal::JournalError),
}

async fn read_message(
    recv: &mut quinn::RecvStream,
    dec: &mut MessageDecoder,
    buf: &mut [u8],
) -> Result<Option<Message>, SessionError> {
    loop {
        if let Some(m) = dec.next_message()? {
            return Ok(Some(m));
        }
        match recv.read(buf).await {
            Ok(Some(n)) => dec.push(&buf[..n]),
            Ok(None) => return Ok(None),
            // The replica closed the connection on purpose (it stops, or reached its target).
            Err(quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(c)))
                if c.error_code == quinn::VarInt::from_u32(0) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn write_message(send: &mut quinn::SendStream, m: &Message) -> Result<(), SessionError> {
    send.write_all(&wire::encode_message(m)).await?;
    Ok(())
}

async fn session(conn: &quinn::Connection, ctx: &Ctx) -> Result<String, SessionError> {
    let peer = conn.remote_address();
    let hello_deadline = Duration::from_millis(HELLO_TIMEOUT_MS);
    let (mut send, mut recv) = tokio::time::timeout(hello_deadline, conn.accept_bi())
        .await
        .map_err(|_| SessionError::HelloTimeout)??;
    let mut dec = MessageDecoder::new();
    let mut buf = vec![0u8; 64 << 10];
    let first = tokio::time::timeout(hello_deadline, read_message(&mut recv, &mut dec, &mut buf))
        .await
        .map_err(|_| SessionError::HelloTimeout)??;
    let hello = match first {
        Some(Message::Hello(h)) => h,
        Some(other) => {
            let reason = format!("expected hello, got {}", Message::kind_name(other.kind()));
            refuse(conn, &mut send, ctx, RefuseCode::Protocol, &reason).await;
            return Err(SessionError::Protocol {
                name: String::new(),
                reason,
            });
        }
        None => return Err(SessionError::Closed),
    };
    let name_ok = peer_valid_for(conn, &hello.name);
    let view = journal_view(&ctx.reader)?;
    let welcome = match answer_hello(&hello, &view, name_ok) {
        Ok(w) => w,
        Err(r) => {
            refuse(conn, &mut send, ctx, r.code, &r.reason).await;
            return Err(SessionError::Refused {
                name: hello.name,
                reason: r.reason,
            });
        }
    };
    let name = hello.name.clone();
    write_message(&mut send, &Message::Welcome(welcome.clone())).await?;
    ctx.metrics.sessions_total.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, replica = %name, start_seq = welcome.start_seq, durable_seq = view.durable_seq,
        "replica welcomed; streaming");
    {
        let mut reps = lock(&ctx.metrics.replicas);
        let r = reps.entry(name.clone()).or_default();
        if r.connected {
            tracing::warn!(replica = %name, "a second session for this replica name; the newest wins the metrics");
        }
        r.connected = true;
        r.peer = peer.to_string();
        r.acked_seq = r.acked_seq.max(welcome.start_seq.saturating_sub(1));
        r.sent_seq = welcome.start_seq.saturating_sub(1);
    }
    let sess = Arc::new(Mutex::new(ShipperSession::new(&welcome)));
    let result = stream(conn, ctx, &name, &sess, send, recv, dec).await;
    if let Some(r) = lock(&ctx.metrics.replicas).get_mut(&name) {
        r.connected = false;
    }
    // What the replica acknowledged last is stored now, not at the next tick.
    let (acks, metrics) = (ctx.acks.clone(), ctx.metrics.clone());
    let _ = tokio::task::spawn_blocking(move || store_acks(&acks, &metrics)).await;
    result.map(|()| name)
}

async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    ctx: &Ctx,
    code: RefuseCode,
    reason: &str,
) {
    *lock(&ctx.metrics.refusals).entry(code.name()).or_default() += 1;
    let _ = write_message(
        send,
        &Message::Refuse {
            code,
            reason: reason.to_string(),
        },
    )
    .await;
    let _ = send.finish();
    // Give the Refuse a moment to reach the replica before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    conn.close(
        quinn::VarInt::from_u32(CLOSE_REFUSED),
        code.name().as_bytes(),
    );
}

/// Reads frames `from..=until` up to [`SEND_BATCH_BYTES`] (at least one frame when any is
/// readable): indexed frames, then frames the writer fsynced whose index commit has not landed
/// (the synced hint). Empty when `until` is only hinted and the hint did not check out.
fn read_batch(
    reader: &JournalReader,
    files: &mut SegmentFiles,
    from: u64,
    until: u64,
) -> Result<Vec<RawFrame>, foxing_journal::JournalError> {
    // Indexed frames into `out`, up to the batch size; false when the batch is full.
    let read_indexed = |out: &mut Vec<RawFrame>, files: &mut SegmentFiles, bytes: &mut usize| {
        for e in reader.frame_entries(from, until)? {
            if !out.is_empty() && *bytes + e.len as usize > SEND_BATCH_BYTES {
                return Ok::<bool, foxing_journal::JournalError>(false);
            }
            *bytes += e.len as usize;
            out.push(reader.read_frame(&e, files)?);
        }
        Ok(true)
    };
    let mut out: Vec<RawFrame> = Vec::new();
    let mut bytes = 0usize;
    if !read_indexed(&mut out, files, &mut bytes)? {
        return Ok(out);
    }
    let next = out.last().map_or(from, |f| f.header.last_seq() + 1);
    if next <= until && bytes < SEND_BATCH_BYTES {
        let unindexed = reader.unindexed_frames(next, until, files)?;
        if unindexed.is_empty() && out.is_empty() {
            // The index commit may have landed between the two reads (the frames are then
            // indexed, no longer past the index): read the index once more.
            read_indexed(&mut out, files, &mut bytes)?;
        }
        out.extend(unindexed);
    }
    Ok(out)
}

async fn stream(
    conn: &quinn::Connection,
    ctx: &Ctx,
    name: &str,
    sess: &Arc<Mutex<ShipperSession>>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut dec: MessageDecoder,
) -> Result<(), SessionError> {
    // Acks arrive on their own task so a long send never delays them.
    let ack_task = {
        let sess = sess.clone();
        let metrics = ctx.metrics.clone();
        let name = name.to_string();
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let m = match read_message(&mut recv, &mut dec, &mut buf).await {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let res = lock(&sess).on_message(m);
                match res {
                    Ok(adv) => {
                        let s = lock(&sess).clone();
                        if let Some(r) = lock(&metrics.replicas).get_mut(&name) {
                            if let Some(seq) = adv {
                                r.acked_seq = r.acked_seq.max(seq);
                            }
                            r.applied_seq = s.applied_seq;
                        }
                    }
                    Err(refusal) => {
                        conn.close(quinn::VarInt::from_u32(CLOSE_PROTOCOL), b"protocol");
                        return Err(SessionError::Protocol {
                            name,
                            reason: refusal.reason,
                        });
                    }
                }
            }
        })
    };
    let mut durable_rx = ctx.durable.clone();
    let mut files = SegmentFiles::default();
    let mut last_send = Instant::now();
    let mut bucket = TokenBucket::new(ctx.max_bytes_per_sec);
    let result: Result<(), SessionError> = async {
        loop {
            if ack_task.is_finished() {
                return Ok(());
            }
            let durable = *durable_rx.borrow_and_update();
            tracing::trace!(durable, "durable seq seen");
            let next = lock(sess).next_seq;
            if next <= durable {
                let frames = if durable - next < INLINE_READ_RECORDS {
                    // Following the tail: a few records, read from the page cache at once.
                    read_batch(&ctx.reader, &mut files, next, durable)?
                } else {
                    let reader = ctx.reader.clone();
                    let (frames, f) = tokio::task::spawn_blocking(move || {
                        let r = read_batch(&reader, &mut files, next, durable);
                        (r, files)
                    })
                    .await
                    .map_err(|e| SessionError::Protocol {
                        name: name.to_string(),
                        reason: format!("journal reader task failed: {e}"),
                    })?;
                    files = f;
                    frames?
                };
                // Nothing readable: `durable` came from a synced hint that did not check out
                // (the writer's index commit will follow); wait for the next change.
                let idle = frames.is_empty();
                for fr in frames {
                    // The first frame may start before `next` only if the journal changed
                    // under us; the session asserts exact continuity.
                    if let Some(wait) = bucket.take(fr.bytes.len() as u64) {
                        tokio::time::sleep(wait).await;
                    }
                    // Counted as sent before the bytes go out: an ack for them can then never
                    // look premature, however the tasks interleave.
                    lock(sess).sent(&fr.header);
                    send.write_all(&message_header(wire::KIND_FRAME, &fr.bytes))
                        .await?;
                    let len = fr.bytes.len() as u64;
                    // Handed over, not copied into quinn's send buffer (ship-bench: one pass
                    // over every shipped byte less).
                    send.write_chunk(bytes::Bytes::from(fr.bytes)).await?;
                    tracing::trace!(
                        replica = name,
                        first_seq = fr.header.first_seq,
                        last_seq = fr.header.last_seq(),
                        "frame sent"
                    );
                    ctx.metrics.bytes_sent.fetch_add(len, Ordering::Relaxed);
                    ctx.metrics.frames_sent.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = lock(&ctx.metrics.replicas).get_mut(name) {
                        r.sent_seq = fr.header.last_seq();
                        r.bytes_sent += len;
                    }
                }
                if !idle {
                    last_send = Instant::now();
                    continue;
                }
            }
            let hb_at = last_send + Duration::from_millis(HEARTBEAT_INTERVAL_MS);
            tokio::select! {
                r = durable_rx.changed() => {
                    if r.is_err() { return Ok(()); }
                }
                _ = tokio::time::sleep_until(hb_at.into()) => {
                    let m = ctx.reader.meta()?;
                    write_message(&mut send, &Message::Heartbeat(wire::Heartbeat {
                        durable_seq: durable,
                        durable_time_ns: m.durable_time_ns,
                        sent_time_ns: now_ns(),
                    })).await?;
                    last_send = Instant::now();
                }
                e = conn.closed() => {
                    return Err(SessionError::Conn(e));
                }
            }
        }
    }
    .await;
    match result {
        Err(SessionError::Conn(quinn::ConnectionError::ApplicationClosed(_))) | Ok(()) => {}
        Err(e) => {
            ack_task.abort();
            return Err(e);
        }
    }
    match ack_task.await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// A token bucket for the optional bandwidth limit (burst: one second of rate).
struct TokenBucket {
    rate: Option<u64>,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: Option<u64>) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: rate.unwrap_or(0) as f64,
            at: Instant::now(),
        }
    }

    /// Takes `n` bytes; returns how long to wait first if the bucket runs dry.
    fn take(&mut self, n: u64) -> Option<Duration> {
        let rate = self.rate? as f64;
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            None
        } else {
            Some(Duration::from_secs_f64(-self.tokens / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_paces_to_the_rate() {
        let mut b = TokenBucket::new(Some(1000));
        assert_eq!(b.take(1000), None, "one second of burst");
        let w = b.take(500).unwrap();
        assert!(
            w >= Duration::from_millis(490) && w <= Duration::from_millis(510),
            "{w:?}"
        );
        assert_eq!(TokenBucket::new(None).take(u64::MAX), None);
    }

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = Metrics::default();
        m.note_durable(10);
        m.count_failure("unknown_ca");
        lock(&m.replicas).insert(
            "r\"1".into(),
            ReplicaStatus {
                connected: true,
                acked_seq: 4,
                ..Default::default()
            },
        );
        let t = m.render();
        assert!(
            t.contains("foxing_shipper_replica_lag_seq{replica=\"r\\\"1\"} 6"),
            "{t}"
        );
        assert!(t.contains("foxing_shipper_handshake_failures_total{reason=\"unknown_ca\"} 1"));
        assert!(t.contains("foxing_shipper_replicas_connected 1"));
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<f64>().unwrap();
        }
    }
}
