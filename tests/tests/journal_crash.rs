//! Crash safety of the journal: a child appends with group commit while it is killed with
//! SIGKILL at 100 random moments. After each kill the journal is reopened (recovery), verified,
//! checked to be a prefix of what was written, and to hold everything the child reported durable.
//! Every few kills the unsynced tail is also torn (bytes past the last reported durable point are
//! cut at a random length), as a power cut would leave it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use foxing_journal::reader::JournalReader;
use foxing_journal::verify::verify;
use foxing_journal::{Journal, JournalOptions, Layout};
use foxing_tests::synth_event;

const KILLS: usize = 100;

#[test]
fn journal_survives_100_sigkills_with_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    let bin = env!("CARGO_BIN_EXE_crash-writer");
    let mut rng = fastrand::Rng::with_seed(0xf0c5);
    let mut last_checked = 0u64;
    let mut tears = 0;
    for round in 0..KILLS {
        let window_ms = [0u64, 1, 2, 5][round % 4];
        let mut child = Command::new(bin)
            .arg(&jdir)
            .arg(window_ms.to_string())
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child did not start");
        assert!(ready.starts_with("ready "), "{ready}");
        std::thread::sleep(Duration::from_micros(rng.u64(200..30_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut durable = (0u64, 0u64, 0u64);
        for line in rx.try_iter() {
            let f: Vec<u64> = line
                .split(' ')
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect();
            if line.starts_with("durable ") {
                durable = (f[0], f[1], f[2]);
            }
        }

        // A power cut may also lose what was not yet fsynced: tear the tail past the last
        // durable point the child reported (only bytes it never promised).
        if round % 3 == 2 {
            if let Some((seg_seq, end)) = foxing_tests::durable_end(&jdir).unwrap() {
                let segs = foxing_journal::list_segments(&Layout::new(&jdir)).unwrap();
                let (last_seq, last_path) = segs.last().unwrap().clone();
                // Segments created after the durable point may vanish whole; cut the last one.
                let from = if last_seq == seg_seq {
                    end
                } else {
                    foxing_journal::segment::SEGMENT_HEADER_LEN as u64
                };
                let len = std::fs::metadata(&last_path).unwrap().len();
                if len > from {
                    let cut_to = rng.u64(from..len);
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&last_path)
                        .unwrap()
                        .set_len(cut_to)
                        .unwrap();
                    tears += 1;
                }
            }
        }

        let j = Journal::open(&jdir, JournalOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
        let held = j.durable_seq();
        drop(j);
        assert!(
            held >= durable.0,
            "round {round}: child reported seq {} durable, journal holds {held}",
            durable.0
        );
        assert!(
            held >= last_checked,
            "round {round}: journal shrank below what a previous round saw"
        );
        let rep = verify(&jdir).unwrap();
        assert!(
            rep.ok(),
            "round {round}: verify found damage: {:?}",
            rep.damage
        );
        // Prefix check: only the records new since the last round, to keep the test fast.
        let r = JournalReader::open(&jdir).unwrap();
        let from = if round % 10 == 9 {
            1
        } else {
            last_checked.saturating_sub(100).max(1)
        };
        let mut n = 0;
        for rec in r.records(from, held).unwrap() {
            let rec = rec.unwrap();
            assert_eq!(
                rec,
                synth_event(rec.seq).with_seq(rec.seq),
                "round {round}: record {} differs",
                rec.seq
            );
            n += 1;
        }
        assert_eq!(n, held + 1 - from, "round {round}: records missing");
        last_checked = held;
    }
    assert!(
        last_checked > 1000,
        "the child wrote too little to test anything: {last_checked}"
    );
    assert!(tears > 5, "too few torn tails exercised: {tears}");
}
