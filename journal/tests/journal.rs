//! Journal behaviour on a real filesystem: append/read, rotation, recovery, corruption, prune,
//! follow.

use std::path::Path;
use std::time::Duration;

use foxing_journal::reader::JournalReader;
use foxing_journal::verify::verify;
use foxing_journal::{list_segments, Journal, JournalError, JournalOptions, Layout};
use foxing_proto::{Event, Op, Record, RelPath, SyncKind, Writer};

fn ev(i: u64) -> Event {
    let op = match i % 5 {
        0 => Op::Write {
            path: RelPath::new(format!("f{}", i % 7)),
            offset: i * 3,
            data: vec![i as u8; (i % 300) as usize],
        },
        1 => Op::Truncate {
            path: RelPath::new("t"),
            size: i,
        },
        2 => Op::Chmod {
            path: RelPath::new("d/x"),
            mode: 0o644,
        },
        3 => Op::Sync {
            path: Some(RelPath::new("f1")),
            kind: SyncKind::Fsync,
        },
        _ => Op::Rename {
            from: RelPath::new("a"),
            to: RelPath::new(format!("b{i}")),
            flags: 0,
        },
    };
    Event {
        time_ns: 1_000_000_000 + i * 1000,
        writer: Writer {
            pid: 7,
            ..Default::default()
        },
        op,
    }
}

fn opts() -> JournalOptions {
    JournalOptions {
        fsync_window: Duration::ZERO,
        segment_size_bytes: 2 << 10,
        ..Default::default()
    }
}

fn all_records(dir: &Path) -> Vec<Record> {
    let r = JournalReader::open(dir).unwrap();
    let m = r.meta().unwrap();
    r.records(m.first_seq, m.durable_seq)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn expected(from: u64, to: u64) -> Vec<Record> {
    (from..=to).map(|s| ev(s).with_seq(s)).collect()
}

#[test]
fn appended_records_read_back_across_segments_and_reopens() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(d.path(), opts()).unwrap();
        for chunk in (1..=600u64).collect::<Vec<_>>().chunks(7) {
            let r = j.append(chunk.iter().map(|&i| ev(i)).collect()).unwrap();
            assert_eq!(r.start, chunk[0]);
        }
        assert_eq!(j.durable_seq(), 600);
    }
    assert!(
        list_segments(&Layout::new(d.path())).unwrap().len() > 3,
        "rotation by size"
    );
    assert_eq!(all_records(d.path()), expected(1, 600));
    let rep = verify(d.path()).unwrap();
    assert!(rep.ok(), "{:?}", rep.damage);
    assert_eq!(rep.records, 600);
    let mut j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.next_seq(), 601);
    j.append(vec![ev(601)]).unwrap();
    drop(j);
    assert_eq!(all_records(d.path()), expected(1, 601));
    let r = JournalReader::open(d.path()).unwrap();
    let mid: Vec<u64> = r
        .records(250, 260)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(mid, (250..=260).collect::<Vec<_>>());
    assert_eq!(r.sync_points(1, 601).unwrap().len(), 120);
}

#[test]
fn a_second_writer_is_refused_while_readers_are_welcome() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(d.path(), opts()).unwrap();
    j.append((1..=10).map(ev).collect()).unwrap();
    assert!(matches!(
        Journal::open(d.path(), opts()),
        Err(JournalError::Locked { .. })
    ));
    let r = JournalReader::open(d.path()).unwrap();
    assert_eq!(r.meta().unwrap().durable_seq, 10);
    j.append((11..=20).map(ev).collect()).unwrap();
    assert_eq!(
        r.meta().unwrap().durable_seq,
        20,
        "a reader follows the writer's commits"
    );
}

#[test]
fn follower_sees_new_durable_frames() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(d.path(), opts()).unwrap();
    j.append((1..=5).map(ev).collect()).unwrap();
    let r = JournalReader::open(d.path()).unwrap();
    let mut f = r.follow(3);
    let got = f.next_frames(Duration::from_millis(10)).unwrap();
    assert_eq!(got.len(), 1);
    assert!(f.next_frames(Duration::from_millis(5)).unwrap().is_empty());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            j.append((6..=9).map(ev).collect()).unwrap();
        });
        let got = f.next_frames(Duration::from_secs(5)).unwrap();
        assert_eq!(got[0].header.first_seq, 6);
        assert_eq!(got[0].records().unwrap(), expected(6, 9));
    });
}

