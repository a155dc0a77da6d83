//! Hostile records applied to a real directory: any sequence of well-formed records with
//! hostile contents (paths with `..`, absolute or NUL-bearing, symlinks planted to lead
//! outside, offsets and sizes at the integer limits, any modes, kinds, flags and times) makes
//! the applier apply or refuse each record, never panic, and never change anything outside
//! its root. (The hand-written cases are in cli.rs `crafted_paths_are_refused_...`; decoding
//! hostile bytes into records is fuzzed.)

use std::path::Path;

use foxing_applier::apply::Applier;
use foxing_applier::fs::FsTree;
use foxing_applier::tree::Tree;
use foxing_proto::{
    EntryKind, EntryMeta, GapReason, Op, Record, RelPath, SyncKind, Writer, Xattr, MAX_FILE_BYTES,
};
use proptest::prelude::*;

/// A name paths are built from: mostly ordinary ones, the planted escapes, and syntax the
/// applier must refuse.
fn component() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("a"),
        4 => Just("b"),
        2 => Just("esc"),
        2 => Just("up"),
        1 => Just(".."),
        1 => Just("."),
        1 => Just(""),
        1 => Just("a\0b"),
    ]
}

fn path(outside: &'static str) -> impl Strategy<Value = RelPath> {
    prop_oneof![
        8 => proptest::collection::vec(component(), 1..4)
            .prop_map(|c| RelPath::new(c.join("/"))),
        1 => Just(RelPath::new(format!("{outside}/victim"))),
        1 => Just(RelPath::new("/etc/foxing-hostile-test")),
        1 => "[a-c]{200,300}".prop_map(RelPath::new),
    ]
}

fn target(outside: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"../outside".to_vec()),
        Just(b"../../../../../../..".to_vec()),
        Just(outside.as_bytes().to_vec()),
        Just(b"/".to_vec()),
        Just(b"a".to_vec()),
        Just(b"a/../../outside/victim".to_vec()),
        Just(Vec::new()),
        Just(b"x\0y".to_vec()),
    ]
}

/// Offsets and sizes: small ones, and the limits where arithmetic overflows.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..70_000,
        1 => Just(MAX_FILE_BYTES),
        1 => Just(MAX_FILE_BYTES - 1),
        1 => Just(i64::MAX as u64),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => any::<u64>(),
    ]
}

/// Lengths of allocating fallocate calls stay small (a real allocation of a terabyte would
/// fill the test machine's disk, which is not what this test is about).
fn alloc_len() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1 << 20, Just(u64::MAX), Just(MAX_FILE_BYTES)]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn kind(outside: &'static str) -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Regular),
        Just(EntryKind::Directory),
        target(outside).prop_map(|target| EntryKind::Symlink { target }),
        Just(EntryKind::Fifo),
        Just(EntryKind::Socket),
        any::<u64>().prop_map(|rdev| EntryKind::CharDevice { rdev }),
        any::<u64>().prop_map(|rdev| EntryKind::BlockDevice { rdev }),
    ]
}

fn xattr_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"user.a".to_vec()),
        Just(b"trusted.t".to_vec()),
        Just(b"system.posix_acl_access".to_vec()),
        Just(b"security.capability".to_vec()),
        bytes(300),
    ]
}

fn meta(outside: &'static str) -> impl Strategy<Value = EntryMeta> {
    (
        kind(outside),
        any::<u32>(),
        (any::<u32>(), any::<u32>()),
        number(),
        (any::<i64>(), any::<i64>()),
        (0u64..3, 0u64..4, any::<u32>()),
        proptest::collection::vec((xattr_name(), bytes(64)), 0..3),
    )
        .prop_map(
            |(kind, mode, (uid, gid), size, (atime_ns, mtime_ns), (dev, ino, nlink), x)| {
                EntryMeta {
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    atime_ns,
                    mtime_ns,
                    dev,
                    ino,
                    nlink,
                    xattrs: x
                        .into_iter()
                        .map(|(name, value)| Xattr { name, value })
                        .collect(),
                }
            },
        )
}

