//! A data workload for capture tests, run as a child of the test (the recorder ignores its own
//! process): random pwrites, appends, large writes and fsyncs into the existing files of ROOT.
//!
//!     workload ROOT SEED OPS [ns OUTSIDE]
//!
//! With `legacy-times-xattrat`, only utime, utimes, futimesat, setxattrat and removexattrat on
//! ROOT/t0..t4 (each its own file, nothing else), so that nothing else journals those files.
//!
//! With `premapped`, ROOT/premapped.db (1 MiB) is mapped shared first; "mapped" is printed, and
//! the stores begin after a line on stdin (so a recorder can start in between).
//!
//! With `concurrent`, four threads pwrite overlapping ranges of one file at once (each its own
//! byte pattern), so their writes race for the same bytes; `serial` does the same writes from
//! one thread; `racing` mixes ftruncate and fallocate (extend, keep size, punch hole, zero
//! range) into the four threads' writes.
//!
//! With `hammer`, 8-byte pwrites into ROOT/f every 50 us (a writer in flight while a recorder
//! attaches) until a line on stdin, then OPS 512-byte pwrites into the same file.
//!
//! With `chroot`, chroots into ROOT and changes ROOT/src by absolute names as seen inside the
//! chroot (`/src/...`): unlink c1, rename c2 -> c3, mkdir cdir, chmod c4, symlink clink; then
//! stays 500 ms (a recorder maps such names through a process in the same view).
//!
//! With `shift`, fallocate modes that move or zero a file's bytes: COLLAPSE_RANGE and
//! INSERT_RANGE (block-aligned, on ext4 or xfs), ZERO_RANGE, PUNCH_HOLE and WRITE_ZEROES (Linux
//! 6.17+; skipped where the filesystem refuses it), between pwrites into four sparse files.
//!
//! With `uring`, everything goes through io_uring instead of syscalls: openat (O_CREAT,
//! O_TRUNC), write, fallocate (punch hole), ftruncate, fsync, and the path operations
//! (renameat, mkdirat, unlinkat, symlinkat, linkat); `uring-xattr` adds setxattr.
//!
//! With `deep`, a chain of OPS directories under ROOT/deep (deeper than the probes' dentry walk
//! reaches when OPS > 1024): every 100 levels a file is created and written, the file
//! ROOT/deep-pre/... (made before, at the same depth) is rewritten, chmodded and renamed,
//! through paths relative to a directory descriptor deep in the chain.
//!
//! With `ns`, namespace changes too: creates, mkdir, renames (files, directories, over existing
//! targets, RENAME_WHITEOUT), unlink, rmdir, symlinks, hard links, chmod, chown, truncate, and
//! moves into and out of the root from OUTSIDE.

use std::io::Write;
use std::os::unix::fs::FileExt;

