//! Foxing's shared vocabulary: the record model, the frame codec and the wire protocol.
//!
//! Pure logic only: no file or network I/O, no async, deterministic. Everything that crosses a
//! process boundary is specified byte by byte in docs/journal-format.md and docs/wire-protocol.md.

pub mod frame;
pub mod record;
pub mod time;
pub mod wire;

pub use frame::{decode_frame, encode_frame, FrameError, FrameHeader};
pub use record::{
    EntryKind, EntryMeta, Event, GapReason, Op, Record, RelPath, SyncKind, Writer, Xattr,
    MAX_FILE_BYTES,
};
