//! Mode changes the kernel makes on its own: a write, truncate or fallocate by a caller without
//! CAP_FSETID clears a regular file's setuid bit (and setgid when group-executable), and so do
//! O_TRUNC opens and chown. No syscall says so, so no record did: the replica, written by a root
//! applier (which has CAP_FSETID), kept a setuid bit the source had dropped.
//!
//! Every file event carries its inode's mode after the call (`fx_event.mode`). `SpecialModes`
//! remembers the mode journaled for each regular file (by kernel dev, ino) that has a setuid or
//! setgid bit, learned from the events themselves, from chmod by path and from base and heal
//! reads; an event whose mode after the call differs from the one remembered gets a `Chmod`
//! with the mode now, after its own records. Files without these bits (nearly all) cost one
//! lookup in an empty or tiny map. A stale entry (the inode removed and its number reused) only
//! costs a `Chmod` with the file's true mode.

use std::collections::HashMap;

/// Most setuid/setgid files remembered (24 bytes each plus the map's overhead). Past it a file
/// is not learned and a later drop of its bits is missed until the next base (warned once).
pub const SPECIAL_MODES_MAX_ENTRIES: usize = 1 << 20;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
/// setuid | setgid
const SPECIAL_BITS: u32 = 0o6000;

#[derive(Debug, Default)]
pub struct SpecialModes {
    /// (kernel dev, ino) -> permission bits (`& 0o7777`) as journaled.
    modes: HashMap<(u64, u64), u32>,
    full_warned: bool,
}

impl SpecialModes {
    /// A file event's inode and its full `i_mode` after the call (type bits included, 0 when
    /// unknown). Returns the permission bits to journal as a `Chmod` after the event's own
    /// records when they differ from what was journaled for the inode before. `journals_mode`:
    /// the event's own record sets the mode (fchmod).
    pub fn after_event(
        &mut self,
        key: (u64, u64),
        i_mode: u32,
        journals_mode: bool,
    ) -> Option<u32> {
        let perm = i_mode & 0o7777;
        // The common case first: no setuid/setgid file remembered, none shown.
        if i_mode & S_IFMT != S_IFREG || (self.modes.is_empty() && perm & SPECIAL_BITS == 0) {
            return None;
        }
        let before = self.modes.get(&key).copied();
        match before {
            None if perm & SPECIAL_BITS == 0 => None,
            None => {
                // The replica has these bits already (from the record that set them, which
                // taught nothing about the inode) or gets them from this event's record.
                self.remember(key, perm);
                None
            }
            Some(b) if b == perm => None,
            Some(_) => {
                self.remember(key, perm);
                (!journals_mode).then_some(perm)
            }
        }
    }

    /// A record journals `i_mode` for the file `key` (a base or heal read, chmod by path):
    /// remembered when it has setuid or setgid bits, forgotten otherwise.
    pub fn journaled(&mut self, key: (u64, u64), i_mode: u32) {
        if i_mode & S_IFMT == S_IFREG {
            self.remember(key, i_mode & 0o7777);
        }
    }

    /// Whether no file is remembered (then no call can have cleared remembered bits).
    pub fn is_empty(&self) -> bool {
        self.modes.is_empty()
    }

    /// Whether the inode is remembered (a file with setuid or setgid bits on the replica).
    pub fn knows(&self, key: (u64, u64)) -> bool {
        self.modes.contains_key(&key)
    }

    fn remember(&mut self, key: (u64, u64), perm: u32) {
        if perm & SPECIAL_BITS == 0 {
            self.modes.remove(&key);
            return;
        }
        if self.modes.len() >= SPECIAL_MODES_MAX_ENTRIES && !self.modes.contains_key(&key) {
            if !self.full_warned {
                self.full_warned = true;
                tracing::warn!(
                    max = SPECIAL_MODES_MAX_ENTRIES,
                    "too many setuid/setgid files to remember: a write that drops the bits of a \
                     file not remembered reaches the replica at the next base"
                );
            }
            return;
        }
        self.modes.insert(key, perm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: u32 = 0o100_000;
    const DIR: u32 = 0o040_000;

    #[test]
    fn a_write_that_drops_setuid_journals_the_mode_after_it() {
        let mut m = SpecialModes::default();
        // chmod 4755 through fchmod: the record carries the mode, the inode is learned.
        assert_eq!(m.after_event((1, 7), REG | 0o4755, true), None);
        // A write by root keeps the bit: nothing to add.
        assert_eq!(m.after_event((1, 7), REG | 0o4755, false), None);
        // A write by an unprivileged caller dropped it.
        assert_eq!(m.after_event((1, 7), REG | 0o755, false), Some(0o755));
        // Forgotten once the bits are gone: later writes cost nothing.
        assert!(!m.knows((1, 7)));
        assert_eq!(m.after_event((1, 7), REG | 0o755, false), None);
    }

    #[test]
    fn setgid_dropped_but_setuid_kept_is_still_a_change() {
        let mut m = SpecialModes::default();
        m.journaled((1, 8), REG | 0o6775);
        assert_eq!(m.after_event((1, 8), REG | 0o4775, false), Some(0o4775));
        assert!(m.knows((1, 8)));
    }

    #[test]
    fn learned_from_what_was_journaled_and_directories_are_ignored() {
        let mut m = SpecialModes::default();
        m.journaled((1, 9), DIR | 0o2775);
        assert!(!m.knows((1, 9)));
        assert_eq!(m.after_event((1, 9), DIR | 0o775, false), None);
        m.journaled((1, 10), REG | 0o2755);
        assert!(m.knows((1, 10)));
        // A re-read finds the bits gone: the read's own record journals the mode.
        m.journaled((1, 10), REG | 0o755);
        assert!(!m.knows((1, 10)));
    }

    /// Regression: chmod u+s by path then an O_TRUNC open, both before the recorder read the
    /// source for the chmod: it found the bits gone already and remembered nothing, so the drop
    /// was never journaled. What the chmod record journals is remembered, not the source now.
    #[test]
    fn a_chmod_remembered_as_journaled_catches_a_drop_that_preceded_its_conversion() {
        let mut m = SpecialModes::default();
        m.journaled((3, 1), REG | 0o4755);
        assert_eq!(m.after_event((3, 1), REG | 0o755, false), Some(0o755));
    }

    #[test]
    fn fchmod_records_are_not_doubled() {
        let mut m = SpecialModes::default();
        m.journaled((2, 1), REG | 0o4700);
        assert_eq!(m.after_event((2, 1), REG | 0o700, true), None);
        assert!(!m.knows((2, 1)));
    }
}
