//! The synced-tail hint (`JDIR/synced`): where the writer's last fsynced frame ends. A group
//! commit fdatasyncs the segment, writes this hint, then commits the index; a reader in another
//! process (the shipper) may send the frames up to the hint one index commit earlier. They are
//! on disk, and should the writer die before its index commit, the next open re-indexes them
//! (journal-format.md, "Recovery").
//!
//! A hint only: written with one `pwrite` and no fsync, checked (magic, version, crc32c) and
//! bounded by what it names (the frames a reader takes from it must scan cleanly, with
//! continuous seqs, up to its seq). A reader that finds it missing, torn or stale uses the index
//! alone. Format (40 bytes, little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `FXSY` |
//! | 4 | 1 | version (1) |
//! | 5 | 3 | zero |
//! | 8 | 8 | seq: every record up to here is fsynced in the segments |
//! | 16 | 8 | segment: first seq of the segment holding the frame that ends at seq |
//! | 24 | 8 | end_offset: the byte after that frame in its segment |
//! | 32 | 4 | crc32c of bytes 0..32 |
//! | 36 | 4 | zero |

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// File name of the hint in the journal directory.
pub const SYNCED_FILE: &str = "synced";
/// Encoded size of a hint.
pub const SYNCED_HINT_LEN: usize = 40;
const MAGIC: [u8; 4] = *b"FXSY";
const VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedHint {
    pub seq: u64,
    pub segment: u64,
    pub end_offset: u64,
}

impl SyncedHint {
    pub fn encode(&self) -> [u8; SYNCED_HINT_LEN] {
        let mut b = [0u8; SYNCED_HINT_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment.to_le_bytes());
        b[24..32].copy_from_slice(&self.end_offset.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// None unless `b` is a whole, intact hint of a known version.
    pub fn decode(b: &[u8]) -> Option<SyncedHint> {
        if b.len() < SYNCED_HINT_LEN || b[0..4] != MAGIC || b[4] != VERSION {
            return None;
        }
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(x)
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[32..36]);
        if crc32c::crc32c(&b[0..32]) != u32::from_le_bytes(crc) {
            return None;
        }
        Some(SyncedHint {
            seq: u64_at(8),
            segment: u64_at(16),
            end_offset: u64_at(24),
        })
    }

    pub fn write(&self, f: &File) -> std::io::Result<()> {
        f.write_all_at(&self.encode(), 0)
    }

    /// The hint in journal directory `dir`, if there is an intact one.
    pub fn read(dir: &Path) -> Option<SyncedHint> {
        let f = File::open(dir.join(SYNCED_FILE)).ok()?;
        let mut b = [0u8; SYNCED_HINT_LEN];
        f.read_exact_at(&mut b, 0).ok()?;
        SyncedHint::decode(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_and_damage_is_refused() {
        let h = SyncedHint {
            seq: 1 << 40,
            segment: 12345,
            end_offset: 64 << 20,
        };
        let b = h.encode();
        assert_eq!(SyncedHint::decode(&b), Some(h));
        for i in 0..36 {
            let mut d = b;
            d[i] ^= 0x40;
            assert_eq!(SyncedHint::decode(&d), None, "flipped byte {i}");
        }
        assert_eq!(SyncedHint::decode(&b[..39]), None);
    }
}