/// Copies a journal directory as a crash would leave it: the segment bytes that were written,
/// the index as last committed.
fn snapshot(from: &Path, to: &Path) {
    for sub in ["", "segments"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

#[test]
fn recovery_reindexes_unsynced_frames_and_cuts_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let crash = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(
            d.path(),
            JournalOptions {
                fsync_window: Duration::from_secs(3600),
                ..opts()
            },
        )
        .unwrap();
        j.append((1..=50).map(ev).collect()).unwrap();
        j.sync().unwrap();
        j.append((51..=80).map(ev).collect()).unwrap(); // written, not committed
        snapshot(d.path(), crash.path());
    }
    // Tear the last frame: drop its final 5 bytes.
    let segs = list_segments(&Layout::new(crash.path())).unwrap();
    let last = &segs.last().unwrap().1;
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let before = verify(crash.path()).unwrap();
    assert!(
        before.ok(),
        "an unsynced torn tail is not damage: {:?}",
        before.damage
    );
    assert!(!before.notes.is_empty());

    let j = Journal::open(crash.path(), opts()).unwrap();
    let rec = j.recovery().clone();
    assert!(rec.cut_bytes > 0);
    let n = j.next_seq() - 1;
    assert!(
        (50..80).contains(&n),
        "kept the durable prefix and the intact unsynced frames, cut the torn one: {n}"
    );
    drop(j);
    assert_eq!(all_records(crash.path()), expected(1, n));
    assert!(verify(crash.path()).unwrap().ok());
}

#[test]
fn a_lost_index_is_rebuilt_from_the_segments() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(d.path(), opts()).unwrap();
        j.append((1..=300).map(ev).collect()).unwrap();
    }
    std::fs::remove_file(Layout::new(d.path()).index).unwrap();
    let j = Journal::open(d.path(), opts()).unwrap();
    assert_eq!(j.durable_seq(), 300);
    drop(j);
    assert_eq!(all_records(d.path()), expected(1, 300));
    assert_eq!(
        JournalReader::open(d.path())
            .unwrap()
            .sync_points(0, u64::MAX)
            .unwrap()
            .len(),
        60
    );
}

#[test]
fn flipping_any_byte_of_a_segment_is_detected_by_verify_and_never_yields_bad_records() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(
            d.path(),
            JournalOptions {
                segment_size_bytes: 1 << 20,
                ..opts()
            },
        )
        .unwrap();
        for i in 1..=6u64 {
            j.append(((i - 1) * 4 + 1..=i * 4).map(ev).collect())
                .unwrap();
        }
    }
    let layout = Layout::new(d.path());
    let segs = list_segments(&layout).unwrap();
    assert_eq!(segs.len(), 1);
    let seg = segs[0].1.clone();
    let good = std::fs::read(&seg).unwrap();
    let truth = expected(1, 24);
    let work = tempfile::tempdir().unwrap();
    for pos in 0..good.len() {
        let _ = std::fs::remove_dir_all(work.path().join("j"));
        let jd = work.path().join("j");
        snapshot(d.path(), &jd);
        let wseg = Layout::new(&jd).segments.join(seg.file_name().unwrap());
        let mut bad = good.clone();
        bad[pos] ^= 0x5a;
        std::fs::write(&wseg, &bad).unwrap();

        let rep = verify(&jd).unwrap();
        assert!(!rep.ok(), "flip at byte {pos} went unnoticed");
        let dmg = &rep.damage[0];
        assert_eq!(dmg.segment, wseg, "names the segment");
        assert!(
            dmg.offset <= pos as u64,
            "flip at {pos}, reported offset {}",
            dmg.offset
        );

        // Readers never return a damaged record: each one read is exactly what was written.
        if let Ok(r) = JournalReader::open(&jd) {
            let m = r.meta().unwrap();
            if let Ok(it) = r.records(m.first_seq, m.durable_seq) {
                for rec in it.flatten() {
                    assert_eq!(rec, truth[rec.seq as usize - 1], "flip at {pos}");
                }
            }
        }
        // The writer refuses to open over damage to durable records instead of cutting them.
        match Journal::open(&jd, opts()) {
            Err(_) => {}
            Ok(j) => panic!(
                "flip at {pos}: writer opened a damaged journal, next_seq {}",
                j.next_seq()
            ),
        }
    }
}