fn main() -> anyhow::Result<()> {
    let mut a = std::env::args().skip(1);
    let root = std::path::PathBuf::from(
        a.next()
            .ok_or_else(|| anyhow::anyhow!("usage: workload ROOT SEED OPS"))?,
    );
    let seed: u64 = a.next().unwrap_or_else(|| "1".into()).parse()?;
    let ops: usize = a.next().unwrap_or_else(|| "1000".into()).parse()?;
    let mode = a.next();
    if mode.as_deref() == Some("mmap") {
        return mapped(&root, seed, ops);
    }
    if mode.as_deref() == Some("legacy-times-xattrat") {
        return legacy_times_xattrat(&root);
    }
    if mode.as_deref() == Some("renames-under-open-files") {
        return renames_under_open_files(&root, ops);
    }
    if mode.as_deref() == Some("whiteout-noop") {
        return whiteout_noop(&root, ops);
    }
    if mode.as_deref() == Some("premapped") {
        return premapped(&root, seed, ops);
    }
    if mode.as_deref() == Some("concurrent") {
        return concurrent(&root, seed, ops, 4, false);
    }
    if mode.as_deref() == Some("chroot") {
        std::os::unix::fs::chroot(&root)?;
        std::env::set_current_dir("/")?;
        std::fs::remove_file("/src/c1")?;
        std::fs::rename("/src/c2", "/src/c3")?;
        std::fs::create_dir("/src/cdir")?;
        std::fs::set_permissions(
            "/src/c4",
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        std::os::unix::fs::symlink("t", "/src/clink")?;
        std::thread::sleep(std::time::Duration::from_millis(500));
        return Ok(());
    }
    if mode.as_deref() == Some("hammer") {
        return hammer(&root, ops);
    }
    if mode.as_deref() == Some("serial") {
        return concurrent(&root, seed, ops, 1, false);
    }
    if mode.as_deref() == Some("racing") {
        return concurrent(&root, seed, ops, 4, true);
    }
    if mode.as_deref() == Some("shift") {
        return shift(&root, seed, ops);
    }
    if mode.as_deref() == Some("uring") {
        return uring(&root, seed, ops, false);
    }
    if mode.as_deref() == Some("uring-xattr") {
        return uring(&root, seed, ops, true);
    }
    if mode.as_deref() == Some("deep") {
        return deep(&root, ops);
    }
    if mode.as_deref() == Some("ns") {
        let outside = std::path::PathBuf::from(
            a.next()
                .ok_or_else(|| anyhow::anyhow!("ns needs OUTSIDE"))?,
        );
        return namespace(&root, &outside, seed, ops);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut files = Vec::new();
    for e in walk(&root) {
        if e.is_file() {
            files.push(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&e)?,
            );
        }
    }
    anyhow::ensure!(!files.is_empty(), "no files under {}", root.display());
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("log"))?;
    for i in 0..ops {
        let f = &files[rng.usize(..files.len())];
        match rng.u8(..10) {
            0..=5 => {
                let mut buf = vec![0u8; rng.usize(1..8192)];
                rng.fill(&mut buf);
                f.write_all_at(&buf, rng.u64(..4 << 20))?;
            }
            6 => {
                let mut buf = vec![0u8; rng.usize(300_000..1_200_000)];
                rng.fill(&mut buf);
                f.write_all_at(&buf, rng.u64(..2 << 20))?;
            }
            7 => writeln!(log, "entry {i}")?,
            8 => f.sync_data()?,
            _ => f.sync_all()?,
        }
    }
    Ok(())
}

/// See the module comment (`deep`). Paths stay below PATH_MAX: two bytes a level.
fn deep(root: &std::path::Path, levels: usize) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = root.join("deep");
    std::fs::create_dir_all(&p)?;
    for i in 1..=levels {
        p.push("d");
        std::fs::create_dir(&p)?;
        if i % 100 == 0 || i == levels {
            let f = p.join("f");
            std::fs::write(&f, format!("level {i}\n").repeat(i % 7 + 1))?;
            let h = std::fs::OpenOptions::new().write(true).open(&f)?;
            h.write_all_at(b"rewritten", 3)?;
            h.sync_data()?;
        }
    }
    // A file that existed before the recorder started, at the bottom of a chain as deep.
    let mut q = root.join("deep-pre");
    for _ in 0..levels {
        q.push("d");
    }
    let pre = q.join("pre");
    if pre.exists() {
        let h = std::fs::OpenOptions::new().write(true).open(&pre)?;
        h.write_all_at(b"changed while recorded", 10)?;
        h.set_len(4000)?;
        h.sync_all()?;
        std::fs::set_permissions(&pre, std::fs::Permissions::from_mode(0o640))?;
        std::fs::rename(&pre, q.join("pre-renamed"))?;
    }
    Ok(())
}

