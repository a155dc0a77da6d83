//! The replication wire protocol: messages, their codec, and the handshake and streaming rules of
//! both peers as pure state machines (no I/O: the shipper and the applier feed them bytes and
//! messages and act on what they return). Specified byte by byte in docs/wire-protocol.md.
//!
//! One QUIC bidirectional stream per session, opened by the replica. Every message is a 12-byte
//! header (kind, flags, reserved, payload length, crc32c) and a payload. The replica sends Hello,
//! the shipper answers Welcome or Refuse; then the shipper sends Frame and Heartbeat messages and
//! the replica sends Ack messages.

use crate::frame::{FrameHeader, FRAME_HEADER_LEN, MAX_FRAME_BODY_BYTES};

/// TLS application protocol name (ALPN).
pub const ALPN: &[u8] = b"foxing/1";
/// The wire protocol version this build speaks.
pub const WIRE_VERSION: u16 = 1;
/// Oldest wire protocol version this build still speaks.
pub const WIRE_VERSION_MIN: u16 = 1;
pub const MESSAGE_HEADER_LEN: usize = 12;
/// Largest payload accepted: one frame of the largest size the frame codec allows.
pub const MAX_MESSAGE_PAYLOAD_BYTES: usize = FRAME_HEADER_LEN + MAX_FRAME_BODY_BYTES;
/// Longest replica name (bytes) in a Hello.
pub const MAX_NAME_BYTES: usize = 253;
/// Longest human-readable reason in a Refuse (bytes); longer ones are cut on encode.
pub const MAX_REASON_BYTES: usize = 1024;

pub const KIND_HELLO: u8 = 1;
pub const KIND_WELCOME: u8 = 2;
pub const KIND_REFUSE: u8 = 3;
pub const KIND_FRAME: u8 = 4;
pub const KIND_HEARTBEAT: u8 = 5;
pub const KIND_ACK: u8 = 6;

/// Why a shipper refused a replica (Refuse.code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseCode {
    /// No wire version in common.
    Version,
    /// The replica holds records of another journal (journal id differs).
    WrongJournal,
    /// The replica needs records the shipper no longer holds (pruned): it needs a new base.
    Behind,
    /// The replica claims records the shipper never had.
    Ahead,
    /// The replica name is not one its certificate is valid for.
    Name,
    /// The message broke the protocol.
    Protocol,
    /// The shipper is shutting down or failed; retry later.
    Unavailable,
    /// A code this build does not know (from a newer peer).
    Other(u16),
}

impl RefuseCode {
    pub fn code(self) -> u16 {
        match self {
            RefuseCode::Version => 1,
            RefuseCode::WrongJournal => 2,
            RefuseCode::Behind => 3,
            RefuseCode::Ahead => 4,
            RefuseCode::Name => 5,
            RefuseCode::Protocol => 6,
            RefuseCode::Unavailable => 7,
            RefuseCode::Other(c) => c,
        }
    }

    pub fn from_code(c: u16) -> RefuseCode {
        match c {
            1 => RefuseCode::Version,
            2 => RefuseCode::WrongJournal,
            3 => RefuseCode::Behind,
            4 => RefuseCode::Ahead,
            5 => RefuseCode::Name,
            6 => RefuseCode::Protocol,
            7 => RefuseCode::Unavailable,
            c => RefuseCode::Other(c),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RefuseCode::Version => "version",
            RefuseCode::WrongJournal => "wrong_journal",
            RefuseCode::Behind => "behind_retention",
            RefuseCode::Ahead => "ahead_of_source",
            RefuseCode::Name => "name",
            RefuseCode::Protocol => "protocol",
            RefuseCode::Unavailable => "unavailable",
            RefuseCode::Other(_) => "other",
        }
    }