#[test]
fn prune_drops_whole_segments_before_the_newest_complete_base() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(d.path(), opts()).unwrap();
    let w = Writer::default();
    j.append(vec![Event {
        time_ns: 10,
        writer: w.clone(),
        op: Op::BaseBegin { base_id: 1 },
    }])
    .unwrap();
    j.append((2..=400).map(ev).collect()).unwrap();
    let b = j
        .append(vec![Event {
            time_ns: 2_000_000_000,
            writer: w.clone(),
            op: Op::BaseBegin { base_id: 2 },
        }])
        .unwrap();
    j.append(vec![Event {
        time_ns: 2_000_000_001,
        writer: w.clone(),
        op: Op::BaseEnd { base_id: 2 },
    }])
    .unwrap();
    j.append((403..=500).map(ev).collect()).unwrap();
    let before = list_segments(&Layout::new(d.path())).unwrap().len();
    let removed = j.prune_before(b.start).unwrap();
    assert!(!removed.is_empty());
    assert_eq!(
        list_segments(&Layout::new(d.path())).unwrap().len(),
        before - removed.len()
    );
    drop(j);
    let r = JournalReader::open(d.path()).unwrap();
    let m = r.meta().unwrap();
    assert!(m.first_seq <= b.start && m.first_seq > 1);
    let recs: Vec<Record> = r
        .records(m.first_seq, m.durable_seq)
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(recs.first().unwrap().seq, m.first_seq);
    assert_eq!(recs.last().unwrap().seq, 500);
    assert!(r
        .records(m.first_seq, m.durable_seq)
        .unwrap()
        .any(|x| x.unwrap().seq == b.start));
    assert!(verify(d.path()).unwrap().ok());
    assert!(Journal::open(d.path(), opts()).is_ok());
}

#[test]
fn append_frame_accepts_only_the_next_valid_frame() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(src.path(), opts()).unwrap();
        j.append((1..=40).map(ev).collect()).unwrap();
        j.append((41..=60).map(ev).collect()).unwrap();
    }
    let r = JournalReader::open(src.path()).unwrap();
    let frames = r.frames(1, 60).unwrap();
    let mut a = Journal::open(dst.path(), opts()).unwrap();
    assert!(matches!(
        a.append_frame(&frames[1].bytes),
        Err(JournalError::OutOfOrder {
            got: 41,
            expected: 1
        })
    ));
    let mut bad = frames[0].bytes.clone();
    bad[60] ^= 1;
    assert!(a.append_frame(&bad).is_err());
    for f in &frames {
        a.append_frame(&f.bytes).unwrap();
    }
    assert!(
        a.append_frame(&frames[0].bytes).is_err(),
        "a duplicate frame is refused"
    );
    drop(a);
    assert_eq!(all_records(dst.path()), expected(1, 60));
}

#[test]
fn an_empty_archive_adopts_its_source_identity_and_start_seq() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let src_id = {
        let mut j = Journal::open(src.path(), opts()).unwrap();
        j.append((1..=40).map(ev).collect()).unwrap();
        j.append((41..=60).map(ev).collect()).unwrap();
        j.journal_id().unwrap()
    };
    assert_ne!(src_id, 0);
    let r = JournalReader::open(src.path()).unwrap();
    assert_eq!(r.meta().unwrap().journal_id, src_id);
    let frames = r.frames(41, 60).unwrap();
    assert_eq!(frames[0].header.first_seq, 41);
    {
        let mut a = Journal::open(dst.path(), opts()).unwrap();
        assert!(a.is_empty());
        assert!(!a.is_adopted().unwrap());
        assert_ne!(a.journal_id().unwrap(), src_id, "ids are random");
        a.adopt(src_id, 41).unwrap();
        assert!(a.is_adopted().unwrap());
        for f in &frames {
            a.append_frame(&f.bytes).unwrap();
        }
        assert!(!a.is_empty());
        assert!(
            a.adopt(src_id, 61).is_err(),
            "a journal with records keeps its identity"
        );
    }
    let a = Journal::open(dst.path(), opts()).unwrap();
    assert_eq!(a.journal_id().unwrap(), src_id);
    assert_eq!(a.next_seq(), 61);
    drop(a);
    let m = JournalReader::open(dst.path()).unwrap().meta().unwrap();
    assert_eq!((m.first_seq, m.durable_seq), (41, 60));
    assert_eq!(all_records(dst.path()), expected(41, 60));
    assert!(verify(dst.path()).unwrap().ok());
}

