//! The applier's checkpoint, in two layers (docs/applier.md):
//!
//! - `SDIR/progress`: a 64-byte slot rewritten with pwrite after every namespace record and every
//!   batch: the last applied seq, and the namespace record in flight (with the inode numbers it
//!   found before applying it). No fsync: a killed process leaves it in the page cache, which is
//!   exactly as durable as the replica's own un-synced changes.
//! - `SDIR/state.redb`: committed durably after a syncfs of the replica, every few seconds and on
//!   exit, with the boot id. After a machine crash (boot id changed) only this layer is trusted.
//!
//! Slot layout (little-endian): magic "FXAP" | version u32 (1) | applied_seq u64 |
//! inflight_seq u64 (0 = none) | inflight_ino_a u64 | inflight_ino_b u64 | boot_id [16] |
//! reserved [4] | crc32c u32 over bytes 0..60.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, TableDefinition};

const SLOT_MAGIC: [u8; 4] = *b"FXAP";
const SLOT_VERSION: u32 = 1;
pub const SLOT_LEN: usize = 64;

const CHECKPOINT: TableDefinition<&str, u64> = TableDefinition::new("checkpoint");
const BOOT: TableDefinition<&str, &[u8]> = TableDefinition::new("boot");

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("state directory {0} is in use by another applier")]
    Locked(PathBuf),
}

type Result<T> = std::result::Result<T, StateError>;

fn io<T>(r: std::io::Result<T>, op: &'static str, path: &Path) -> Result<T> {
    r.map_err(|source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    })
}

fn db<T, E: Into<redb::Error>>(r: std::result::Result<T, E>, path: &Path) -> Result<T> {
    r.map_err(|e| StateError::Db {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub applied_seq: u64,
    pub inflight_seq: u64,
    pub inflight_ino_a: u64,
    pub inflight_ino_b: u64,
    pub boot_id: [u8; 16],
}

impl Slot {
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0..4].copy_from_slice(&SLOT_MAGIC);
        b[4..8].copy_from_slice(&SLOT_VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.applied_seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.inflight_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.inflight_ino_a.to_le_bytes());
        b[32..40].copy_from_slice(&self.inflight_ino_b.to_le_bytes());
        b[40..56].copy_from_slice(&self.boot_id);
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Slot> {
        if b.len() < SLOT_LEN || b[0..4] != SLOT_MAGIC {
            return None;
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let crc = u32::from_le_bytes(b[60..64].try_into().unwrap_or([0; 4]));
        if crc32c::crc32c(&b[..60]) != crc
            || u32::from_le_bytes(b[4..8].try_into().unwrap_or([0; 4])) != SLOT_VERSION
        {
            return None;
        }
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&b[40..56]);
        Some(Slot {
            applied_seq: u64_at(8),
            inflight_seq: u64_at(16),
            inflight_ino_a: u64_at(24),
            inflight_ino_b: u64_at(32),
            boot_id,
        })
    }
}

/// This boot's id (/proc/sys/kernel/random/boot_id), as 16 bytes.
pub fn boot_id() -> [u8; 16] {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: Vec<u8> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).take(16).enumerate() {
        let v = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .unwrap_or(0);
        out[i] = v;
    }
    out
}

/// Where a restart resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Every record up to here is applied.
    pub applied_seq: u64,
    /// A namespace record that may or may not have been applied, with the inode numbers its
    /// paths had before (to tell which for RENAME_EXCHANGE).
    pub inflight: Option<(u64, u64, u64)>,
    /// The machine restarted since the fine-grained slot was written: only the durable
    /// checkpoint is trusted.
    pub after_reboot: bool,
}

pub struct State {
    dir: PathBuf,
    _lock: File,
    slot_file: File,
    slot_path: PathBuf,
    db: redb::Database,
    db_path: PathBuf,
    boot: [u8; 16],
    slot: Slot,
}

