//! Shared by the applier tests: a random workload run on a source model tree, recorded as the
//! recorder would journal it (only calls that succeeded), with snapshots at sync points.
#![allow(dead_code)]

use foxing_applier::model::ModelTree;
use foxing_applier::snapshot::{snapshot, user_xattrs, EntrySnap};
use foxing_applier::tree::{join, NodeKind, Tree};
use foxing_proto::record::{
    EntryKind, EntryMeta, Xattr, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, RENAME_EXCHANGE,
    RENAME_NOREPLACE, RENAME_WHITEOUT,
};
use foxing_proto::{Op, Record, RelPath, SyncKind, Writer};
use proptest::prelude::*;
use std::collections::BTreeMap;

pub type Snap = BTreeMap<RelPath, EntrySnap>;

const NAMES: [&str; 9] = ["a", "b", "c", "d/a", "d/b", "d/e/a", "e", "e/a", "d/e"];

#[derive(Clone, Debug)]
pub enum Act {
    Write(usize, u64, Vec<u8>),
    Truncate(usize, u64),
    Punch(usize, u64, u64),
    Create(usize, u32),
    Mkdir(usize, u32),
    Unlink(usize),
    Rmdir(usize),
    Rename(usize, usize, u32),
    Symlink(usize, usize),
    Link(usize, usize),
    Chmod(usize, u32),
    Chown(usize, u32),
    SetXattr(usize, u8, Vec<u8>),
    RemoveXattr(usize, u8),
    Times(usize, i64),
    Resync(usize),
    Base,
    Fsync,
}

/// `act()` plus directories made or turned setgid (their new entries inherit group and bit).
/// Separate so the fixed-seed workloads of the CLI tests stay what they were.
#[allow(dead_code)]
pub fn act_with_setgid_dirs() -> impl Strategy<Value = Act> {
    let i = 0..NAMES.len();
    prop_oneof![
        12 => act(),
        1 => i.clone().prop_map(|p| Act::Mkdir(p, 0o2775)),
        1 => i.prop_map(|p| Act::Chmod(p, 0o2775)),
    ]
}

pub fn act() -> impl Strategy<Value = Act> {
    let i = 0..NAMES.len();
    let mode = prop_oneof![
        Just(0o755u32),
        Just(0o700),
        Just(0o644),
        Just(0o600),
        Just(0o4755)
    ];
    prop_oneof![
        4 => (i.clone(), 0u64..9000, proptest::collection::vec(any::<u8>(), 1..600)).prop_map(|(p, o, d)| Act::Write(p, o, d)),
        1 => (i.clone(), 0u64..10000).prop_map(|(p, s)| Act::Truncate(p, s)),
        1 => (i.clone(), 0u64..8000, 1u64..5000).prop_map(|(p, o, l)| Act::Punch(p, o, l)),
        3 => (i.clone(), mode.clone()).prop_map(|(p, m)| Act::Create(p, m)),
        3 => (i.clone(), mode.clone()).prop_map(|(p, m)| Act::Mkdir(p, m)),
        1 => i.clone().prop_map(Act::Unlink),
        1 => i.clone().prop_map(Act::Rmdir),
        3 => (i.clone(), i.clone(), prop_oneof![Just(0u32), Just(RENAME_NOREPLACE), Just(RENAME_EXCHANGE), Just(RENAME_WHITEOUT), Just(RENAME_WHITEOUT | RENAME_NOREPLACE)]).prop_map(|(a, b, f)| Act::Rename(a, b, f)),
        1 => (i.clone(), i.clone()).prop_map(|(a, b)| Act::Symlink(a, b)),
        1 => (i.clone(), i.clone()).prop_map(|(a, b)| Act::Link(a, b)),
        1 => (i.clone(), mode).prop_map(|(p, m)| Act::Chmod(p, m)),
        1 => (i.clone(), 0u32..3).prop_map(|(p, u)| Act::Chown(p, 1000 + u)),
        1 => (i.clone(), 0u8..3, proptest::collection::vec(any::<u8>(), 0..20)).prop_map(|(p, n, v)| Act::SetXattr(p, n, v)),
        1 => (i.clone(), 0u8..3).prop_map(|(p, n)| Act::RemoveXattr(p, n)),
        1 => (i.clone(), 0i64..2_000_000_000_000_000_000).prop_map(|(p, t)| Act::Times(p, t)),
        1 => i.prop_map(Act::Resync),
        1 => Just(Act::Base),
        2 => Just(Act::Fsync),
    ]
}

