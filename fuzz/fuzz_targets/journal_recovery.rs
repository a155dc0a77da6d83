//! A journal whose only segment holds hostile bytes after a valid header: opening it for
//! writing (crash recovery) must return an error or a consistent journal, never panic, and a
//! journal it accepts must verify.
#![no_main]
use foxing_journal::segment::{segment_file_name, SegmentHeader};
use foxing_journal::{Journal, JournalOptions, Layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(dir.path());
    std::fs::create_dir_all(&layout.segments).expect("mkdir");
    let mut bytes = SegmentHeader { first_seq: 1, created_time_ns: 0 }.encode().to_vec();
    bytes.extend_from_slice(data);
    std::fs::write(layout.segments.join(segment_file_name(1)), &bytes).expect("write");
    if let Ok(j) = Journal::open(dir.path(), JournalOptions::default()) {
        let durable = j.durable_seq();
        drop(j);
        let rep = foxing_journal::verify::verify(dir.path()).expect("verify runs");
        assert!(rep.ok(), "recovered journal does not verify: {:?}", rep.damage);
        assert_eq!(rep.last_seq.unwrap_or(0), durable);
    }
});
