//! Apply throughput, compared in the same run with writing the same bytes directly.
//!
//!     cargo bench -p foxing-applier --bench apply [-- --quick]
//!
//! Works in $FOXING_BENCH_DIR (default target/bench-apply), removed at the end unless
//! $FOXING_BENCH_KEEP is set (to profile `foxing-applier` on its journals). Prints a Markdown table.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foxing_applier::fs::FsTree;
use foxing_applier::run::{Engine, JournalSource};
use foxing_applier::state::State;
use foxing_journal::{Journal, JournalOptions, JournalReader};
use foxing_proto::{Event, Op, RelPath, Writer};

const FILES: u64 = 8;

fn payload_events(total_bytes: u64, block: usize) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut data = vec![0u8; block];
    let mut ev = Vec::new();
    for f in 0..FILES {
        ev.push(Event {
            time_ns: 1,
            writer: Writer::default(),
            op: Op::Create {
                path: RelPath::new(format!("f{f}")),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        });
    }
    let per_file = total_bytes / FILES;
    for i in 0..total_bytes / block as u64 {
        rng.fill(&mut data);
        let f = i % FILES;
        let off = (i / FILES) * block as u64 % per_file;
        ev.push(Event {
            time_ns: 2,
            writer: Writer::default(),
            op: Op::Write {
                path: RelPath::new(format!("f{f}")),
                offset: off,
                data: data.clone(),
            },
        });
    }
    ev
}