pub fn p(i: usize) -> RelPath {
    RelPath::new(NAMES[i])
}

fn xname(n: u8) -> Vec<u8> {
    format!("user.k{n}").into_bytes()
}

/// What a recorder reading `path` from the source would journal: its metadata, then its content.
fn resync_records(src: &mut ModelTree, path: &RelPath, ops: &mut Vec<Op>) {
    let st = match src.stat(path) {
        Ok(Some(st)) => st,
        Ok(None) => {
            ops.push(Op::Resync {
                path: path.clone(),
                meta: None,
            });
            return;
        }
        Err(_) => return, // through a symlink: not a path a recorder reports
    };
    let kind = match &st.kind {
        NodeKind::Regular => EntryKind::Regular,
        NodeKind::Directory => EntryKind::Directory,
        NodeKind::Symlink(t) => EntryKind::Symlink { target: t.clone() },
        NodeKind::Fifo => EntryKind::Fifo,
        NodeKind::Socket => EntryKind::Socket,
        NodeKind::CharDevice(r) => EntryKind::CharDevice { rdev: *r },
        NodeKind::BlockDevice(r) => EntryKind::BlockDevice { rdev: *r },
    };
    let mut xattrs = Vec::new();
    if !matches!(st.kind, NodeKind::Symlink(_)) {
        for n in src.list_xattrs(path).unwrap() {
            let value = src.get_xattr(path, &n).unwrap().unwrap_or_default();
            xattrs.push(Xattr { name: n, value });
        }
    }
    let meta = EntryMeta {
        kind,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        atime_ns: 0,
        mtime_ns: 0,
        dev: 1,
        ino: st.ino,
        nlink: st.nlink as u32,
        xattrs,
    };
    ops.push(Op::Resync {
        path: path.clone(),
        meta: Some(meta),
    });
    if st.kind == NodeKind::Regular {
        let data = src.read_file(path).unwrap();
        for (i, chunk) in data.chunks(1000).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                ops.push(Op::ResyncData {
                    path: path.clone(),
                    offset: i as u64 * 1000,
                    data: chunk.to_vec(),
                });
            }
        }
    }
}

fn base_records(src: &mut ModelTree, dir: Option<&RelPath>, ops: &mut Vec<Op>) {
    for name in src.list_dir(dir).unwrap() {
        let path = join(dir, &name);
        resync_records(src, &path, ops);
        if src.stat(&path).unwrap().map(|s| s.kind) == Some(NodeKind::Directory) {
            base_records(src, Some(&path), ops);
        }
    }
}

/// Runs the workload on a source model; returns the source and the journal it produced.
pub fn record(acts: &[Act]) -> (ModelTree, Vec<Record>) {
    let (src, recs, _) = record_with_snapshots(acts, false);
    (src, recs)
}