impl State {
    pub fn open(dir: &Path) -> Result<(State, Resume)> {
        io(std::fs::create_dir_all(dir), "create directory", dir)?;
        let lock_path = dir.join("LOCK");
        let lock = io(
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path),
            "open",
            &lock_path,
        )?;
        // A killed applier holds the lock until the kernel has torn it down: wait a while.
        foxing_journal::restart::retry_while_busy(
            &format!("the lock of state directory {}", dir.display()),
            || lock.try_lock(),
            |e| matches!(e, std::fs::TryLockError::WouldBlock),
        )
        .map_err(|_| StateError::Locked(dir.to_path_buf()))?;
        let db_path = dir.join("state.redb");
        // Created under a temporary name and renamed when complete: a kill during creation
        // must not leave a half-made state.redb that every restart then fails on.
        let creating = io(
            foxing_journal::newdb::creating(&db_path),
            "create",
            &db_path,
        )?;
        let database = db(redb::Database::create(creating.path()), &db_path)?;
        {
            let w = db(database.begin_write(), &db_path)?;
            db(w.commit(), &db_path)?;
        }
        io(creating.finish(), "create", &db_path)?;
        let (durable, durable_boot) = {
            let r = db(database.begin_read(), &db_path)?;
            let applied = match r.open_table(CHECKPOINT) {
                Ok(t) => db(t.get("applied_seq"), &db_path)?
                    .map(|v| v.value())
                    .unwrap_or(0),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => {
                    return Err(StateError::Db {
                        path: db_path,
                        source: e.into(),
                    })
                }
            };
            let boot = match r.open_table(BOOT) {
                Ok(t) => db(t.get("boot_id"), &db_path)?.map(|v| v.value().to_vec()),
                Err(_) => None,
            };
            (applied, boot)
        };
        let slot_path = dir.join("progress");
        let slot_file = io(
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&slot_path),
            "open",
            &slot_path,
        )?;
        let mut buf = [0u8; SLOT_LEN];
        let slot = match slot_file.read_exact_at(&mut buf, 0) {
            Ok(()) => Slot::decode(&buf),
            Err(_) => None,
        };
        let boot = boot_id();
        let resume = match slot {
            Some(s) if s.boot_id == boot && s.applied_seq >= durable => Resume {
                applied_seq: s.applied_seq,
                inflight: (s.inflight_seq != 0).then_some((
                    s.inflight_seq,
                    s.inflight_ino_a,
                    s.inflight_ino_b,
                )),
                after_reboot: false,
            },
            _ => Resume {
                applied_seq: durable,
                inflight: None,
                after_reboot: durable_boot.is_some_and(|b| b != boot)
                    || slot.is_some_and(|s| s.boot_id != boot),
            },
        };
        let st = State {
            dir: dir.to_path_buf(),
            _lock: lock,
            slot_file,
            slot_path,
            db: database,
            db_path,
            boot,
            slot: Slot {
                applied_seq: resume.applied_seq,
                boot_id: boot,
                ..Slot::default()
            },
        };
        Ok((st, resume))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn applied_seq(&self) -> u64 {
        self.slot.applied_seq
    }

    fn write_slot(&mut self) -> Result<()> {
        let b = self.slot.encode();
        io(self.slot_file.write_all_at(&b, 0), "write", &self.slot_path)
    }

    /// Before applying a namespace record: everything before it is applied, and it is in flight.
    pub fn begin_namespace(&mut self, seq: u64, ino_a: u64, ino_b: u64) -> Result<()> {
        debug_assert!(seq > self.slot.applied_seq);
        self.slot.applied_seq = seq - 1;
        self.slot.inflight_seq = seq;
        self.slot.inflight_ino_a = ino_a;
        self.slot.inflight_ino_b = ino_b;
        self.write_slot()
    }

    /// Everything up to `seq` is applied.
    pub fn applied(&mut self, seq: u64) -> Result<()> {
        self.slot.applied_seq = seq;
        self.slot.inflight_seq = 0;
        self.slot.inflight_ino_a = 0;
        self.slot.inflight_ino_b = 0;
        self.write_slot()
    }

    /// Durable checkpoint: call after the replica was synced (syncfs).
    pub fn commit_durable(&mut self) -> Result<()> {
        self.commit_durable_at(self.slot.applied_seq)
    }

    /// Durable checkpoint at `seq` (at most the applied seq): call after a syncfs that started
    /// once everything through `seq` was applied.
    pub fn commit_durable_at(&mut self, seq: u64) -> Result<()> {
        assert!(
            seq <= self.slot.applied_seq,
            "a durable checkpoint cannot be ahead of what was applied"
        );
        let p = self.db_path.clone();
        let txn = db(self.db.begin_write(), &p)?;
        {
            let mut t = db(txn.open_table(CHECKPOINT), &p)?;
            db(t.insert("applied_seq", seq), &p)?;
            let mut b = db(txn.open_table(BOOT), &p)?;
            db(b.insert("boot_id", &self.boot[..]), &p)?;
        }
        db(txn.commit(), &p)?;
        io(self.slot_file.sync_data(), "fsync", &self.slot_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (stress-ng run restarting a killed applier at once): the dead applier's lock
    /// outlives it while the kernel tears the process down, and the new one exited with "in
    /// use by another applier". Opening now waits for a lock released soon after.
    #[test]
    fn open_waits_for_a_lock_its_holder_releases_soon() {
        let d = tempfile::tempdir().unwrap();
        let held = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(d.path().join("LOCK"))
            .unwrap();
        held.lock().unwrap();
        let t0 = std::time::Instant::now();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let (_, resume) = State::open(d.path()).unwrap();
        assert!(t0.elapsed() >= std::time::Duration::from_millis(250));
        assert_eq!(resume.applied_seq, 0);
        release.join().unwrap();
    }

    /// Regression (applier_converges_after_50_sigkills in CI): a kill while the state database
    /// was being created left a file without redb's header, and every restart failed on it.
    /// Creation now happens under a temporary name; a half-made one is removed on open.
    #[test]
    fn a_kill_during_state_creation_does_not_stop_the_next_start() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("state.redb.new"), b"half-made").unwrap();
        let (_, resume) = State::open(d.path()).unwrap();
        assert_eq!(resume.applied_seq, 0);
        assert!(!d.path().join("state.redb.new").exists());
        assert!(d.path().join("state.redb").exists());
    }

    #[test]
    fn slot_round_trips_and_rejects_damage() {
        let s = Slot {
            applied_seq: 9,
            inflight_seq: 10,
            inflight_ino_a: 3,
            inflight_ino_b: 4,
            boot_id: [7; 16],
        };
        let b = s.encode();
        assert_eq!(Slot::decode(&b), Some(s));
        for i in 0..SLOT_LEN {
            let mut c = b;
            c[i] ^= 1;
            assert_eq!(Slot::decode(&c), None, "flip at {i}");
        }
    }

    #[test]
    fn resume_uses_the_fine_slot_within_a_boot() {
        let d = tempfile::tempdir().unwrap();
        {
            let (mut st, r) = State::open(d.path()).unwrap();
            assert_eq!(r.applied_seq, 0);
            st.applied(5).unwrap();
            st.commit_durable().unwrap();
            st.applied(8).unwrap();
            st.begin_namespace(9, 11, 12).unwrap();
        }
        let (_, r) = State::open(d.path()).unwrap();
        assert_eq!(
            r,
            Resume {
                applied_seq: 8,
                inflight: Some((9, 11, 12)),
                after_reboot: false
            }
        );
    }
}
