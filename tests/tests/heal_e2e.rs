//! Heals, in a test binary of its own (cargo runs test binaries one after another) and one test
//! at a time: a lost path operation anywhere on the machine, or an io_uring setxattr anywhere,
//! makes every recorder heal with a whole-tree base, so tests running beside each other would
//! change each other's outcome. Needs root and BPF.

use foxing_journal::JournalReader;
use foxing_tests::{
    apply_and_compare, record_while, record_with, require_bpf, run_workload, seed_tree,
};

/// One test at a time (see above).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Ring losses of file writes only are healed by resyncing the inodes the kernel marked, not
/// by a whole-tree base: a 16 KiB ring overflows under the data workload, every gap is healed,
/// no base beyond the first, and the replayed tree equals the source.
#[test]
fn ring_losses_of_writes_are_healed_by_resyncing_only_the_marked_inodes() {
    if !require_bpf() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = tracing_subscriber::fmt()
        .with_env_filter("foxing_journal=info")
        .with_test_writer()
        .try_init();
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let jdir = d.path().join("journal");
    seed_tree(&src);
    let stats = record_with(&src, &jdir, 16 * 1024, || {
        run_workload(env!("CARGO_BIN_EXE_workload"), &src, &["31", "4000"]);
    });
    assert!(
        stats.lost_events > 0,
        "the ring should have overflowed: {stats:?}"
    );
    assert!(stats.targeted_heals > 0, "{stats:?}");
    assert_eq!(
        stats.bases, 1,
        "no whole-tree base for lost writes: {stats:?}"
    );
    let r = JournalReader::open(&jdir).unwrap();
    let gaps = r.gaps().unwrap();
    assert!(!gaps.is_empty());
    assert!(gaps.iter().all(|g| g.healed_seq.is_some()), "{gaps:?}");
    apply_and_compare(&src, &jdir, d.path());
}

/// setxattr through io_uring is not described by the probes (the names are gone at
/// completion): each is an `untracked` gap, healed by a base, and the tree converges.
#[test]
fn io_uring_setxattr_is_an_untracked_gap_healed_by_a_base() {
    if !require_bpf() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let jdir = d.path().join("journal");
    seed_tree(&src);
    let stats = record_while(&src, &jdir, || {
        run_workload(
            env!("CARGO_BIN_EXE_workload"),
            &src,
            &["23", "300", "uring-xattr"],
        );
    });
    assert!(stats.untracked > 0, "{stats:?}");
    let r = JournalReader::open(&jdir).unwrap();
    let gaps = r.gaps().unwrap();
    assert!(
        gaps.iter()
            .any(|g| foxing_journal::index::gap_reason_name(g.reason) == "untracked"),
        "{gaps:?}"
    );
    assert!(gaps.iter().all(|g| g.healed_seq.is_some()), "{gaps:?}");
    apply_and_compare(&src, &jdir, d.path());
}