/// Stores through shared writable mappings (no write syscalls): random stores of random sizes,
/// repeated stores to the same pages, msync now and then, remaps, a file grown by ftruncate and
/// then written through a new mapping.
fn mapped(root: &std::path::Path, seed: u64, ops: usize) -> anyhow::Result<()> {
    use rustix::mm::{mmap, msync, munmap, MapFlags, MsyncFlags, ProtFlags};
    let mut rng = fastrand::Rng::with_seed(seed);
    let map = |f: &std::fs::File, len: usize| -> anyhow::Result<*mut u8> {
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                f,
                0,
            )?
        };
        Ok(p as *mut u8)
    };
    for name in ["mapped.db", "grown.db"] {
        let path = root.join(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut len = 1usize << 20;
        f.set_len(len as u64)?;
        let mut p = map(&f, len)?;
        for i in 0..ops {
            match rng.u8(..20) {
                0 => unsafe {
                    msync(p as *mut _, len, MsyncFlags::SYNC)?;
                },
                1 if name == "grown.db" && len < 4 << 20 => {
                    // Grow the file and map it again.
                    unsafe { munmap(p as *mut _, len)? };
                    len += 256 << 10;
                    f.set_len(len as u64)?;
                    p = map(&f, len)?;
                }
                2 => {
                    unsafe { munmap(p as *mut _, len)? };
                    p = map(&f, len)?;
                }
                _ => {
                    let n = rng.usize(1..3 * 4096);
                    let at = rng.usize(..len - n);
                    let v = (i % 251) as u8;
                    unsafe { std::ptr::write_bytes(p.add(at), v, n) };
                }
            }
            if i % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        unsafe { munmap(p as *mut _, len)? };
    }
    Ok(())
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            let md = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if md.is_dir() {
                out.extend(walk(&path));
            } else if md.is_file() {
                out.push(path);
            }
        }
    }
    out
}