fn op(outside: &'static str) -> impl Strategy<Value = Op> {
    let p = move || path(outside);
    let ids = || (any::<u32>(), any::<u32>());
    prop_oneof![
        (p(), number(), bytes(300)).prop_map(|(path, offset, data)| Op::Write {
            path,
            offset,
            data
        }),
        (p(), number(), number()).prop_map(|(path, offset, len)| Op::Dirty { path, offset, len }),
        (p(), number()).prop_map(|(path, size)| Op::Truncate { path, size }),
        // Any mode bits, with allocating lengths kept small (see alloc_len).
        (p(), any::<u32>(), number(), alloc_len()).prop_map(|(path, mode, offset, len)| {
            Op::Fallocate {
                path,
                mode,
                offset,
                len,
            }
        }),
        (p(), any::<u32>(), ids()).prop_map(|(path, mode, (uid, gid))| Op::Create {
            path,
            mode,
            uid,
            gid
        }),
        (p(), kind(outside), any::<u32>(), ids()).prop_map(|(path, kind, mode, (uid, gid))| {
            Op::Mknod {
                path,
                kind,
                mode,
                uid,
                gid,
            }
        }),
        (p(), any::<u32>(), ids()).prop_map(|(path, mode, (uid, gid))| Op::Mkdir {
            path,
            mode,
            uid,
            gid
        }),
        p().prop_map(|path| Op::Unlink { path }),
        p().prop_map(|path| Op::Rmdir { path }),
        (p(), p(), any::<u32>()).prop_map(|(from, to, flags)| Op::Rename { from, to, flags }),
        (p(), target(outside), ids()).prop_map(|(path, target, (uid, gid))| Op::Symlink {
            path,
            target,
            uid,
            gid
        }),
        (p(), p()).prop_map(|(existing, new)| Op::Link { existing, new }),
        (p(), any::<u32>()).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        (p(), any::<Option<u32>>(), any::<Option<u32>>()).prop_map(|(path, uid, gid)| Op::Chown {
            path,
            uid,
            gid
        }),
        (p(), xattr_name(), bytes(100), any::<u32>()).prop_map(|(path, name, value, flags)| {
            Op::SetXattr {
                path,
                name,
                value,
                flags,
            }
        }),
        (p(), xattr_name()).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        (p(), xattr_name()).prop_map(|(path, name)| Op::RemoveXattrFollow { path, name }),
        (p(), any::<Option<u32>>(), any::<Option<u32>>())
            .prop_map(|(path, uid, gid)| Op::ChownFollow { path, uid, gid }),
        (p(), any::<Option<i64>>(), any::<Option<i64>>()).prop_map(|(path, atime_ns, mtime_ns)| {
            Op::SetTimes {
                path,
                atime_ns,
                mtime_ns,
            }
        }),
        proptest::option::of(p()).prop_map(|path| Op::Sync {
            path,
            kind: SyncKind::Fsync
        }),
        (p(), proptest::option::of(meta(outside)))
            .prop_map(|(path, meta)| Op::Resync { path, meta }),
        (p(), number(), bytes(300)).prop_map(|(path, offset, data)| Op::ResyncData {
            path,
            offset,
            data
        }),
        (0u64..3).prop_map(|base_id| Op::BaseBegin { base_id }),
        (0u64..3).prop_map(|base_id| Op::BaseEnd { base_id }),
        any::<u64>().prop_map(|lost| Op::Gap {
            lost,
            reason: GapReason::RingFull
        }),
        any::<u64>().prop_map(|gap_seq| Op::GapHealed { gap_seq }),
    ]
}

/// Everything under `dir`, with content, modes and owners (what hostile records must not
/// change).
fn picture(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push(format!(
                "{} {:o} {}:{} {} {:?}",
                p.display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                content
            ));
            if m.is_dir() {
                pending.push(p);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn hostile_records_never_panic_nor_reach_outside_the_root(
        ops in proptest::collection::vec(op("/tmp/foxing-hostile-outside"), 1..40)
    ) {
        // One fixed place outside every root (the absolute paths above name it); each case
        // gets a fresh root beside it. Roots live in their own temporary directory.
        let outside = Path::new("/tmp/foxing-hostile-outside");
        std::fs::create_dir_all(outside).unwrap();
        std::fs::write(outside.join("victim"), b"precious").unwrap();
        let before = picture(outside);
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // Planted escapes: a symlink to the outside directory and one up the tree.
        std::os::unix::fs::symlink(outside, root.join("esc")).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        let mut t = FsTree::open(&root).unwrap();
        let mut a = Applier::default();
        for (i, op) in ops.into_iter().enumerate() {
            let r = Record {
                seq: i as u64 + 1,
                time_ns: 1_790_000_000_000_000_000,
                writer: Writer::default(),
                op,
            };
            // Errors are fine (refused or failed records); a panic fails the test.
            let _ = a.apply(&mut t, &r);
        }
        prop_assert_eq!(picture(outside), before);
        prop_assert!(!Path::new("/etc/foxing-hostile-test").exists());
        // Nothing beside the root either (the planted `up` leads there).
        let beside: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(beside, vec![std::ffi::OsString::from("root")]);
    }
}

/// The tree never opens a special file it is asked to write, truncate, fallocate or read:
/// opening a device node runs its driver (a watchdog armed, a tape rewound). The applier
/// checks an entry's kind before such calls, but the entry can change in between; before the
/// fix the tree opened the entry and only then checked its type. Observed with a fifo: a
/// reader's blocking open returns only when some process opens the fifo for writing.
#[test]
fn a_special_file_is_never_opened_for_io() {
    let d = tempfile::tempdir().unwrap();
    let mut t = FsTree::open(d.path()).unwrap();
    let p = RelPath::new("node");
    let fifo = d.path().join("node");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
    // The reader blocks in open until a writer opens the fifo.
    let (tx, rx) = std::sync::mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let _r = std::fs::File::open(&f).unwrap();
        let _ = tx.send(());
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(t.write_at(&p, 0, b"x").is_err());
    assert!(t.truncate(&p, 0).is_err());
    assert!(t.fallocate(&p, 0, 0, 1).is_err());
    assert!(t.read_file(&p).is_err());
    assert!(t.content_digest(&p).is_err());
    let opened = rx
        .recv_timeout(std::time::Duration::from_millis(300))
        .is_ok();
    assert!(!opened, "the tree opened the fifo");
    // Release the reader.
    let _w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
}
