"""fsstress-style concurrent namespace and data operations, for scripts/fsstress-torture.sh.

usage: python3 fsstress.py SEED OPS [PROCS]   (in the directory to work in)
EXCL=op,op leaves operations out; LOG=1 prints each operation to stderr.

PROCS processes (default 4) each run OPS random operations on one shared tree of few names
(directories d0..d3, files f0..f5, nested a few levels; names are mostly picked among the
entries that exist), so that they collide all the time: creates,
writes (pwrite, O_APPEND, O_TRUNC), truncates, fallocate (punch, zero), mkdir, rmdir, renames
of files and directories across levels (over existing targets, RENAME_EXCHANGE,
RENAME_NOREPLACE, RENAME_WHITEOUT), hard links, symlinks, unlinks, chmod, xattrs, utimes,
shared-mapping stores, fsync. Every error (ENOENT, ENOTEMPTY, EINVAL, ...) is ignored: the
point is what the source ends with, which the replica must equal.
"""
import ctypes, mmap, os, random, sys

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
KEEP, PUNCH, ZERO = 1, 2, 16
AT_FDCWD = -100

seed = int(sys.argv[1])
n = int(sys.argv[2])
procs = int(sys.argv[3]) if len(sys.argv) > 3 else 4
excl = os.environ.get("EXCL", "").split(",")
log = os.environ.get("LOG") == "1"

OPS = [o for o in [
    "create", "write", "write", "append", "otrunc", "trunc", "punch", "zero",
    "mkdir", "mkdir", "rmdir", "rename", "rename", "renamedir", "exchange", "noreplace",
    "whiteout", "link", "symlink", "unlink", "chmod", "xattr", "utimes", "mapw", "fsync",
] if o not in excl]


def rand_dir(r):
    """An existing directory most of the time: descends from the top while a coin says so."""
    d = ""
    for _ in range(4):
        if r.random() < 0.4:
            break
        try:
            subs = sorted(e.name for e in os.scandir(d or ".") if e.is_dir(follow_symlinks=False))
        except OSError:
            break
        if not subs:
            break
        d = (d + "/" if d else "") + r.choice(subs)
    if r.random() < 0.1:
        # Sometimes a directory that may not exist.
        d = (d + "/" if d else "") + "d%d" % r.randrange(4)
    return d


def rand_path(r, prefix="f"):
    """A name in a random directory: an existing entry of the kind asked for, or a new name."""
    d = rand_dir(r)
    name = "%s%d" % (prefix, r.randrange(6 if prefix == "f" else 4))
    if r.random() < 0.6:
        try:
            want_dir = prefix == "d"
            names = sorted(e.name for e in os.scandir(d or ".")
                           if e.is_dir(follow_symlinks=False) == want_dir)
            if names:
                name = r.choice(names)
        except OSError:
            pass
    return d + "/" + name if d else name


def rename2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")


def one(r, i, me):
    op = r.choice(OPS)
    p = rand_path(r)
    q = rand_path(r, r.choice(["f", "d"]))
    b = bytes([r.randrange(256)])
    off = r.randrange(0, 256 * 1024)
    ln = r.randrange(1, 32 * 1024)
    if log:
        sys.stderr.write("%d %d %s %s %s\n" % (me, i, op, p, q))
    if op == "create":
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b * ln)
        os.close(fd)
    elif op == "write":
        fd = os.open(p, os.O_WRONLY)
        os.pwrite(fd, b * ln, off)
        os.close(fd)
    elif op == "append":
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b * ln)
        os.close(fd)
    elif op == "otrunc":
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b * (ln // 4))
        os.close(fd)
    elif op == "trunc":
        os.truncate(p, r.randrange(0, 256 * 1024))
    elif op in ("punch", "zero"):
        fd = os.open(p, os.O_WRONLY)
        mode = PUNCH | KEEP if op == "punch" else ZERO
        libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(ln))
        os.close(fd)
    elif op == "mkdir":
        os.mkdir(rand_path(r, "d"), r.choice([0o755, 0o700, 0o775]))
    elif op == "rmdir":
        os.rmdir(rand_path(r, "d"))
    elif op == "rename":
        os.rename(p, rand_path(r))
    elif op == "renamedir":
        os.rename(rand_path(r, "d"), rand_path(r, "d"))
    elif op == "exchange":
        rename2(p, q, RENAME_EXCHANGE)
    elif op == "noreplace":
        rename2(p, q, RENAME_NOREPLACE)
    elif op == "whiteout":
        rename2(p, rand_path(r), RENAME_WHITEOUT)
    elif op == "link":
        os.link(p, rand_path(r))
    elif op == "symlink":
        os.symlink(r.choice(["f0", "../f1", "d0/f2", "/nowhere"]), p)
    elif op == "unlink":
        os.unlink(p)
    elif op == "chmod":
        os.chmod(p, r.choice([0o600, 0o644, 0o640, 0o755]))
    elif op == "xattr":
        if r.random() < 0.7:
            os.setxattr(p, "user.k%d" % r.randrange(3), b * r.randrange(1, 64),
                        follow_symlinks=False)
        else:
            os.removexattr(p, "user.k%d" % r.randrange(3), follow_symlinks=False)
    elif op == "utimes":
        t = r.randrange(1_000_000_000, 1_800_000_000)
        os.utime(p, ns=(t * 10**9 + r.randrange(10**9), t * 10**9 + r.randrange(10**9)),
                 follow_symlinks=False)
    elif op == "mapw":
        # In a child: a store beyond a size another process truncated to meanwhile is SIGBUS.
        pid = os.fork()
        if pid == 0:
            try:
                fd = os.open(p, os.O_RDWR)
                size = os.fstat(fd).st_size
                if size > 0:
                    m = mmap.mmap(fd, size)
                    o = r.randrange(0, size)
                    k = min(ln, size - o)
                    m[o:o + k] = b * k
                    if r.random() < 0.3:
                        m.flush()
                    m.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    elif op == "fsync":
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def worker(me):
    r = random.Random(seed * 1000 + me)
    done = 0
    for i in range(n):
        try:
            one(r, i, me)
            done += 1
        except (OSError, ValueError):
            pass
    sys.stderr.write("fsstress: process %d: %d of %d operations succeeded\n" % (me, done, n))


children = []
for me in range(procs):
    pid = os.fork()
    if pid == 0:
        try:
            worker(me)
        finally:
            os._exit(0)
    children.append(pid)
for me, pid in enumerate(children):
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        # A store through a mapping beyond a size another process truncated to: SIGBUS.
        sys.stderr.write("fsstress: process %d killed by signal %d\n" % (me, os.WTERMSIG(status)))