/// Namespace workload in ROOT/ns (names from a small pool so operations collide).
fn namespace(
    root: &std::path::Path,
    outside: &std::path::Path,
    seed: u64,
    ops: usize,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut rng = fastrand::Rng::with_seed(seed);
    let ns = root.join("ns");
    std::fs::create_dir_all(&ns)?;
    std::fs::create_dir_all(outside)?;
    let names = ["a", "b", "c", "d", "d/x", "d/y", "e", "e/z", "f/g"];
    let pick = |rng: &mut fastrand::Rng| ns.join(names[rng.usize(..names.len())]);
    // FOXING_WORKLOAD_TRACE=1 prints every operation and its outcome (to match a journal).
    let trace = std::env::var_os("FOXING_WORKLOAD_TRACE").is_some();
    for i in 0..ops {
        let p = pick(&mut rng);
        let q = pick(&mut rng);
        // Never open a fifo for writing (it would block): those ops only touch regular files.
        // (opens follow symlinks, so look through them)
        let regular = std::fs::metadata(&p).map(|m| m.is_file()).unwrap_or(false);
        let op = rng.u8(..28);
        let fifo = |x: &std::path::Path| {
            std::fs::metadata(x)
                .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
                .unwrap_or(false)
        };
        if matches!(op, 11 | 16 | 17 | 21 | 22) && !regular
            || matches!(op, 0 | 1 | 15) && fifo(&p)
            || op == 21 && !std::fs::metadata(&q).map(|m| m.is_file()).unwrap_or(false)
        {
            continue;
        }
        // Every call may fail (missing parent, not empty, ...): like a real program, go on.
        let r = match op {
            0 | 1
                if std::fs::metadata(&p)
                    .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
                    .unwrap_or(false) =>
            {
                Ok(())
            }
            0 | 1 => std::fs::write(&p, format!("content {i} {}", "x".repeat(rng.usize(..3000)))),
            2 => std::fs::create_dir(&p),
            3 | 4 => std::fs::rename(&p, &q),
            5 => std::fs::remove_file(&p),
            6 => std::fs::remove_dir(&p),
            7 => std::os::unix::fs::symlink(format!("target-{i}"), &p),
            8 => std::fs::hard_link(&p, &q),
            9 => std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(0o600 | rng.u32(..0o77)),
            ),
            10 => std::os::unix::fs::lchown(&p, Some(1000 + rng.u32(..3)), None),
            11 => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(rng.u64(..5000))),
            12 => {
                // Arrives from outside the root.
                let o = outside.join(format!("in{i}"));
                std::fs::create_dir_all(o.join("sub"))
                    .and_then(|_| std::fs::write(o.join("sub/file"), format!("moved in {i}")))
                    .and_then(|_| std::fs::rename(&o, &p))
            }
            13 => std::fs::rename(&p, outside.join(format!("out{i}"))),
            14 => {
                // truncate(2) by path (std has only ftruncate).
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
                // SAFETY: a valid NUL-terminated path; truncate(2) reads it and returns.
                match unsafe { libc::truncate(c.as_ptr(), rng.u64(..4000) as libc::off_t) } {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            }
            15 => std::fs::File::create(&p).map(|_| ()),
            16 => std::fs::OpenOptions::new()
                .append(true)
                .open(&p)
                .and_then(|mut f| {
                    use std::io::Write;
                    let a = format!("vec {i} ");
                    f.write_vectored(&[
                        std::io::IoSlice::new(a.as_bytes()),
                        std::io::IoSlice::new(b"tail\n"),
                    ])
                    .map(|_| ())
                }),
            17 => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| {
                    use std::os::fd::AsRawFd;
                    // SAFETY: a valid open fd; fallocate(2) only reads its arguments.
                    let r = unsafe {
                        libc::fallocate(
                            f.as_raw_fd(),
                            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                            rng.i64(..2000),
                            rng.i64(1..3000),
                        )
                    };
                    if r == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                }),
            18 => rustix::fs::setxattr(
                &p,
                "user.k",
                format!("v{i}").as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(Into::into),
            19 => rustix::fs::removexattr(&p, "user.k").map_err(Into::into),
            20 => {
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
                // SAFETY: a valid NUL-terminated path.
                match unsafe { libc::mkfifo(c.as_ptr(), 0o640) } {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            }
            23..=25 => {
                // utime(2), utimes(2), futimesat(2) (relative to the ns directory).
                use std::os::fd::AsRawFd;
                use std::os::unix::ffi::OsStrExt;
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
                let secs = 1_600_000_000 + i as libc::time_t;
                let tv = [
                    libc::timeval {
                        tv_sec: secs,
                        tv_usec: 250_000,
                    },
                    libc::timeval {
                        tv_sec: secs + 7,
                        tv_usec: 500_000,
                    },
                ];
                let ub = libc::utimbuf {
                    actime: secs,
                    modtime: secs + 3,
                };
                let rel = p
                    .strip_prefix(&ns)
                    .map(|r| r.as_os_str().as_bytes().to_vec());
                let rc = std::ffi::CString::new(rel.unwrap_or_default()).unwrap_or_default();
                let dir = std::fs::File::open(&ns)?;
                // SAFETY: valid NUL-terminated paths and live time structs; the calls only
                // read them.
                let r = unsafe {
                    match op {
                        23 => libc::utime(c.as_ptr(), &ub),
                        24 => libc::utimes(c.as_ptr(), tv.as_ptr()),
                        _ => libc::syscall(
                            libc::SYS_futimesat,
                            dir.as_raw_fd(),
                            rc.as_ptr(),
                            tv.as_ptr(),
                        ) as libc::c_int,
                    }
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
            26 => {
                // setxattrat(2) / removexattrat(2) (Linux 6.13; x86_64 numbers 463 / 466).
                use std::os::unix::ffi::OsStrExt;
                #[repr(C)]
                struct XattrArgs {
                    value: u64,
                    size: u32,
                    flags: u32,
                }
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
                let v = format!("at{i}");
                let args = XattrArgs {
                    value: v.as_ptr() as u64,
                    size: v.len() as u32,
                    flags: 0,
                };
                // SAFETY: valid NUL-terminated strings and a live xattr_args struct.
                let r = unsafe {
                    if i % 3 == 0 {
                        libc::syscall(466, libc::AT_FDCWD, c.as_ptr(), 0, c"user.at".as_ptr())
                    } else {
                        libc::syscall(
                            463,
                            libc::AT_FDCWD,
                            c.as_ptr(),
                            0,
                            c"user.at".as_ptr(),
                            &args as *const XattrArgs,
                            std::mem::size_of::<XattrArgs>(),
                        )
                    }
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
            // renameat2(RENAME_WHITEOUT): overlayfs' and fsstress' rename, which leaves a
            // whiteout (a 0:0 character device) at the source.
            27 => renameat2(&p, &q, libc::RENAME_WHITEOUT),
            21 => (|| {
                let mut from = std::fs::File::open(&q)?;
                if !from.metadata()?.is_file() {
                    return Ok(());
                }
                let mut to = std::fs::OpenOptions::new().write(true).open(&p)?;
                if !to.metadata()?.is_file() {
                    return Ok(());
                }
                std::io::copy(&mut from, &mut to).map(|_| ())
            })(),
            _ => std::fs::File::options().write(true).open(&p).and_then(|f| {
                f.set_modified(
                    std::time::SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_secs(1_700_000_000 + i as u64),
                )
            }),
        };
        if trace {
            eprintln!(
                "{i} op={op} p={} q={} -> {:?}",
                p.display(),
                q.display(),
                r.err()
            );
        }
    }
    Ok(())
}

/// Submits one io_uring request and waits for its completion; returns its result.
fn uring_one(ring: &mut io_uring::IoUring, sqe: io_uring::squeue::Entry) -> anyhow::Result<i32> {
    // SAFETY: every pointer in `sqe` (paths, buffers) outlives this call, which waits for the
    // request's completion before returning.
    unsafe { ring.submission().push(&sqe)? };
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| anyhow::anyhow!("io_uring: no completion"))?;
    Ok(cqe.result())
}

fn uring(root: &std::path::Path, seed: u64, ops: usize, xattrs: bool) -> anyhow::Result<()> {
    use io_uring::{opcode, types};
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    let mut ring = io_uring::IoUring::new(8)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = std::fs::File::open(root)?;
    let dfd = types::Fd(dir.as_raw_fd());
    let name = |p: String| CString::new(p).expect("no NUL in names");
    for i in 0..ops {
        let a = name(format!("u{}", rng.usize(..8)));
        let b = name(format!("u{}", rng.usize(..8)));
        let res = match rng.usize(..if xattrs { 11 } else { 10 }) {
            0..=3 => {
                let flags =
                    libc::O_CREAT | libc::O_WRONLY | if i % 7 == 0 { libc::O_TRUNC } else { 0 };
                let fd = uring_one(
                    &mut ring,
                    opcode::OpenAt::new(dfd, a.as_ptr())
                        .flags(flags)
                        .mode(0o640)
                        .build(),
                )?;
                if fd < 0 {
                    continue; // a directory by that name
                }
                let f = types::Fd(fd);
                let data = vec![b'a' + (i % 26) as u8; rng.usize(1..20_000)];
                let off = rng.u64(..100_000);
                let w = uring_one(
                    &mut ring,
                    opcode::Write::new(f, data.as_ptr(), data.len() as u32)
                        .offset(off)
                        .build(),
                )?;
                anyhow::ensure!(w == data.len() as i32, "io_uring write returned {w}");
                match rng.usize(..3) {
                    0 => uring_one(
                        &mut ring,
                        opcode::Fallocate::new(f, 4096)
                            .offset(off & !4095)
                            .mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE)
                            .build(),
                    )?,
                    1 => uring_one(
                        &mut ring,
                        opcode::Ftruncate::new(f, rng.u64(..120_000)).build(),
                    )?,
                    _ => uring_one(&mut ring, opcode::Fsync::new(f).build())?,
                };
                // SAFETY: fd came from the OpenAt above and is closed once.
                unsafe { libc::close(fd) };
                0
            }
            4 | 5 => uring_one(
                &mut ring,
                opcode::RenameAt::new(dfd, a.as_ptr(), dfd, b.as_ptr()).build(),
            )?,
            6 => uring_one(
                &mut ring,
                opcode::MkDirAt::new(dfd, a.as_ptr()).mode(0o750).build(),
            )?,
            7 => uring_one(&mut ring, opcode::UnlinkAt::new(dfd, a.as_ptr()).build())?,
            8 => uring_one(
                &mut ring,
                opcode::SymlinkAt::new(dfd, b.as_ptr(), a.as_ptr()).build(),
            )?,
            9 => uring_one(
                &mut ring,
                opcode::LinkAt::new(dfd, a.as_ptr(), dfd, b.as_ptr()).build(),
            )?,
            _ => {
                use std::os::unix::ffi::OsStrExt;
                let path = CString::new(
                    root.join(format!("u{}", rng.usize(..8)))
                        .as_os_str()
                        .as_bytes(),
                )?;
                let value = format!("v{i}");
                uring_one(
                    &mut ring,
                    opcode::SetXattr::new(
                        c"user.uring".as_ptr(),
                        value.as_ptr().cast(),
                        path.as_ptr(),
                        value.len() as u32,
                    )
                    .build(),
                )?
            }
        };
        // Failures (a name already taken, a directory not empty) are part of the workload.
        let _ = res;
    }
    Ok(())
}

fn concurrent(
    root: &std::path::Path,
    seed: u64,
    ops: usize,
    threads: u8,
    resize: bool,
) -> anyhow::Result<()> {
    let f = std::sync::Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(root.join("contended.db"))?,
    );
    let threads: Vec<_> = (0..threads)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut rng = fastrand::Rng::with_seed(seed + t as u64);
                use rustix::fs::{fallocate, FallocateFlags};
                for i in 0..ops {
                    if resize && rng.u8(..8) == 0 {
                        let (off, n) = (rng.u64(..4096), rng.u64(1..1024));
                        match rng.u8(..5) {
                            0 => f.set_len(rng.u64(..6000))?,
                            1 => fallocate(&*f, FallocateFlags::empty(), off, n)?,
                            2 => fallocate(&*f, FallocateFlags::KEEP_SIZE, off, n)?,
                            3 => fallocate(
                                &*f,
                                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                                off,
                                n,
                            )?,
                            _ => fallocate(&*f, FallocateFlags::ZERO_RANGE, off, n)?,
                        }
                        continue;
                    }
                    let len = rng.usize(1..512);
                    let data = vec![b'A' + t * 8 + (i % 8) as u8; len];
                    f.write_at(&data, rng.u64(..4096))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
    }
    Ok(())
}

fn shift(root: &std::path::Path, seed: u64, ops: usize) -> anyhow::Result<()> {
    use rustix::fs::{fallocate, FallocateFlags};
    /// FALLOC_FL_WRITE_ZEROES (Linux 6.17), not in this libc's headers yet.
    const WRITE_ZEROES: u32 = 0x80;
    const BLOCK: u64 = 4096;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut files = Vec::new();
    for i in 0..4 {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(root.join(format!("shift{i}.db")))?;
        // Data at every other 16 KiB, holes between: shifts move both.
        for k in 0..16u64 {
            f.write_at(&vec![b'a' + (k % 26) as u8; 16 << 10], k * (32 << 10))?;
        }
        files.push(f);
    }
    let (mut shifted, mut zeroed) = (0, 0);
    for i in 0..ops {
        let f = &files[rng.usize(..files.len())];
        let size = f.metadata()?.len();
        let blocks = size / BLOCK;
        let r = match rng.u8(..6) {
            0 if blocks > 2 => {
                let off = rng.u64(..blocks - 1) * BLOCK;
                let len = rng.u64(1..=(blocks - off / BLOCK - 1).min(8)) * BLOCK;
                shifted += 1;
                fallocate(f, FallocateFlags::COLLAPSE_RANGE, off, len)
            }
            1 if blocks > 0 && size < 4 << 20 => {
                let off = rng.u64(..blocks) * BLOCK;
                shifted += 1;
                fallocate(f, FallocateFlags::INSERT_RANGE, off, rng.u64(1..8) * BLOCK)
            }
            2 => fallocate(
                f,
                FallocateFlags::ZERO_RANGE,
                rng.u64(..size + 1),
                rng.u64(1..20_000),
            ),
            3 => fallocate(
                f,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                rng.u64(..size + 1),
                rng.u64(1..20_000),
            ),
            4 => {
                let r = fallocate(
                    f,
                    FallocateFlags::from_bits_retain(WRITE_ZEROES),
                    rng.u64(..size + 1),
                    rng.u64(1..20_000),
                );
                zeroed += r.is_ok() as usize;
                match r {
                    Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL) => Ok(()),
                    r => r,
                }
            }
            _ => {
                let data = vec![b'A' + (i % 26) as u8; rng.usize(1..10_000)];
                f.write_at(&data, rng.u64(..size + 1))?;
                Ok(())
            }
        };
        r.map_err(|e| anyhow::anyhow!("fallocate op {i}: {e}"))?;
    }
    eprintln!("shift: {shifted} collapse/insert, {zeroed} write-zeroes");
    Ok(())
}

