//! Child process for the journal crash test: appends `synth_event`s forever with a given fsync
//! window and prints `durable SEQ SEGMENT OFFSET` on stdout after every group commit, until
//! killed.

use std::io::Write;
use std::time::Duration;

use foxing_journal::{Journal, JournalOptions};
use foxing_tests::synth_event;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: crash-writer DIR WINDOW_MS SEED [PAUSE_MS]"))?;
    let window_ms: u64 = args.next().unwrap_or_else(|| "2".into()).parse()?;
    let seed: u64 = args.next().unwrap_or_else(|| "1".into()).parse()?;
    // Optional pause between batches (ms), to pace a long-running source journal.
    let pause_ms: u64 = args.next().unwrap_or_else(|| "0".into()).parse()?;
    let opts = JournalOptions {
        fsync_window: Duration::from_millis(window_ms),
        segment_size_bytes: 256 << 10,
        ..Default::default()
    };
    let mut j = Journal::open(&dir, opts)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready {}", j.next_seq())?;
    out.flush()?;
    let mut reported = j.durable_seq();
    loop {
        let n = rng.u64(1..50);
        let first = j.next_seq();
        j.append((first..first + n).map(synth_event).collect())?;
        if rng.u8(..20) == 0 {
            j.sync()?;
        }
        if pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(pause_ms));
            j.maybe_sync()?;
        }
        if j.durable_seq() > reported {
            reported = j.durable_seq();
            let (seg, off) = j.position();
            writeln!(out, "durable {reported} {seg} {off}")?;
            out.flush()?;
        }
    }
}
