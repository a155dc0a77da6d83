//! Creating a redb database so that a crash during its creation never leaves a half-made file
//! where a real database is expected: a new database is made (and its tables created) under a
//! temporary name, then renamed into place and the directory synced. A crash before the rename
//! leaves only the temporary file, which the next attempt removes; an existing database is
//! opened where it is, never replaced.
//!
//! Regression: a `kill -9` of the applier 2 ms after its start left `state.redb` without its
//! header ("Not a redb database: magic number mismatch"), and every restart failed on it.

use std::path::{Path, PathBuf};

/// A database about to be opened at `path`: call [`Creating::path`] to open it, initialize
/// it, then [`Creating::finish`].
#[derive(Debug)]
pub struct Creating {
    at: PathBuf,
    target: PathBuf,
    fresh: bool,
}

/// Where to open the database that belongs at `path` (removing a temporary one a crash left).
pub fn creating(path: &Path) -> std::io::Result<Creating> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fresh = !path.try_exists()?;
    Ok(Creating {
        at: if fresh { tmp } else { path.to_path_buf() },
        target: path.to_path_buf(),
        fresh,
    })
}

impl Creating {
    /// The path to open the database at now.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Moves a new, initialized database into place (the open handle follows the file).
    pub fn finish(self) -> std::io::Result<()> {
        if !self.fresh {
            return Ok(());
        }
        std::fs::rename(&self.at, &self.target)?;
        if let Some(dir) = self.target.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_half_made_database_is_removed_and_an_existing_one_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.redb");
        std::fs::write(d.path().join("x.redb.new"), b"half").unwrap();
        let c = creating(&p).unwrap();
        assert_eq!(c.path(), d.path().join("x.redb.new"));
        assert!(!c.path().exists(), "the leftover is gone");
        let db = redb::Database::create(c.path()).unwrap();
        c.finish().unwrap();
        drop(db);
        assert!(p.exists());
        let c = creating(&p).unwrap();
        assert_eq!(c.path(), p, "an existing database is opened in place");
        redb::Database::create(c.path()).unwrap();
        c.finish().unwrap();
    }
}