    /// Whether retrying later can help (the applier keeps reconnecting) or a person must act.
    pub fn retryable(self) -> bool {
        matches!(self, RefuseCode::Unavailable | RefuseCode::Other(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version_min: u16,
    pub version_max: u16,
    /// The replica's name; the shipper checks it against the client certificate.
    pub name: String,
    /// Journal id of the replica's archive; 0 for a new replica.
    pub journal_id: u64,
    /// The first seq the replica needs (its archive's next seq); 0 for a new replica.
    pub next_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub journal_id: u64,
    /// The first Frame sent starts exactly at this seq.
    pub start_seq: u64,
    /// A new replica applies from here (the begin of a base, or 1); else equal to start_seq.
    pub apply_from_seq: u64,
    /// Oldest seq the shipper still holds.
    pub first_seq: u64,
    pub durable_seq: u64,
    pub durable_time_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub durable_seq: u64,
    pub durable_time_ns: u64,
    /// Shipper's wall clock when sent (ns since the epoch).
    pub sent_time_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Every record up to this seq is fsynced in the replica's archive.
    pub archived_seq: u64,
    /// Applied to the replica tree (not necessarily durable there).
    pub applied_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Refuse {
        code: RefuseCode,
        reason: String,
    },
    /// One journal frame, byte for byte as stored.
    Frame(Vec<u8>),
    Heartbeat(Heartbeat),
    Ack(Ack),
}

impl Message {
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => KIND_HELLO,
            Message::Welcome(_) => KIND_WELCOME,
            Message::Refuse { .. } => KIND_REFUSE,
            Message::Frame(_) => KIND_FRAME,
            Message::Heartbeat(_) => KIND_HEARTBEAT,
            Message::Ack(_) => KIND_ACK,
        }
    }

    pub fn kind_name(kind: u8) -> &'static str {
        match kind {
            KIND_HELLO => "hello",
            KIND_WELCOME => "welcome",
            KIND_REFUSE => "refuse",
            KIND_FRAME => "frame",
            KIND_HEARTBEAT => "heartbeat",
            KIND_ACK => "ack",
            _ => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message header: unknown kind {0}")]
    Kind(u8),
    #[error("message header: flags {flags:#x} / reserved {reserved:#x} must be zero")]
    Reserved { flags: u8, reserved: u16 },
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLong { len: u64, max: u64 },
    #[error("{kind} message: crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc {
        kind: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("{kind} message: {what}")]
    Payload { kind: &'static str, what: String },
    #[error("{kind} message: {frame_seq_err}")]
    Frame {
        kind: &'static str,
        frame_seq_err: String,
    },
}

fn payload_err(kind: u8, what: impl Into<String>) -> WireError {
    WireError::Payload {
        kind: Message::kind_name(kind),
        what: what.into(),
    }
}

/// The 12-byte message header for a payload of `payload` bytes of kind `kind`. The crc32c covers
/// header bytes 0..8 and the payload; `payload` is passed so frames need not be copied.
pub fn message_header(kind: u8, payload: &[u8]) -> [u8; MESSAGE_HEADER_LEN] {
    debug_assert!(payload.len() <= MAX_MESSAGE_PAYLOAD_BYTES);
    let mut h = [0u8; MESSAGE_HEADER_LEN];
    h[0] = kind;
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..8]), payload);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_str(b: &mut Vec<u8>, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_u16(b, end as u16);
    b.extend_from_slice(&s.as_bytes()[..end]);
}

/// The payload of a message (everything after the header). Frames are their own bytes.
pub fn encode_payload(m: &Message) -> Vec<u8> {
    let mut b = Vec::new();
    match m {
        Message::Hello(h) => {
            put_u16(&mut b, h.version_min);
            put_u16(&mut b, h.version_max);
            put_u64(&mut b, h.journal_id);
            put_u64(&mut b, h.next_seq);
            put_str(&mut b, &h.name, MAX_NAME_BYTES);
        }
        Message::Welcome(w) => {
            put_u16(&mut b, w.version);
            put_u64(&mut b, w.journal_id);
            put_u64(&mut b, w.start_seq);
            put_u64(&mut b, w.apply_from_seq);
            put_u64(&mut b, w.first_seq);
            put_u64(&mut b, w.durable_seq);
            put_u64(&mut b, w.durable_time_ns);
        }
        Message::Refuse { code, reason } => {
            put_u16(&mut b, code.code());
            put_str(&mut b, reason, MAX_REASON_BYTES);
        }
        Message::Frame(f) => b.extend_from_slice(f),
        Message::Heartbeat(h) => {
            put_u64(&mut b, h.durable_seq);
            put_u64(&mut b, h.durable_time_ns);
            put_u64(&mut b, h.sent_time_ns);
        }
        Message::Ack(a) => {
            put_u64(&mut b, a.archived_seq);
            put_u64(&mut b, a.applied_seq);
        }
    }
    b
}

/// A whole message: header and payload.
pub fn encode_message(m: &Message) -> Vec<u8> {
    let payload = encode_payload(m);
    let mut out = Vec::with_capacity(MESSAGE_HEADER_LEN + payload.len());
    out.extend_from_slice(&message_header(m.kind(), &payload));
    out.extend_from_slice(&payload);
    out
}

