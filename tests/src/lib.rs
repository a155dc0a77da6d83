//! Helpers shared by the end-to-end tests: deterministic workloads and child processes.

use std::path::Path;

use foxing_proto::{Event, Op, RelPath, SyncKind, Writer};

/// The event the crash-test writer appends at `seq`: a deterministic function of `seq`, so a
/// reader can check any journal prefix byte for byte. Payloads range from 0 to 64 KiB.
pub fn synth_event(seq: u64) -> Event {
    let mut rng = fastrand::Rng::with_seed(seq);
    let path = RelPath::new(format!("d{}/f{}", rng.u8(..8), rng.u16(..500)));
    let op = match rng.u8(..10) {
        0..=5 => {
            let len = if rng.u8(..10) == 0 {
                rng.usize(..65536)
            } else {
                rng.usize(..512)
            };
            let mut data = vec![0u8; len];
            if rng.bool() {
                rng.fill(&mut data);
            } else {
                data.fill(rng.u8(..));
            }
            Op::Write {
                path,
                offset: rng.u64(..1 << 30),
                data,
            }
        }
        6 => Op::Truncate {
            path,
            size: rng.u64(..1 << 20),
        },
        7 => Op::Sync {
            path: Some(path),
            kind: SyncKind::Fsync,
        },
        8 => Op::Rename {
            from: path,
            to: RelPath::new(format!("r{}", rng.u32(..))),
            flags: 0,
        },
        _ => Op::Chmod {
            path,
            mode: 0o600 | rng.u32(..0o77),
        },
    };
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"test");
    Event {
        time_ns: 1_790_000_000_000_000_000 + seq * 1_000,
        writer: Writer {
            pid: 42,
            tgid: 42,
            comm,
            ..Default::default()
        },
        op,
    }
}

/// Where the durable part of a crashed journal ends, as its index last committed it: (segment
/// first seq, byte offset). Opens the index writable so redb repairs it; the segments are not
/// touched. Used to simulate a power cut, which may drop only bytes past this point.
pub fn durable_end(jdir: &Path) -> anyhow::Result<Option<(u64, u64)>> {
    use foxing_journal::index::{FRAMES, META, META_DURABLE_SEQ};
    use redb::ReadableDatabase;
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(foxing_journal::Layout::new(jdir).index)?;
    let r = db.begin_read()?;
    let durable = r
        .open_table(META)?
        .get(META_DURABLE_SEQ)?
        .map(|v| v.value())
        .unwrap_or(0);
    let frames = r.open_table(FRAMES)?;
    let last = frames.range(..=durable)?.next_back().transpose()?;
    Ok(last.map(|(_, v)| {
        let (seg, off, len, _, _) = v.value();
        (seg, off + len as u64)
    }))
}