/// Also returns the source's snapshot after each Sync record (by seq) when `snapshots`.
pub fn record_with_snapshots(
    acts: &[Act],
    snapshots: bool,
) -> (ModelTree, Vec<Record>, Vec<(u64, Snap)>) {
    let mut snaps = Vec::new();
    let mut src = ModelTree::default();
    let mut ops = Vec::new();
    let mut base_id = 0;
    for a in acts {
        let ok = match a {
            Act::Write(i, o, d) => src.write_at(&p(*i), *o, d).map(|_| Op::Write {
                path: p(*i),
                offset: *o,
                data: d.clone(),
            }),
            Act::Truncate(i, s) => src.truncate(&p(*i), *s).map(|_| Op::Truncate {
                path: p(*i),
                size: *s,
            }),
            Act::Punch(i, o, l) => {
                let mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
                src.fallocate(&p(*i), mode, *o, *l).map(|_| Op::Fallocate {
                    path: p(*i),
                    mode,
                    offset: *o,
                    len: *l,
                })
            }
            Act::Create(i, m) => src.create_file(&p(*i), *m).map(|_| Op::Create {
                path: p(*i),
                mode: *m,
                uid: 0,
                gid: 0,
            }),
            Act::Mkdir(i, m) => src.mkdir(&p(*i), *m).map(|_| Op::Mkdir {
                path: p(*i),
                mode: *m,
                uid: 0,
                gid: 0,
            }),
            Act::Unlink(i) => src.unlink(&p(*i)).map(|_| Op::Unlink { path: p(*i) }),
            Act::Rmdir(i) => src.rmdir(&p(*i)).map(|_| Op::Rmdir { path: p(*i) }),
            Act::Rename(a, b, f) => src.rename(&p(*a), &p(*b), *f).map(|_| Op::Rename {
                from: p(*a),
                to: p(*b),
                flags: *f,
            }),
            Act::Symlink(i, t) => {
                let target = format!("../{}", NAMES[*t]).into_bytes();
                src.symlink(&p(*i), &target).map(|_| Op::Symlink {
                    path: p(*i),
                    target,
                    uid: 0,
                    gid: 0,
                })
            }
            Act::Link(a, b) => src.link(&p(*a), &p(*b)).map(|_| Op::Link {
                existing: p(*a),
                new: p(*b),
            }),
            Act::Chmod(i, m) => src.chmod(&p(*i), *m).map(|_| Op::Chmod {
                path: p(*i),
                mode: *m,
            }),
            Act::Chown(i, u) => src.chown(&p(*i), Some(*u), None).map(|_| Op::Chown {
                path: p(*i),
                uid: Some(*u),
                gid: None,
            }),
            Act::SetXattr(i, n, v) => match src.stat(&p(*i)) {
                Ok(Some(s)) if !matches!(s.kind, NodeKind::Symlink(_)) => {
                    src.set_xattr(&p(*i), &xname(*n), v).map(|_| Op::SetXattr {
                        path: p(*i),
                        name: xname(*n),
                        value: v.clone(),
                        flags: 0,
                    })
                }
                _ => continue,
            },
            Act::RemoveXattr(i, n) => match src.get_xattr(&p(*i), &xname(*n)) {
                Ok(Some(_)) => src
                    .remove_xattr(&p(*i), &xname(*n))
                    .map(|_| Op::RemoveXattr {
                        path: p(*i),
                        name: xname(*n),
                    }),
                _ => continue,
            },
            Act::Times(i, t) => src.set_times(&p(*i), None, Some(*t)).map(|_| Op::SetTimes {
                path: p(*i),
                atime_ns: None,
                mtime_ns: Some(*t),
            }),
            Act::Resync(i) => {
                resync_records(&mut src, &p(*i), &mut ops);
                continue;
            }
            Act::Fsync => {
                ops.push(Op::Sync {
                    path: None,
                    kind: SyncKind::Syncfs,
                });
                if snapshots {
                    snaps.push((ops.len() as u64, snapshot(&mut src, user_xattrs).unwrap()));
                }
                continue;
            }
            Act::Base => {
                base_id += 1;
                ops.push(Op::BaseBegin { base_id });
                base_records(&mut src, None, &mut ops);
                ops.push(Op::BaseEnd { base_id });
                continue;
            }
        };
        if let Ok(op) = ok {
            ops.push(op);
        }
    }
    let recs = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| Record {
            seq: i as u64 + 1,
            time_ns: i as u64,
            writer: Writer::default(),
            op,
        })
        .collect();
    (src, recs, snaps)
}