fn hammer(root: &std::path::Path, ops: usize) -> anyhow::Result<()> {
    use std::io::BufRead;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("f"))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (f, stop) = (f.try_clone()?, stop.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all_at(&n.to_le_bytes(), (n % 1024) * 8)?;
                n += 1;
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            Ok(())
        })
    };
    println!("hammering");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("hammer thread panicked"))??;
    for i in 0..ops as u64 {
        f.write_all_at(&[i as u8; 512], (i % 128) * 512)?;
    }
    Ok(())
}

fn premapped(root: &std::path::Path, seed: u64, ops: usize) -> anyhow::Result<()> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    use std::io::BufRead;
    let mut rng = fastrand::Rng::with_seed(seed);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(root.join("premapped.db"))?;
    let len = 1usize << 20;
    f.set_len(len as u64)?;
    // SAFETY: a fresh shared mapping of a file this process keeps open; unmapped below.
    let p = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &f,
            0,
        )?
    } as *mut u8;
    println!("mapped");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    for i in 0..ops {
        let n = rng.usize(1..3 * 4096);
        let at = rng.usize(..len - n);
        // SAFETY: at + n < len, inside the mapping.
        unsafe { std::ptr::write_bytes(p.add(at), (i % 251) as u8, n) };
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    // SAFETY: the mapping made above, unmapped once.
    unsafe { munmap(p as *mut _, len)? };
    Ok(())
}