struct Cursor<'a> {
    kind: u8,
    b: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.b.len() < n {
            return Err(payload_err(self.kind, "payload too short"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, max: usize, what: &str) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(payload_err(
                self.kind,
                format!("{what} of {n} bytes is over {max}"),
            ));
        }
        let s = self.take(n)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| payload_err(self.kind, format!("{what} is not UTF-8")))
    }
    fn end(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(payload_err(
                self.kind,
                format!("{} unexpected bytes at the end", self.b.len()),
            ))
        }
    }
}

/// Checks a message header; returns (kind, payload length).
pub fn parse_header(h: &[u8; MESSAGE_HEADER_LEN]) -> Result<(u8, usize), WireError> {
    let kind = h[0];
    if !(KIND_HELLO..=KIND_ACK).contains(&kind) {
        return Err(WireError::Kind(kind));
    }
    let reserved = u16::from_le_bytes([h[2], h[3]]);
    if h[1] != 0 || reserved != 0 {
        return Err(WireError::Reserved {
            flags: h[1],
            reserved,
        });
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_MESSAGE_PAYLOAD_BYTES {
        return Err(WireError::TooLong {
            len: len as u64,
            max: MAX_MESSAGE_PAYLOAD_BYTES as u64,
        });
    }
    Ok((kind, len))
}

/// Decodes a payload of a message whose header passed [`parse_header`], checking the crc.
pub fn decode_payload(
    h: &[u8; MESSAGE_HEADER_LEN],
    payload: Vec<u8>,
) -> Result<Message, WireError> {
    let (kind, len) = parse_header(h)?;
    if payload.len() != len {
        return Err(payload_err(
            kind,
            format!("payload is {} bytes, header says {len}", payload.len()),
        ));
    }
    let stored = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let computed = crc32c::crc32c_append(crc32c::crc32c(&h[..8]), &payload);
    if stored != computed {
        return Err(WireError::Crc {
            kind: Message::kind_name(kind),
            stored,
            computed,
        });
    }
    if kind == KIND_FRAME {
        // The envelope crc covered the bytes in transit; the frame's own crc and body are
        // checked where the frame is stored (`Journal::append_frame`).
        let fh = FrameHeader::parse(&payload).map_err(|e| WireError::Frame {
            kind: "frame",
            frame_seq_err: e.to_string(),
        })?;
        if fh.frame_len() != payload.len() {
            return Err(payload_err(
                kind,
                "frame length differs from the message length",
            ));
        }
        return Ok(Message::Frame(payload));
    }
    let mut c = Cursor { kind, b: &payload };
    let m = match kind {
        KIND_HELLO => Message::Hello(Hello {
            version_min: c.u16()?,
            version_max: c.u16()?,
            journal_id: c.u64()?,
            next_seq: c.u64()?,
            name: c.string(MAX_NAME_BYTES, "name")?,
        }),
        KIND_WELCOME => Message::Welcome(Welcome {
            version: c.u16()?,
            journal_id: c.u64()?,
            start_seq: c.u64()?,
            apply_from_seq: c.u64()?,
            first_seq: c.u64()?,
            durable_seq: c.u64()?,
            durable_time_ns: c.u64()?,
        }),
        KIND_REFUSE => Message::Refuse {
            code: RefuseCode::from_code(c.u16()?),
            reason: c.string(MAX_REASON_BYTES, "reason")?,
        },
        KIND_HEARTBEAT => Message::Heartbeat(Heartbeat {
            durable_seq: c.u64()?,
            durable_time_ns: c.u64()?,
            sent_time_ns: c.u64()?,
        }),
        KIND_ACK => Message::Ack(Ack {
            archived_seq: c.u64()?,
            applied_seq: c.u64()?,
        }),
        k => return Err(WireError::Kind(k)),
    };
    c.end()?;
    Ok(m)
}

/// Splits a byte stream into messages. Copies each payload byte once (into the message's own
/// buffer, sized from the checked header) and holds at most one message.
#[derive(Default)]
pub struct MessageDecoder {
    header: [u8; MESSAGE_HEADER_LEN],
    header_len: usize,
    payload: Vec<u8>,
    /// Payload length of the message being read, once its header is in and checked.
    want: Option<usize>,
    /// Whole messages decoded from the bytes pushed so far, in order.
    ready: std::collections::VecDeque<Result<Message, WireError>>,
    failed: bool,
}

impl MessageDecoder {
    pub fn new() -> MessageDecoder {
        MessageDecoder::default()
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed {
            match self.want {
                None => {
                    let n = (MESSAGE_HEADER_LEN - self.header_len).min(bytes.len());
                    self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                    self.header_len += n;
                    bytes = &bytes[n..];
                    if self.header_len == MESSAGE_HEADER_LEN {
                        match parse_header(&self.header) {
                            Ok((_, len)) => {
                                self.want = Some(len);
                                self.payload = Vec::with_capacity(len);
                            }
                            Err(e) => {
                                self.failed = true;
                                self.ready.push_back(Err(e));
                            }
                        }
                    }
                }
                Some(len) => {
                    let n = (len - self.payload.len()).min(bytes.len());
                    self.payload.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                }
            }
            if self.want.is_some_and(|len| self.payload.len() == len) {
                let m = decode_payload(&self.header, std::mem::take(&mut self.payload));
                self.failed = m.is_err();
                self.ready.push_back(m);
                self.want = None;
                self.header_len = 0;
            }
        }
    }

    /// Bytes held that do not form a whole message yet.
    pub fn buffered(&self) -> usize {
        self.header_len + self.payload.len()
    }

    /// The next whole message, if one was received. After an error the stream is unusable.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        self.ready.pop_front().transpose()
    }
}

