//! Append-path benchmark, compared in the same run with the disk's own sequential write speed.
//!
//!     cargo bench -p foxing-journal --bench append [-- --quick]
//!
//! Writes into $FOXING_BENCH_DIR (default: target/bench-journal, i.e. the disk the build is on).
//! Prints a Markdown table for docs/benchmarks.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use foxing_journal::{Journal, JournalOptions};
use foxing_proto::{Event, Op, RelPath, Writer};

fn disk_seq_write_mb_s(dir: &Path, total_bytes: usize) -> f64 {
    let path = dir.join("disk-baseline.bin");
    let chunk = vec![0xa5u8; 1 << 20];
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..total_bytes / chunk.len() {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();
    total_bytes as f64 / secs / 1e6
}

fn writer() -> Writer {
    Writer {
        pid: 4242,
        tgid: 4242,
        uid: 999,
        gid: 999,
        cgroup_id: 1234,
        comm: *b"postgres\0\0\0\0\0\0\0\0",
    }
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Small metadata records (chmod/rename/truncate with short paths), appended in batches as the
/// recorder does, group commit every 5 ms. Returns records/s including the final fsync.
fn small_records_per_s(dir: &Path, n: u64, batch: u64) -> f64 {
    let jdir = fresh(dir, "small");
    let mut j = Journal::open(&jdir, JournalOptions::default()).unwrap();
    let w = writer();
    // Build the events first: the recorder hands the journal ready events; we time the journal.
    let mut batches = Vec::new();
    let mut seq = 0u64;
    while seq < n {
        let events: Vec<Event> = (seq..seq + batch)
            .map(|i| Event {
                time_ns: 1_790_000_000_000_000_000 + i * 500,
                writer: w.clone(),
                op: match i % 3 {
                    0 => Op::Chmod {
                        path: RelPath::new(format!("base/16384/{}", 1000 + i % 5000)),
                        mode: 0o600,
                    },
                    1 => Op::Truncate {
                        path: RelPath::new(format!("pg_wal/{:024X}", i % 64)),
                        size: i * 8192,
                    },
                    _ => Op::Rename {
                        from: RelPath::new("pg_stat_tmp/global.tmp"),
                        to: RelPath::new("pg_stat_tmp/global.stat"),
                        flags: 0,
                    },
                },
            })
            .collect();
        batches.push(events);
        seq += batch;
    }
    let t = Instant::now();
    for events in batches {
        j.append(events).unwrap();
    }
    j.sync().unwrap();
    let secs = t.elapsed().as_secs_f64();
    drop(j);
    std::fs::remove_dir_all(&jdir).unwrap();
    n as f64 / secs
}

/// 64 KiB write records, `random` (incompressible) or text-like (compressible). Returns
/// (payload MB/s, journal bytes on disk / payload bytes).
fn payload_mb_s(dir: &Path, n: u64, random: bool, window_ms: u64) -> (f64, f64) {
    let jdir = fresh(dir, "payload");
    let opts = JournalOptions {
        fsync_window: std::time::Duration::from_millis(window_ms),
        ..Default::default()
    };
    let mut j = Journal::open(&jdir, opts).unwrap();
    let w = writer();
    let mut rng = fastrand::Rng::with_seed(7);
    let blocks: Vec<Vec<u8>> = (0..64)
        .map(|b| {
            let mut v = vec![0u8; 65536];
            if random {
                rng.fill(&mut v);
            } else {
                for (i, x) in v.iter_mut().enumerate() {
                    *x = b"INSERT INTO accounts VALUES (42, 'alice', 1000.00);\n"[(i + b) % 52]
                        ^ ((i / 4096) as u8 & 1);
                }
            }
            v
        })
        .collect();
    let events: Vec<Event> = (0..n)
        .map(|i| Event {
            time_ns: 1_790_000_000_000_000_000 + i,
            writer: w.clone(),
            op: Op::Write {
                path: RelPath::new("base/16384/2619"),
                offset: i * 65536,
                data: blocks[(i % 64) as usize].clone(),
            },
        })
        .collect();
    let t = Instant::now();
    for ev in events {
        j.append(vec![ev]).unwrap();
    }
    j.sync().unwrap();
    let secs = t.elapsed().as_secs_f64();
    drop(j);
    let on_disk: u64 = std::fs::read_dir(jdir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    std::fs::remove_dir_all(&jdir).unwrap();
    let payload = (n * 65536) as f64;
    (payload / secs / 1e6, on_disk as f64 / payload)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = std::env::var_os("FOXING_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-journal")
        });
    std::fs::create_dir_all(&dir).unwrap();
    let (disk_bytes, small_n, payload_n) = if quick {
        (64 << 20, 200_000, 512)
    } else {
        (1 << 30, 4_000_000, 8192)
    };

    let disk = disk_seq_write_mb_s(&dir, disk_bytes);
    let small = small_records_per_s(&dir, small_n, 4096);
    let (rand_mb, rand_ratio) = payload_mb_s(&dir, payload_n, true, 5);
    let (text_mb, text_ratio) = payload_mb_s(&dir, payload_n, false, 5);
    let (rand50_mb, _) = payload_mb_s(&dir, payload_n, true, 50);
    let disk_after = disk_seq_write_mb_s(&dir, disk_bytes);
    let disk_avg = (disk + disk_after) / 2.0;

    println!("directory: {}", dir.display());
    println!();
    println!("| measure | result | same-run baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!("| disk sequential write (1 MiB writes + fsync), before / after | {disk:.0} / {disk_after:.0} MB/s | - | - | - |");
    println!("| small metadata records, batches of 4096, 5 ms group commit | {:.2} M records/s | - | - | >= 1 M/s |", small / 1e6);
    println!("| 64 KiB incompressible write records | {rand_mb:.0} MB/s (journal/payload bytes {rand_ratio:.3}) | disk {disk_avg:.0} MB/s | {:.2}x | >= 0.5x |", rand_mb / disk_avg);
    println!("| 64 KiB incompressible write records, 50 ms group commit | {rand50_mb:.0} MB/s | disk {disk_avg:.0} MB/s | {:.2}x | - |", rand50_mb / disk_avg);
    println!("| 64 KiB compressible write records | {text_mb:.0} MB/s (journal/payload bytes {text_ratio:.3}) | disk {disk_avg:.0} MB/s | {:.2}x | >= 0.5x |", text_mb / disk_avg);
}