fn legacy_times_xattrat(root: &std::path::Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = |n: &str| std::ffi::CString::new(root.join(n).as_os_str().as_bytes());
    let check = |r: libc::c_long, what: &str| {
        anyhow::ensure!(r == 0, "{what}: {}", std::io::Error::last_os_error());
        Ok(())
    };
    let tv = [
        libc::timeval {
            tv_sec: 1_500_000_000,
            tv_usec: 250_000,
        },
        libc::timeval {
            tv_sec: 1_500_000_100,
            tv_usec: 500_000,
        },
    ];
    let ub = libc::utimbuf {
        actime: 1_400_000_000,
        modtime: 1_400_000_050,
    };
    let dir = std::fs::File::open(root)?;
    let (t0, t1, t3) = (c("t0")?, c("t1")?, c("t3")?);
    #[repr(C)]
    struct XattrArgs {
        value: u64,
        size: u32,
        flags: u32,
    }
    let v = b"set-by-setxattrat";
    let args = XattrArgs {
        value: v.as_ptr() as u64,
        size: v.len() as u32,
        flags: 0,
    };
    // SAFETY: valid NUL-terminated strings and live structs, only read by the kernel.
    unsafe {
        check(libc::utime(t0.as_ptr(), &ub) as libc::c_long, "utime")?;
        check(
            libc::utimes(t1.as_ptr(), tv.as_ptr()) as libc::c_long,
            "utimes",
        )?;
        check(
            libc::syscall(
                libc::SYS_futimesat,
                dir.as_raw_fd(),
                c"t2".as_ptr(),
                tv.as_ptr(),
            ),
            "futimesat",
        )?;
        // setxattrat(2) / removexattrat(2): x86_64 numbers 463 / 466 (Linux 6.13).
        check(
            libc::syscall(
                463,
                libc::AT_FDCWD,
                t3.as_ptr(),
                0,
                c"user.at".as_ptr(),
                &args as *const XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            ),
            "setxattrat",
        )?;
        check(
            libc::syscall(
                466,
                dir.as_raw_fd(),
                c"t4".as_ptr(),
                0,
                c"user.gone".as_ptr(),
            ),
            "removexattrat",
        )?;
    }
    Ok(())
}