/// After a failed write or commit (a full disk), the journal is opened again without what was
/// not durable: those pages may never reach the disk, and they were never indexed (so never
/// shipped). Their seqs go to the next records.
#[test]
fn open_after_failure_discards_what_was_not_durable_and_appends_continue() {
    let d = tempfile::tempdir().unwrap();
    let failed = tempfile::tempdir().unwrap();
    let slow = JournalOptions {
        fsync_window: Duration::from_secs(3600),
        segment_size_bytes: 64 << 20,
        ..opts()
    };
    {
        let mut j = Journal::open(d.path(), slow.clone()).unwrap();
        j.append((1..=50).map(ev).collect()).unwrap();
        j.sync().unwrap();
        j.append((51..=80).map(ev).collect()).unwrap(); // written, not durable
        snapshot(d.path(), failed.path());
    }
    // A segment created past the durable point (a rotation the failure cut short) goes too.
    let layout = Layout::new(failed.path());
    let stray = layout
        .segments
        .join(foxing_journal::segment::segment_file_name(81));
    std::fs::write(&stray, b"FOXSEG").unwrap();

    let mut j = Journal::open_after_failure(failed.path(), slow, 0).unwrap();
    assert!(j.recovery().discarded_bytes > 0, "{:?}", j.recovery());
    assert_eq!(j.recovery().frames_reindexed, 0);
    assert_eq!(j.next_seq(), 51, "the undurable frames are gone");
    assert!(!stray.exists());
    let fresh = |i: u64| Event {
        time_ns: 9_000 + i,
        ..ev(i)
    };
    j.append((51..=60).map(fresh).collect()).unwrap();
    j.sync().unwrap();
    drop(j);
    let recs = all_records(failed.path());
    assert_eq!(recs.len(), 60);
    assert_eq!(recs[..50], expected(1, 50)[..]);
    let want: Vec<Record> = (51..=60).map(|s| fresh(s).with_seq(s)).collect();
    assert_eq!(
        recs[50..],
        want[..],
        "seqs 51.. hold the records appended after the failure"
    );
    assert!(verify(failed.path()).unwrap().ok());
}

/// A replica acknowledges frames once their segment is fsynced, before the index commit
/// (`Journal::synced_seq`). When that index commit then fails, opening the archive again must
/// keep the acknowledged frames (re-indexed) and cut only what follows them.
#[test]
fn open_after_failure_keeps_frames_synced_before_the_index_commit() {
    let d = tempfile::tempdir().unwrap();
    let failed = tempfile::tempdir().unwrap();
    let slow = JournalOptions {
        fsync_window: Duration::from_secs(3600),
        segment_size_bytes: 64 << 20,
        ..opts()
    };
    {
        let mut j = Journal::open(d.path(), slow.clone()).unwrap();
        j.append((1..=50).map(ev).collect()).unwrap();
        assert_eq!(j.sync().unwrap(), 50);
        assert_eq!(j.synced_seq(), 50);
        j.append((51..=70).map(ev).collect()).unwrap(); // fsynced and acknowledged, say
        j.append((71..=80).map(ev).collect()).unwrap(); // not
        snapshot(d.path(), failed.path());
    }
    // The same state once more, where only the synced hint knows of 51..=70 (the recorder
    // passes 0: the shipper may have sent what the hint names).
    let hinted = tempfile::tempdir().unwrap();
    snapshot(failed.path(), hinted.path());
    let j = Journal::open_after_failure(failed.path(), slow.clone(), 70).unwrap();
    assert_eq!(j.recovery().frames_reindexed, 1, "{:?}", j.recovery());
    assert!(j.recovery().discarded_bytes > 0, "{:?}", j.recovery());
    assert_eq!(j.next_seq(), 71);
    assert_eq!(j.durable_seq(), 70);
    drop(j);
    assert_eq!(all_records(failed.path()), expected(1, 70));
    assert!(verify(failed.path()).unwrap().ok());

    let (_, seg) = list_segments(&Layout::new(hinted.path()))
        .unwrap()
        .pop()
        .unwrap();
    let data = std::fs::read(&seg).unwrap();
    let scan = foxing_journal::segment::scan_frames(
        &data[foxing_journal::segment::SEGMENT_HEADER_LEN..],
        foxing_journal::segment::SEGMENT_HEADER_LEN as u64,
        1,
    );
    let f70 = scan
        .frames
        .iter()
        .find(|f| f.header.last_seq() == 70)
        .unwrap();
    let hint = foxing_journal::synced::SyncedHint {
        seq: 70,
        segment: 1,
        end_offset: f70.offset + f70.header.frame_len() as u64,
    };
    std::fs::write(
        hinted.path().join(foxing_journal::synced::SYNCED_FILE),
        hint.encode(),
    )
    .unwrap();
    let j = Journal::open_after_failure(hinted.path(), slow, 0).unwrap();
    assert_eq!(j.next_seq(), 71, "the hinted frames are kept");
    drop(j);
    assert_eq!(all_records(hinted.path()), expected(1, 70));
}

