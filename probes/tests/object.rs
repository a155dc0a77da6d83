//! The committed eBPF object must match its sources, so machines without clang build the same
//! probes. Regenerate with probes/update-object.sh.

use sha2::{Digest, Sha256};

fn sources_hash() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (n.ends_with(".bpf.c") || n.ends_with(".h")) && n != "vmlinux.h"
        })
        .collect();
    v.sort();
    let mut h = Sha256::new();
    for p in v {
        h.update(
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .as_bytes(),
        );
        h.update([0]);
        h.update(std::fs::read(&p).unwrap());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn committed_object_is_not_stale() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let committed = std::fs::read_to_string(dir.join("foxing.bpf.o.sha256"))
        .expect("bpf/foxing.bpf.o.sha256 missing");
    assert_eq!(
        committed.trim(),
        sources_hash(),
        "probes/bpf/foxing.bpf.o is older than its sources: run probes/update-object.sh and commit the result"
    );
    assert_eq!(
        foxing_probes::SOURCES_SHA256,
        sources_hash(),
        "the build saw other sources than the test"
    );
    assert!(dir.join("foxing.bpf.o").exists());
}

#[test]
#[ignore]
fn print_sources_hash() {
    println!("{}", sources_hash());
}
