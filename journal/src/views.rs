//! Absolute names as their caller saw them.
//!
//! A path operation that names its target by an absolute path (`unlink("/data/app.db-journal")`)
//! is resolved by the kernel from the caller's root, through the mounts of the caller's mount
//! namespace. The probes send the name and which view it was looked up in (the caller's mount
//! namespace and root directory inode, `FX_F_ABS_VIEW`); this module maps it to a path under the
//! watched root. The name is a string and the lookup happened before the event is converted, so
//! the mapping opens the deepest directory of the name that still exists, in the caller's view
//! (through `/proc/PID/root`, with `RESOLVE_IN_ROOT`), and asks the kernel where that directory
//! lies: by its file handle, reopened through the watched root's own mount. This covers a
//! container whose volume is the watched tree, a chroot, a bind mount of the tree and a
//! symlinked prefix (`/var/lib/db` -> `/srv/db`).
//!
//! A view is reached through a process in it: the reporting process, else the last one found in
//! that view, else any (a scan of /proc), so that events of short-lived processes in a
//! container map through its long-lived ones. No view's root is held open (that would keep a
//! dead container's mounts alive). A view none of whose processes is left cannot be mapped:
//! the caller counts a loss (a gap healed by a base), since the name may have been under the
//! root.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::recorder::resolve_under;

/// Views (mount namespace, root) whose last known process is remembered; past it, the set is
/// cleared (the next name of each costs a scan of /proc).
pub const KNOWN_VIEWS_MAX: usize = 1024;
/// Processes looked at in /proc for one view whose reporting process is gone.
pub const PROC_SCAN_MAX: usize = 65_536;
/// Views remembered as gone (no process left to open them): their later names are Unknown
/// without another scan of /proc. Past it, the set is cleared.
pub const GONE_VIEWS_MAX: usize = 1024;

/// A caller's view: its mount namespace's id (64-bit, never reused within a boot, unlike the
/// namespace's inode number: a namespace made just after another died gets its number) and
/// its root directory's inode.
pub type View = (u64, u64);

/// Where an absolute name lands.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    /// Under the watched root, at this relative path (never empty: the root itself is Outside).
    Under(Vec<u8>),
    Outside,
    /// The caller's view could not be opened: the name may have been under the root.
    Unknown,
}

