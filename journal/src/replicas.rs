//! Per-replica acknowledged seqs (`JDIR/replicas.redb`). Kept apart from the index because the
//! shipper, not the recorder, writes them: redb's MultiWriter mode lets both processes open it.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{DbContext, IoContext, Result};
use crate::Layout;

/// replica name -> (acknowledged seq, time of the ack in ns)
pub const REPLICAS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("replicas");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaAck {
    pub name: String,
    pub acked_seq: u64,
    pub time_ns: u64,
}

pub struct ReplicaAcks {
    db: redb::Database,
    path: std::path::PathBuf,
}

impl ReplicaAcks {
    /// Opens (creating if needed) the replica table of the journal in `dir`.
    pub fn open(dir: &Path) -> Result<ReplicaAcks> {
        let path = Layout::new(dir).replicas;
        let creating = crate::newdb::creating(&path).ctx("create", &path)?;
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(creating.path())
            .db(&path)?;
        let txn = db.begin_write().db(&path)?;
        txn.open_table(REPLICAS).db(&path)?;
        txn.commit().db(&path)?;
        creating.finish().ctx("create", &path)?;
        Ok(ReplicaAcks { db, path })
    }

    /// Records that `name` holds everything up to `seq` durably. Never moves an ack backwards.
    pub fn set(&self, name: &str, seq: u64, time_ns: u64) -> Result<()> {
        let p = &self.path;
        let txn = self.db.begin_write().db(p)?;
        {
            let mut t = txn.open_table(REPLICAS).db(p)?;
            let old = t.get(name).db(p)?.map(|v| v.value().0).unwrap_or(0);
            if seq >= old {
                t.insert(name, (seq, time_ns)).db(p)?;
            }
        }
        txn.commit().db(p)
    }

    /// Forgets a replica (it no longer holds back prune).
    pub fn remove(&self, name: &str) -> Result<bool> {
        let p = &self.path;
        let txn = self.db.begin_write().db(p)?;
        let had = txn
            .open_table(REPLICAS)
            .db(p)?
            .remove(name)
            .db(p)?
            .is_some();
        txn.commit().db(p)?;
        Ok(had)
    }

    pub fn list(&self) -> Result<Vec<ReplicaAck>> {
        let p = &self.path;
        let r = self.db.begin_read().db(p)?;
        let t = r.open_table(REPLICAS).db(p)?;
        let mut out = Vec::new();
        for e in t.iter().db(p)? {
            let (k, v) = e.db(p)?;
            out.push(ReplicaAck {
                name: k.value().to_string(),
                acked_seq: v.value().0,
                time_ns: v.value().1,
            });
        }
        Ok(out)
    }
}

/// Lists the acks of the journal in `dir` without creating anything if there are none.
pub fn list_acks(dir: &Path) -> Result<Vec<ReplicaAck>> {
    if !Layout::new(dir).replicas.exists() {
        return Ok(Vec::new());
    }
    ReplicaAcks::open(dir)?.list()
}