/// Regression: an applier reading a journal of 64 KiB records asked for 65,536 records at once
/// and held 1 GiB of frames in memory. Reads are now bounded by stored bytes.
#[test]
fn reading_frames_is_bounded_by_bytes() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut j = Journal::open(d.path(), opts()).unwrap();
        for i in 0..10u64 {
            j.append((i * 10 + 1..=i * 10 + 10).map(ev).collect())
                .unwrap();
        }
    }
    let r = JournalReader::open(d.path()).unwrap();
    let all = r.frames(1, 100).unwrap();
    assert_eq!(all.len(), 10);
    let three: u64 = all[..3].iter().map(|f| f.bytes.len() as u64).sum();
    let some = r.frames_bounded(1, 100, three).unwrap();
    assert_eq!(some.len(), 3, "stops at the frame reaching the bound");
    let first = r.frames_bounded(31, 100, 1).unwrap();
    assert_eq!(first.len(), 1, "at least one frame");
    assert_eq!(first[0].header.first_seq, 31);
    assert_eq!(r.frames_bounded(1, 100, u64::MAX).unwrap().len(), 10);
}

/// A group commit writes the synced hint after the segment's fdatasync and before the index
/// commit; a reader (the shipper) takes the hinted frames from the segment. Here the index
/// stops at seq 50 and the hint names 51..=70 (71..=80 are written, not synced): the reader
/// gets exactly 51..=70. Torn, stale or overreaching hints give only what checks out.
#[test]
fn unindexed_frames_are_read_up_to_the_synced_hint_and_no_further() {
    use foxing_journal::reader::SegmentFiles;
    use foxing_journal::synced::{SyncedHint, SYNCED_FILE};
    let d = tempfile::tempdir().unwrap();
    let slow = JournalOptions {
        fsync_window: Duration::from_secs(3600),
        segment_size_bytes: 64 << 20,
        ..opts()
    };
    let seg_len = |dir: &Path| {
        let (_, p) = list_segments(&Layout::new(dir)).unwrap().pop().unwrap();
        std::fs::metadata(p).unwrap().len()
    };
    // The writer stays open (its fsync window keeps 51..=80 out of the index); the test
    // writes the hints a group commit would.
    let mut j = Journal::open(d.path(), slow).unwrap();
    j.append((1..=50).map(ev).collect()).unwrap();
    j.sync().unwrap();
    j.append((51..=60).map(ev).collect()).unwrap();
    j.append((61..=70).map(ev).collect()).unwrap();
    let end70 = seg_len(d.path());
    j.append((71..=80).map(ev).collect()).unwrap();
    let seg = 1u64;
    let snap = &d;
    let hint_at =
        |h: SyncedHint| std::fs::write(snap.path().join(SYNCED_FILE), h.encode()).unwrap();
    let read = |from: u64, until: u64| -> Vec<u64> {
        let r = JournalReader::open(snap.path()).unwrap();
        assert_eq!(r.meta().unwrap().durable_seq, 50, "the index stops at 50");
        r.unindexed_frames(from, until, &mut SegmentFiles::default())
            .unwrap()
            .iter()
            .flat_map(|f| f.records().unwrap())
            .map(|rec| rec.seq)
            .collect()
    };
    hint_at(SyncedHint {
        seq: 70,
        segment: seg,
        end_offset: end70,
    });
    assert_eq!(read(51, u64::MAX), (51..=70).collect::<Vec<_>>());
    assert_eq!(read(61, u64::MAX), (61..=70).collect::<Vec<_>>());
    // A shipper judges a reconnecting replica by this: one holding 51..=70 is not ahead.
    let served = || {
        JournalReader::open(snap.path())
            .unwrap()
            .served_seq()
            .unwrap()
    };
    assert_eq!(served(), 70);
    assert_eq!(read(51, 60), (51..=60).collect::<Vec<_>>());
    assert!(read(71, u64::MAX).is_empty());
    // The records themselves are the ones appended.
    let r = JournalReader::open(snap.path()).unwrap();
    let recs: Vec<Record> = r
        .unindexed_frames(51, 70, &mut SegmentFiles::default())
        .unwrap()
        .iter()
        .flat_map(|f| f.records().unwrap())
        .collect();
    assert_eq!(recs, expected(51, 70));
    // A hint whose offset cuts a frame: only the whole frames before the cut.
    hint_at(SyncedHint {
        seq: 70,
        segment: seg,
        end_offset: end70 - 1,
    });
    assert_eq!(read(51, u64::MAX), (51..=60).collect::<Vec<_>>());
    // A hint reaching past the file (stale, from a longer journal): nothing.
    hint_at(SyncedHint {
        seq: 500,
        segment: seg,
        end_offset: end70 + (1 << 20),
    });
    assert!(read(51, u64::MAX).is_empty());
    // A hint naming a segment that does not exist: nothing.
    hint_at(SyncedHint {
        seq: 70,
        segment: 51,
        end_offset: 4096,
    });
    assert!(read(51, u64::MAX).is_empty());
    // A torn hint: nothing.
    let mut torn = SyncedHint {
        seq: 70,
        segment: seg,
        end_offset: end70,
    }
    .encode();
    torn[12] ^= 1;
    std::fs::write(snap.path().join(SYNCED_FILE), torn).unwrap();
    assert!(read(51, u64::MAX).is_empty());
    assert_eq!(served(), 50, "a torn hint serves nothing past the index");
    // The writer's next group commit indexes everything and rewrites the hint.
    assert_eq!(j.sync().unwrap(), 80);
    assert_eq!(
        JournalReader::open(snap.path())
            .unwrap()
            .synced_hint()
            .unwrap()
            .seq,
        80
    );
    drop(j);
}

