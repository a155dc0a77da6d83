//! A data workload for capture tests, run as a child of the test (the recorder ignores its own
//! process): random pwrites, appends, large writes and fsyncs into the existing files of ROOT.
//!
//!     workload ROOT SEED OPS

use std::io::Write;
use std::os::unix::fs::FileExt;

fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let root = std::path::PathBuf::from(
        a.next()
            .ok_or_else(|| anyhow::anyhow!("usage: workload ROOT SEED OPS"))?,
    );
    let seed: u64 = a.next().unwrap_or_else(|| "1".into()).parse()?;
    let ops: usize = a.next().unwrap_or_else(|| "1000".into()).parse()?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut files = Vec::new();
    for e in walk(&root) {
        if e.is_file() {
            files.push(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&e)?,
            );
        }
    }
    anyhow::ensure!(!files.is_empty(), "no files under {}", root.display());
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("log"))?;
    for i in 0..ops {
        let f = &files[rng.usize(..files.len())];
        match rng.u8(..10) {
            0..=5 => {
                let mut buf = vec![0u8; rng.usize(1..8192)];
                rng.fill(&mut buf);
                f.write_all_at(&buf, rng.u64(..4 << 20))?;
            }
            6 => {
                let mut buf = vec![0u8; rng.usize(300_000..1_200_000)];
                rng.fill(&mut buf);
                f.write_all_at(&buf, rng.u64(..2 << 20))?;
            }
            7 => writeln!(log, "entry {i}")?,
            8 => f.sync_data()?,
            _ => f.sync_all()?,
        }
    }
    Ok(())
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            let md = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if md.is_dir() {
                out.extend(walk(&path));
            } else if md.is_file() {
                out.push(path);
            }
        }
    }
    out
}