/// What the shipper knows about its journal when a replica says Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalView {
    pub journal_id: u64,
    pub first_seq: u64,
    pub durable_seq: u64,
    pub durable_time_ns: u64,
    /// Where a new replica starts: the first seq of the frame holding `new_replica_apply_from`.
    pub new_replica_start: u64,
    /// Where a new replica starts applying: 1 if the journal is whole, else the begin of its
    /// oldest complete base.
    pub new_replica_apply_from: u64,
}

/// A protocol violation by the peer, with what to tell it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {reason}")]
pub struct Refusal {
    pub code: RefuseCode,
    pub reason: String,
}

fn refuse(code: RefuseCode, reason: String) -> Refusal {
    Refusal { code, reason }
}

/// The shipper's answer to a Hello. `name_ok` says whether the client certificate is valid for
/// the name in the Hello (checked by the caller with the TLS library).
pub fn answer_hello(h: &Hello, view: &JournalView, name_ok: bool) -> Result<Welcome, Refusal> {
    let version = h.version_max.min(WIRE_VERSION);
    if h.version_min > h.version_max || version < h.version_min.max(WIRE_VERSION_MIN) {
        return Err(refuse(
            RefuseCode::Version,
            format!(
                "replica speaks wire versions {}..={}, this shipper {}..={}",
                h.version_min, h.version_max, WIRE_VERSION_MIN, WIRE_VERSION
            ),
        ));
    }
    if !name_ok {
        return Err(refuse(
            RefuseCode::Name,
            format!(
                "the client certificate is not valid for the replica name {:?}",
                h.name
            ),
        ));
    }
    if h.journal_id != 0 && h.journal_id != view.journal_id {
        return Err(refuse(
            RefuseCode::WrongJournal,
            format!(
                "the replica holds journal {:016x}, this shipper serves journal {:016x}; re-seed the replica into a new --root and --state",
                h.journal_id, view.journal_id
            ),
        ));
    }
    let (start, apply_from) = if h.next_seq == 0 {
        (view.new_replica_start, view.new_replica_apply_from)
    } else {
        (h.next_seq, h.next_seq)
    };
    if start < view.first_seq {
        return Err(refuse(
            RefuseCode::Behind,
            format!(
                "the replica needs seq {start}, but the journal starts at seq {} (older records were pruned); re-seed the replica from a base",
                view.first_seq
            ),
        ));
    }
    if start > view.durable_seq.saturating_add(1) {
        return Err(refuse(
            RefuseCode::Ahead,
            format!(
                "the replica needs seq {start}, but the journal ends at seq {}: the replica is not from this journal's history",
                view.durable_seq
            ),
        ));
    }
    Ok(Welcome {
        version,
        journal_id: view.journal_id,
        start_seq: start,
        apply_from_seq: apply_from,
        first_seq: view.first_seq,
        durable_seq: view.durable_seq,
        durable_time_ns: view.durable_time_ns,
    })
}