fn renameat2(from: &std::path::Path, to: &std::path::Path, flags: u32) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated paths; renameat2 only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `rounds` times, back to back: a RENAME_WHITEOUT between two hard links of one file (the
/// kernel does nothing, no whiteout), then a RENAME_WHITEOUT of the same name to a new name
/// (moves it, leaves a whiteout), then a user xattr on the moved file. A recorder that decides
/// about the first rename's whiteout from the source's later state journals one too early.
fn whiteout_noop(root: &std::path::Path, rounds: usize) -> anyhow::Result<()> {
    for i in 0..rounds {
        let (x, y, z) = (
            root.join(format!("x{i}")),
            root.join(format!("y{i}")),
            root.join(format!("z{i}")),
        );
        std::fs::write(&x, format!("round {i}"))?;
        std::fs::hard_link(&x, &y)?;
        renameat2(&x, &y, libc::RENAME_WHITEOUT)?;
        renameat2(&x, &z, libc::RENAME_WHITEOUT)?;
        rustix::fs::setxattr(&z, "user.round", b"1", rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Files written through descriptors kept open while they move: first out of the root (writes
/// there are not journaled) and back in, which costs a base, then, `rounds` times, while their
/// directories, ancestors and the files themselves are renamed and two directories exchanged.
/// Every write must be journaled under the name the file has at that moment: the probes' path
/// cache must notice every rename, and a cached "outside" verdict must not outlive the move.
fn renames_under_open_files(root: &std::path::Path, rounds: usize) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let open_rw = |p: &std::path::Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(p)
    };
    let outside = root.with_extension("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::create_dir_all(root.join("o"))?;
    let f = open_rw(&root.join("o/f"))?;
    f.write_at(b"before;", 0)?;
    std::fs::rename(root.join("o"), outside.join("o"))?;
    f.write_at(b"outside;", 16)?;
    std::fs::rename(outside.join("o"), root.join("o"))?;
    // The base that the move in costs reads o/f; once it is surely done, writes count again.
    std::thread::sleep(std::time::Duration::from_secs(2));
    f.write_at(b"back;", 32)?;
    std::fs::remove_dir_all(&outside)?;
    for i in 0..rounds {
        let top = root.join(format!("t{i}"));
        std::fs::create_dir_all(top.join("a/b"))?;
        std::fs::create_dir_all(top.join("x"))?;
        let f = open_rw(&top.join("a/b/f"))?;
        let g = open_rw(&top.join("x/g"))?;
        let w = |f: &std::fs::File, n: u64, tag: &str| {
            f.write_at(format!("{tag}{i};").as_bytes(), n * 24)
        };
        w(&f, 0, "start")?;
        w(&g, 0, "start")?;
        std::fs::rename(top.join("a/b"), top.join("a/c"))?; // the file's directory
        w(&f, 1, "dir-renamed")?;
        std::fs::rename(top.join("a"), top.join("A"))?; // an ancestor
        w(&f, 2, "ancestor-renamed")?;
        std::fs::rename(top.join("A/c/f"), top.join("A/c/f2"))?; // the file itself
        w(&f, 3, "file-renamed")?;
        renameat2(&top.join("A"), &top.join("x"), libc::RENAME_EXCHANGE)?; // swap two dirs
        w(&f, 4, "exchanged")?;
        w(&g, 1, "exchanged")?;
    }
    Ok(())
}