/// The lexical components of an absolute name (`.` dropped, `..` pops, as at a root).
pub fn components(name: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

pub struct Views {
    root: PathBuf,
    root_dev: u64,
    root_ino: u64,
    /// The watched root, opened: file handles are reopened through its mount.
    root_dir: OwnedFd,
    /// The recorder's own "/", where names of its own view are looked up.
    own_root: OwnedFd,
    own: View,
    /// A process last found in each view.
    known: HashMap<View, u32>,
    gone: std::collections::HashSet<View>,
}

/// `NS_GET_MNTNS_ID` (linux/nsfs.h): _IOR(0xb7, 0x5, __u64).
const NS_GET_MNTNS_ID: libc::c_ulong = 0x8008_b705;

/// The id of process `pid`'s mount namespace.
fn ns_id(pid: u32) -> Option<u64> {
    ns_id_of(&File::open(format!("/proc/{pid}/ns/mnt")).ok()?)
}

/// The id of the mount namespace `f` (an nsfs file) refers to.
fn ns_id_of(f: &File) -> Option<u64> {
    let mut id: u64 = 0;
    // SAFETY: NS_GET_MNTNS_ID writes one u64 through the pointer, which points to `id`; the
    // descriptor is open for the duration of the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_MNTNS_ID as _, &mut id as *mut u64) };
    (r == 0).then_some(id)
}

impl Views {
    /// `root` is the watched root, canonical.
    pub fn new(root: &Path) -> std::io::Result<Views> {
        let root_dir: OwnedFd = File::open(root)?.into();
        let md = std::fs::metadata(root)?;
        let own_root = std::fs::metadata("/")?;
        let own_ns = ns_id(std::process::id()).unwrap_or(0);
        Ok(Views {
            root: root.to_path_buf(),
            root_dev: md.dev(),
            root_ino: md.ino(),
            root_dir,
            own_root: File::open("/")?.into(),
            own: (own_ns, own_root.ino()),
            known: HashMap::new(),
            gone: Default::default(),
        })
    }

    /// The recorder's own view.
    pub fn own_view(&self) -> View {
        self.own
    }

    /// Whether names looked up in `view` are names in the recorder's own view.
    pub fn is_own(&self, view: View) -> bool {
        view == self.own
    }

    /// Maps the absolute `name` that process `tgid` looked up in `view`.
    pub fn map(&mut self, view: View, tgid: u32, name: &[u8]) -> Mapped {
        let comps = components(name);
        if self.is_own(view) {
            let root_abs = self.root.as_os_str().as_bytes();
            if let Some(p) = resolve_under(root_abs, b"", name) {
                return Mapped::Under(p);
            }
            // Not under the root by its letters: a symlinked prefix or a bind mount may still
            // lead there.
            return self.map_from(self.own_root.as_fd(), &comps);
        }
        // The namespace stays open (its descriptor held) through the lookup: a namespace
        // whose last process exits has its mounts taken away, and the name would then lead to
        // what lay beneath them (seen: a removal through a bind mount mapped as outside).
        match self.view_root(view, tgid) {
            Some((_ns, base)) => self.map_from(base.as_fd(), &comps),
            None => Mapped::Unknown,
        }
    }

    /// The root of `view`, opened through a process in it: the reporter, the last process
    /// found in it, else any (a scan of /proc).
    fn view_root(&mut self, view: View, tgid: u32) -> Option<(File, OwnedFd)> {
        if let Some(v) = self.open_view(view, tgid, true) {
            self.remember(view, tgid);
            return Some(v);
        }
        if let Some(v) = self
            .known
            .get(&view)
            .and_then(|&pid| self.open_view(view, pid, false))
        {
            return Some(v);
        }
        if self.gone.contains(&view) {
            return None;
        }
        let found = std::fs::read_dir("/proc").ok().and_then(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .take(PROC_SCAN_MAX)
                .find_map(|pid| Some((pid, self.open_view(view, pid, false)?)))
        });
        match found {
            Some((pid, v)) => {
                self.remember(view, pid);
                Some(v)
            }
            None => {
                if self.gone.len() >= GONE_VIEWS_MAX {
                    self.gone.clear();
                }
                self.gone.insert(view);
                None
            }
        }
    }

    fn remember(&mut self, view: View, pid: u32) {
        if self.known.len() >= KNOWN_VIEWS_MAX && !self.known.contains_key(&view) {
            self.known.clear();
        }
        self.known.insert(view, pid);
    }

    /// `/proc/PID/root` if process `pid` is in `view` (checked after opening: a pid reused
    /// meanwhile by a process elsewhere does not match). The reporter itself needs only be in
    /// the view's namespace: its root's inode as `stat` reports it may differ from the one the
    /// probes read (overlayfs maps inode numbers).
    fn open_view(&self, view: View, pid: u32, reporter: bool) -> Option<(File, OwnedFd)> {
        // The namespace first, held open (it keeps the namespace and its mounts alive), then
        // the root.
        let ns = File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
        if ns_id_of(&ns) != Some(view.0) {
            return None;
        }
        let fd = rustix::fs::open(
            format!("/proc/{pid}/root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        // Still in that namespace once its root is open (not moved by setns meanwhile).
        (ns_id(pid) == Some(view.0) && (reporter || st.st_ino == view.1)).then_some((ns, fd))
    }

    /// Opens the deepest existing directory of `comps` (the name's parent first) from `base`
    /// as the caller's root, and maps it with the rest of the name.
    fn map_from(&self, base: BorrowedFd<'_>, comps: &[&[u8]]) -> Mapped {
        if comps.is_empty() {
            return Mapped::Outside; // "/" itself
        }
        for k in (0..comps.len()).rev() {
            let dir = if k == 0 {
                b".".to_vec()
            } else {
                comps[..k].join(&b'/')
            };
            let fd = match rustix::fs::openat2(
                base,
                OsStr::from_bytes(&dir),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => continue,
                Err(_) => return Mapped::Unknown,
            };
            return match self.below_root(fd.as_fd()) {
                Some(mut prefix) => {
                    for c in &comps[k..] {
                        if !prefix.is_empty() {
                            prefix.push(b'/');
                        }
                        prefix.extend_from_slice(c);
                    }
                    if prefix.is_empty() {
                        Mapped::Outside
                    } else {
                        Mapped::Under(prefix)
                    }
                }
                None => Mapped::Outside,
            };
        }
        Mapped::Unknown
    }

    /// The path below the watched root of the directory `dir` (empty for the root itself),
    /// or None when it is not under the root. Asked of the kernel: the directory's file handle
    /// reopened through the root's mount, whose path is then that mount's view of it.
    fn below_root(&self, dir: BorrowedFd<'_>) -> Option<Vec<u8>> {
        let st = rustix::fs::fstat(dir).ok()?;
        if st.st_dev != self.root_dev {
            return None;
        }
        if st.st_ino == self.root_ino {
            return Some(Vec::new());
        }
        let again = reopen_by_handle(dir, self.root_dir.as_fd())?;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", again.as_raw_fd())).ok()?;
        let rel = resolve_under(
            self.root.as_os_str().as_bytes(),
            b"",
            link.as_os_str().as_bytes(),
        )?;
        // The path must lead to that very directory (not a namesake after a rename).
        let md = std::fs::symlink_metadata(self.root.join(OsStr::from_bytes(&rel))).ok()?;
        (md.dev() == st.st_dev && md.ino() == st.st_ino).then_some(rel)
    }
}

/// `MAX_HANDLE_SZ` (linux/exportfs.h).
const MAX_HANDLE_BYTES: usize = 128;

/// Reopens the file `fd` is open on through the mount of `mount_fd` (name_to_handle_at +
/// open_by_handle_at, O_PATH): None when its filesystem has no file handles.
fn reopen_by_handle(fd: BorrowedFd<'_>, mount_fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, 8-aligned.
    let mut buf = [0u64; 1 + MAX_HANDLE_BYTES / 8];
    buf[0] = MAX_HANDLE_BYTES as u64; // handle_bytes (little-endian low half), type 0
    let handle = buf.as_mut_ptr().cast::<libc::file_handle>();
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `handle` points to a zeroed buffer of 8 + MAX_HANDLE_BYTES bytes, suitably
    // aligned, whose handle_bytes says how much room follows; the kernel writes within it.
    // The path is an empty C string, valid with AT_EMPTY_PATH.
    let r = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            handle,
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: the same buffer, as filled by name_to_handle_at.
    let got = unsafe {
        libc::open_by_handle_at(mount_fd.as_raw_fd(), handle, libc::O_PATH | libc::O_CLOEXEC)
    };
    if got < 0 {
        return None;
    }
    // SAFETY: open_by_handle_at returned a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(got) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_normalize_like_a_lookup_at_the_root() {
        assert_eq!(components(b"/a//b/./c/"), [&b"a"[..], b"b", b"c"]);
        assert_eq!(components(b"/../a/b/../c"), [&b"a"[..], b"c"]);
        assert!(components(b"/").is_empty());
    }

    #[test]
    fn names_through_a_symlinked_prefix_map_under_the_root_and_others_do_not() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("x/y")).unwrap();
        std::fs::create_dir(base.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(&root, base.join("link")).unwrap();
        let mut v = Views::new(&root).unwrap();
        let own = v.own_view();
        let me = std::process::id();
        let abs = |p: &str| base.join(p).into_os_string().into_vec();
        use std::os::unix::ffi::OsStringExt;
        // By its letters (the fast path), through the link, and through the link to a
        // directory removed since (its nearest existing ancestor maps).
        assert_eq!(
            v.map(own, me, &abs("root/x/f")),
            Mapped::Under(b"x/f".to_vec())
        );
        assert_eq!(
            v.map(own, me, &abs("link/x/y/f")),
            Mapped::Under(b"x/y/f".to_vec())
        );
        assert_eq!(
            v.map(own, me, &abs("link/gone/f")),
            Mapped::Under(b"gone/f".to_vec())
        );
        assert_eq!(
            v.map(own, me, &abs("link/x/../f")),
            Mapped::Under(b"f".to_vec())
        );
        assert_eq!(v.map(own, me, &abs("elsewhere/f")), Mapped::Outside);
        assert_eq!(v.map(own, me, &abs("link")), Mapped::Outside);
        assert_eq!(v.map(own, me, b"/"), Mapped::Outside);
        // A view no process is in (its namespace gone) cannot be mapped: the caller counts a
        // loss.
        assert_eq!(v.map((1, 1), me, &abs("link/x/f")), Mapped::Unknown);
    }
}