/// The shipper's side of a session after Welcome: what was sent, what was acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShipperSession {
    /// Next seq to send.
    pub next_seq: u64,
    pub archived_seq: u64,
    pub applied_seq: u64,
}

impl ShipperSession {
    pub fn new(w: &Welcome) -> ShipperSession {
        let held = w.start_seq.saturating_sub(1);
        ShipperSession {
            next_seq: w.start_seq,
            archived_seq: held,
            applied_seq: 0,
        }
    }

    /// Records that the frame `h` was sent; it must continue the stream exactly.
    pub fn sent(&mut self, h: &FrameHeader) {
        assert_eq!(
            h.first_seq, self.next_seq,
            "shipper would send a frame out of order"
        );
        self.next_seq = h.last_seq() + 1;
    }

    /// A message from the replica. Returns the new archived seq when an Ack advanced it.
    pub fn on_message(&mut self, m: Message) -> Result<Option<u64>, Refusal> {
        match m {
            Message::Ack(a) => {
                if a.archived_seq >= self.next_seq {
                    return Err(refuse(
                        RefuseCode::Protocol,
                        format!(
                            "ack of seq {} but only seqs before {} were sent",
                            a.archived_seq, self.next_seq
                        ),
                    ));
                }
                if a.archived_seq < self.archived_seq {
                    return Err(refuse(
                        RefuseCode::Protocol,
                        format!(
                            "ack went back from seq {} to {}",
                            self.archived_seq, a.archived_seq
                        ),
                    ));
                }
                self.applied_seq = self.applied_seq.max(a.applied_seq.min(self.next_seq - 1));
                if a.archived_seq > self.archived_seq {
                    self.archived_seq = a.archived_seq;
                    return Ok(Some(a.archived_seq));
                }
                Ok(None)
            }
            other => Err(refuse(
                RefuseCode::Protocol,
                format!(
                    "unexpected {} message from a replica while streaming",
                    Message::kind_name(other.kind())
                ),
            )),
        }
    }
}

/// What the replica does with a message from the shipper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// Archive and apply this frame (its header is checked and continues the stream).
    Frame(FrameHeader, Vec<u8>),
    /// The shipper's journal state, for lag.
    Heartbeat(Heartbeat),
}

/// Why a session from the replica's side ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("the shipper refused this replica ({}): {reason}", code.name())]
    Refused { code: RefuseCode, reason: String },
    #[error("the shipper broke the protocol: {0}")]
    Protocol(String),
}

/// The replica's side of a session: the Hello it sent, then the stream of frames it expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSession {
    pub hello: Hello,
    pub welcome: Option<Welcome>,
    /// Seq the next frame must start at.
    pub next_seq: u64,
    pub source_durable_seq: u64,
    pub source_durable_time_ns: u64,
}

impl ReplicaSession {
    pub fn new(name: &str, journal_id: u64, next_seq: u64) -> ReplicaSession {
        ReplicaSession {
            hello: Hello {
                version_min: WIRE_VERSION_MIN,
                version_max: WIRE_VERSION,
                name: name.to_string(),
                journal_id,
                next_seq,
            },
            welcome: None,
            next_seq,
            source_durable_seq: 0,
            source_durable_time_ns: 0,
        }
    }

    pub fn hello_message(&self) -> Message {
        Message::Hello(self.hello.clone())
    }