/// A live journal publishes its synced hint with every group commit.
#[test]
fn group_commits_publish_the_synced_hint() {
    let d = tempfile::tempdir().unwrap();
    let mut j = Journal::open(d.path(), opts()).unwrap();
    let r = JournalReader::open(d.path()).unwrap();
    assert_eq!(r.synced_hint().unwrap().seq, 0);
    for i in 0..5u64 {
        j.append((i * 10 + 1..=i * 10 + 10).map(ev).collect())
            .unwrap();
        j.sync().unwrap();
        let h = r.synced_hint().unwrap();
        assert_eq!(h.seq, i * 10 + 10);
        assert_eq!(j.synced_seq(), h.seq);
    }
}

/// The hinted frames may start a new segment (a rotation indexes everything before it): the
/// reader moves from the last indexed frame's full segment to the hint's.
#[test]
fn unindexed_frames_are_read_from_a_new_segment_after_a_rotation() {
    use foxing_journal::reader::SegmentFiles;
    use foxing_journal::synced::{SyncedHint, SYNCED_FILE};
    let d = tempfile::tempdir().unwrap();
    let slow = JournalOptions {
        fsync_window: Duration::from_secs(3600),
        segment_size_bytes: 4 << 10,
        ..opts()
    };
    let mut j = Journal::open(d.path(), slow).unwrap();
    let mut next = 1u64;
    // Fill the first segment (indexed), then rotate by appending until a second one exists.
    while list_segments(&Layout::new(d.path())).unwrap().len() < 2 {
        j.append((next..next + 10).map(ev).collect()).unwrap();
        next += 10;
    }
    let (seg2, path2) = list_segments(&Layout::new(d.path()))
        .unwrap()
        .pop()
        .unwrap();
    let indexed = JournalReader::open(d.path())
        .unwrap()
        .meta()
        .unwrap()
        .durable_seq;
    assert_eq!(
        indexed + 1,
        seg2,
        "the rotation indexed everything before the new segment"
    );
    let last = next - 1;
    assert!(last >= seg2, "the new segment holds unindexed records");
    let end = std::fs::metadata(&path2).unwrap().len();
    std::fs::write(
        d.path().join(SYNCED_FILE),
        SyncedHint {
            seq: last,
            segment: seg2,
            end_offset: end,
        }
        .encode(),
    )
    .unwrap();
    let r = JournalReader::open(d.path()).unwrap();
    let seqs: Vec<u64> = r
        .unindexed_frames(seg2, u64::MAX, &mut SegmentFiles::default())
        .unwrap()
        .iter()
        .flat_map(|f| f.records().unwrap())
        .map(|rec| rec.seq)
        .collect();
    assert_eq!(seqs, (seg2..=last).collect::<Vec<_>>());
    assert_eq!(r.served_seq().unwrap(), last);
    drop(j);
}