fn small_events(n: u64) -> Vec<Event> {
    let mut ev = vec![Event {
        time_ns: 1,
        writer: Writer::default(),
        op: Op::Mkdir {
            path: RelPath::new("d"),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    }];
    for i in 0..n / 4 {
        let p = RelPath::new(format!("d/f{i}"));
        ev.push(Event {
            time_ns: 2,
            writer: Writer::default(),
            op: Op::Create {
                path: p.clone(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        });
        ev.push(Event {
            time_ns: 2,
            writer: Writer::default(),
            op: Op::Write {
                path: p.clone(),
                offset: 0,
                data: b"hello, replica\n".to_vec(),
            },
        });
        ev.push(Event {
            time_ns: 2,
            writer: Writer::default(),
            op: Op::Chmod {
                path: p.clone(),
                mode: 0o600,
            },
        });
        ev.push(Event {
            time_ns: 2,
            writer: Writer::default(),
            op: Op::Rename {
                from: p,
                to: RelPath::new(format!("d/g{i}")),
                flags: 0,
            },
        });
    }
    ev
}

fn make_journal(dir: &Path, events: Vec<Event>) {
    let mut j = Journal::open(
        dir,
        JournalOptions {
            fsync_window: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .unwrap();
    for chunk in events.chunks(256) {
        j.append(chunk.to_vec()).unwrap();
    }
    j.sync().unwrap();
}

/// Applies the journal into a fresh root; returns seconds including the final syncfs.
fn apply(jdir: &Path, work: &Path) -> f64 {
    let root = work.join("root");
    let state = work.join("state");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&root).unwrap();
    let reader = JournalReader::open(jdir).unwrap();
    let t = Instant::now();
    let (st, resume) = State::open(&state).unwrap();
    let mut e = Engine::new(FsTree::open(&root).unwrap(), st, resume, None);
    let mut src = JournalSource {
        reader: &reader,
        poll: Duration::from_millis(1),
    };
    e.catch_up(&mut src, u64::MAX, |_, _| {}).unwrap();
    e.durable().unwrap();
    t.elapsed().as_secs_f64()
}

/// Writes the same payload directly (pwrite per block, syncfs at the end).
fn direct_payload(work: &Path, total_bytes: u64, block: usize) -> f64 {
    let root = work.join("direct");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut data = vec![0u8; block];
    let per_file = total_bytes / FILES;
    let t = Instant::now();
    let files: Vec<std::fs::File> = (0..FILES)
        .map(|f| std::fs::File::create(root.join(format!("f{f}"))).unwrap())
        .collect();
    for i in 0..total_bytes / block as u64 {
        rng.fill(&mut data);
        let f = i % FILES;
        files[f as usize]
            .write_all_at(&data, (i / FILES) * block as u64 % per_file)
            .unwrap();
    }
    rustix::fs::syncfs(&files[0]).unwrap();
    t.elapsed().as_secs_f64()
}

fn direct_small(work: &Path, n: u64) -> f64 {
    let root = work.join("direct-small");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let t = Instant::now();
    let d = root.join("d");
    std::fs::create_dir(&d).unwrap();
    for i in 0..n / 4 {
        let p = d.join(format!("f{i}"));
        let f = std::fs::File::create(&p).unwrap();
        f.write_all_at(b"hello, replica\n", 0).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::rename(&p, d.join(format!("g{i}"))).unwrap();
    }
    rustix::fs::syncfs(std::fs::File::open(&root).unwrap()).unwrap();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

/// Waits for the machine's disk to settle after a measured run.
fn settle() {
    rustix::fs::sync();
    std::thread::sleep(Duration::from_secs(2));
}

fn main() {
    foxing_applier::tune_allocator(); // as foxing-applier does
    let quick = std::env::args().any(|a| a == "--quick");
    let work = std::env::var_os("FOXING_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-apply"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (total, small_n) = if quick {
        (64u64 << 20, 20_000u64)
    } else {
        (1u64 << 30, 200_000u64)
    };
    let block = 64 << 10;

    // The disk's speed drifts by 2-3x within minutes on this VM, and a run right after another
    // pays for the host flushing the first one's writes: each side runs `rounds` times,
    // interleaved with the order alternating, after a settling pause, and the medians (of an
    // even count: the mean of the middle two) are compared.
    let rounds: u32 = if quick { 1 } else { 4 };
    let j1 = work.join("j-payload");
    make_journal(&j1, payload_events(total, block));
    let j2 = work.join("j-small");
    let small_records = small_events(small_n).len() as f64;
    make_journal(&j2, small_events(small_n));
    let (mut direct, mut applied, mut direct_s, mut applied_s) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let mut d = || {
            settle();
            direct.push(direct_payload(&work, total, block));
            settle();
            direct_s.push(direct_small(&work, small_n));
        };
        let mut a = || {
            settle();
            applied.push(apply(&j1, &work));
            settle();
            applied_s.push(apply(&j2, &work.join("small")));
        };
        if round.is_multiple_of(2) {
            d();
            a();
        } else {
            a();
            d();
        }
    }
    let ratios = |d: &[f64], a: &[f64]| {
        d.iter()
            .zip(a)
            .map(|(d, a)| format!("{:.2}", d / a))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let per_round = ratios(&direct, &applied);
    let per_round_s = ratios(&direct_s, &applied_s);
    let (direct, applied, direct_s, applied_s) = (
        median(direct),
        median(applied),
        median(direct_s),
        median(applied_s),
    );

    let mb = total as f64 / 1e6;
    println!("directory: {}", work.display());
    println!();
    println!("| workload (median of {rounds}, interleaved) | apply | direct (same bytes/ops, same run) | ratio of medians | ratio per round | goal |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} MiB of 64 KiB random writes over {FILES} files | {:.0} MB/s, {:.0} records/s | {:.0} MB/s | {:.2}x | {per_round} | >= 0.8x |",
        total >> 20,
        mb / applied,
        (total / block as u64) as f64 / applied,
        mb / direct,
        direct / applied
    );
    println!(
        "| {} small records (create, write 15 B, chmod, rename) | {:.0} records/s | {:.0} ops/s | {:.2}x | {per_round_s} | >= 0.8x |",
        small_records as u64,
        small_records / applied_s,
        small_records / direct_s,
        direct_s / applied_s
    );
    if std::env::var_os("FOXING_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
}