    pub fn on_message(&mut self, m: Message) -> Result<Option<ReplicaEvent>, ReplicaError> {
        let proto = |s: String| Err(ReplicaError::Protocol(s));
        match (self.welcome.is_some(), m) {
            (_, Message::Refuse { code, reason }) => Err(ReplicaError::Refused { code, reason }),
            (false, Message::Welcome(w)) => {
                if w.version < self.hello.version_min || w.version > self.hello.version_max {
                    return proto(format!(
                        "welcome chose wire version {} that was not offered",
                        w.version
                    ));
                }
                if self.hello.journal_id != 0 && w.journal_id != self.hello.journal_id {
                    return proto(format!(
                        "welcome for journal {:016x}, the replica holds {:016x}",
                        w.journal_id, self.hello.journal_id
                    ));
                }
                if self.hello.next_seq != 0 && w.start_seq != self.hello.next_seq {
                    return proto(format!(
                        "welcome starts at seq {}, the replica asked for {}",
                        w.start_seq, self.hello.next_seq
                    ));
                }
                if w.start_seq == 0 || w.apply_from_seq < w.start_seq {
                    return proto(format!(
                        "welcome start seq {} / apply-from seq {} are inconsistent",
                        w.start_seq, w.apply_from_seq
                    ));
                }
                self.next_seq = w.start_seq;
                self.source_durable_seq = w.durable_seq;
                self.source_durable_time_ns = w.durable_time_ns;
                self.welcome = Some(w);
                Ok(None)
            }
            (true, Message::Frame(bytes)) => {
                let h = FrameHeader::parse(&bytes)
                    .map_err(|e| ReplicaError::Protocol(format!("bad frame: {e}")))?;
                if h.frame_len() != bytes.len() {
                    return proto("frame length differs from the message length".into());
                }
                if h.first_seq != self.next_seq {
                    return proto(format!(
                        "frame starts at seq {}, seq {} was expected",
                        h.first_seq, self.next_seq
                    ));
                }
                self.next_seq = h.last_seq() + 1;
                self.source_durable_seq = self.source_durable_seq.max(h.last_seq());
                Ok(Some(ReplicaEvent::Frame(h, bytes)))
            }
            (true, Message::Heartbeat(hb)) => {
                self.source_durable_seq = self.source_durable_seq.max(hb.durable_seq);
                self.source_durable_time_ns = self.source_durable_time_ns.max(hb.durable_time_ns);
                Ok(Some(ReplicaEvent::Heartbeat(hb)))
            }
            (established, m) => proto(format!(
                "unexpected {} message {}",
                Message::kind_name(m.kind()),
                if established {
                    "while streaming"
                } else {
                    "before welcome"
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use crate::record::{Op, Record, Writer};
    use proptest::prelude::*;

    fn frame(first: u64, n: u64) -> Vec<u8> {
        let recs: Vec<Record> = (first..first + n)
            .map(|seq| Record {
                seq,
                time_ns: seq * 10,
                writer: Writer::default(),
                op: Op::Sync {
                    path: None,
                    kind: crate::SyncKind::Fsync,
                },
            })
            .collect();
        encode_frame(&recs, 1).unwrap()
    }

    fn view() -> JournalView {
        JournalView {
            journal_id: 7,
            first_seq: 1,
            durable_seq: 100,
            durable_time_ns: 5,
            new_replica_start: 1,
            new_replica_apply_from: 1,
        }
    }

    fn roundtrip(m: &Message) -> Message {
        let mut d = MessageDecoder::new();
        let bytes = encode_message(m);
        // Byte by byte: no message is returned before it is whole.
        for (i, b) in bytes.iter().enumerate() {
            d.push(std::slice::from_ref(b));
            if i + 1 < bytes.len() {
                assert_eq!(d.next_message().unwrap(), None);
            }
        }
        let got = d.next_message().unwrap().unwrap();
        assert_eq!(d.buffered(), 0);
        got
    }

    #[test]
    fn every_message_roundtrips() {
        let msgs = [
            Message::Hello(Hello {
                version_min: 1,
                version_max: 3,
                name: "replica-1".into(),
                journal_id: u64::MAX,
                next_seq: 42,
            }),
            Message::Welcome(Welcome {
                version: 1,
                journal_id: 9,
                start_seq: 3,
                apply_from_seq: 5,
                first_seq: 1,
                durable_seq: 77,
                durable_time_ns: 123,
            }),
            Message::Refuse {
                code: RefuseCode::Behind,
                reason: "pruned".into(),
            },
            Message::Refuse {
                code: RefuseCode::Other(999),
                reason: String::new(),
            },
            Message::Frame(frame(1, 3)),
            Message::Heartbeat(Heartbeat {
                durable_seq: 1,
                durable_time_ns: 2,
                sent_time_ns: 3,
            }),
            Message::Ack(Ack {
                archived_seq: 4,
                applied_seq: 5,
            }),
        ];
        for m in &msgs {
            assert_eq!(&roundtrip(m), m);
        }
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let bytes = encode_message(&Message::Ack(Ack {
            archived_seq: 1,
            applied_seq: 1,
        }));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let mut d = MessageDecoder::new();
            d.push(&b);
            // A flipped length byte may leave the message incomplete; anything else must fail.
            match d.next_message() {
                Ok(None) => assert!((4..8).contains(&i), "byte {i}"),
                Ok(Some(m)) => panic!("flip at byte {i} decoded as {m:?}"),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut h = message_header(KIND_FRAME, &[]);
        h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut d = MessageDecoder::new();
        d.push(&h);
        assert!(matches!(d.next_message(), Err(WireError::TooLong { .. })));
    }

    #[test]
    fn hello_answers() {
        let h = |journal_id, next_seq| Hello {
            version_min: 1,
            version_max: 1,
            name: "r".into(),
            journal_id,
            next_seq,
        };
        let w = answer_hello(&h(0, 0), &view(), true).unwrap();
        assert_eq!((w.start_seq, w.apply_from_seq), (1, 1));
        assert_eq!(
            answer_hello(&h(7, 50), &view(), true).unwrap().start_seq,
            50
        );
        assert_eq!(
            answer_hello(&h(7, 101), &view(), true).unwrap().start_seq,
            101
        );
        let code = |r: Result<Welcome, Refusal>| r.unwrap_err().code;
        assert_eq!(
            code(answer_hello(&h(7, 102), &view(), true)),
            RefuseCode::Ahead
        );
        assert_eq!(
            code(answer_hello(&h(8, 5), &view(), true)),
            RefuseCode::WrongJournal
        );
        assert_eq!(
            code(answer_hello(&h(7, 5), &view(), false)),
            RefuseCode::Name
        );
        let mut v = view();
        v.first_seq = 10;
        v.new_replica_start = 12;
        v.new_replica_apply_from = 14;
        assert_eq!(code(answer_hello(&h(7, 5), &v, true)), RefuseCode::Behind);
        let w = answer_hello(&h(0, 0), &v, true).unwrap();
        assert_eq!((w.start_seq, w.apply_from_seq), (12, 14));
        let mut old = h(0, 0);
        old.version_min = 2;
        old.version_max = 5;
        assert_eq!(code(answer_hello(&old, &view(), true)), RefuseCode::Version);
    }

    #[test]
    fn replica_session_checks_the_stream() {
        let mut s = ReplicaSession::new("r", 7, 4);
        assert!(
            s.on_message(Message::Frame(frame(4, 1))).is_err(),
            "frame before welcome"
        );
        let mut s = ReplicaSession::new("r", 7, 4);
        let mut w = answer_hello(&s.hello, &view(), true).unwrap();
        s.on_message(Message::Welcome(w.clone())).unwrap();
        assert!(matches!(
            s.on_message(Message::Frame(frame(4, 2))).unwrap(),
            Some(ReplicaEvent::Frame(_, _))
        ));
        assert_eq!(s.next_seq, 6);
        assert!(
            s.on_message(Message::Frame(frame(4, 2))).is_err(),
            "replayed frame"
        );
        assert!(
            s.on_message(Message::Frame(frame(7, 1))).is_err(),
            "skipped seq"
        );
        let mut s = ReplicaSession::new("r", 7, 4);
        w.start_seq = 3;
        assert!(
            s.on_message(Message::Welcome(w)).is_err(),
            "start not asked for"
        );
    }

    #[test]
    fn shipper_session_checks_acks() {
        let w = answer_hello(
            &Hello {
                version_min: 1,
                version_max: 1,
                name: "r".into(),
                journal_id: 7,
                next_seq: 10,
            },
            &view(),
            true,
        )
        .unwrap();
        let mut s = ShipperSession::new(&w);
        let ack = |a| {
            Message::Ack(Ack {
                archived_seq: a,
                applied_seq: a,
            })
        };
        assert!(s.clone().on_message(ack(10)).is_err(), "ack of unsent seq");
        let f = frame(10, 5);
        s.sent(&crate::frame::check_frame(&f).unwrap());
        assert_eq!(s.on_message(ack(12)).unwrap(), Some(12));
        assert_eq!(s.on_message(ack(12)).unwrap(), None);
        assert!(s.clone().on_message(ack(11)).is_err(), "ack went back");
        assert!(s.on_message(Message::Frame(frame(1, 1))).is_err());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut d = MessageDecoder::new();
            for c in &chunks {
                d.push(c);
                while let Ok(Some(_)) = d.next_message() {}
            }
        }

        #[test]
        fn hello_roundtrips(name in "[a-z0-9.-]{0,40}", id in any::<u64>(), seq in any::<u64>(), a in any::<u16>(), b in any::<u16>()) {
            let m = Message::Hello(Hello { version_min: a, version_max: b, name, journal_id: id, next_seq: seq });
            prop_assert_eq!(roundtrip(&m), m);
        }
    }
}
