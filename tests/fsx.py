"""fsx-style random file operations for the capture tests and scripts/fsx-torture.sh.

usage: python3 fsx.py SEED OPS [MAX_OFFSET_BYTES]   (in the directory to work in)
EXCL=op,op leaves operations out; LOG=1 prints each operation to stderr.
Three files f0..f2 get random writes (pwrite, pwritev, O_APPEND, O_DIRECT), truncates, stores
through short-lived and kept shared mappings (msync sometimes), fallocate (punch, zero,
collapse, insert, preallocate; failures included), copy_file_range (also within one file),
FICLONERANGE, sendfile, fsync, renames over each other, hard links, unlink + recreate,
chmod, xattrs and utimes. Found: mapped pages written in between skipped as unchanged, stores
to pages dirty before their mapping, a failed collapse that moved mtime (2026-12-01).
"""
import os, random, mmap, sys, ctypes, fcntl, struct
libc = ctypes.CDLL(None, use_errno=True)
KEEP=1; PUNCH=2; COLLAPSE=8; ZERO=16; INSERT=32
seed=int(sys.argv[1]); n=int(sys.argv[2]); random.seed(seed)
MAXLEN=int(sys.argv[3]) if len(sys.argv)>3 else 256*1024
names=["f0","f1","f2"]
for nm in names:
    os.close(os.open(nm, os.O_RDWR|os.O_CREAT, 0o644))
bs=os.statvfs(".").f_bsize
FICLONERANGE=0x4020940d
maps={}
stats={}
def fd_of(nm, flags=os.O_RDWR):
    """Opens nm, creating it if a rename or unlink took it."""
    try: return os.open(nm, flags)
    except FileNotFoundError:
        return os.open(nm, flags|os.O_CREAT, 0o644)
for i in range(n):
    nm=random.choice(names); fd=fd_of(nm)
    size=os.fstat(fd).st_size
    op=random.choice([o for o in ["write","write","writev","trunc","ptrunc","mapw","mapw","punch","zero","collapse","insert","cfr","cfrself","clone","fsync","append","falloc","sendfile","rename","link","unlinkre","direct","mapkeep","chmod","xattr","touch"] if o not in os.environ.get("EXCL","").split(",")])
    off=random.randrange(0, MAXLEN); ln=random.randrange(1, 65536)
    b=bytes([random.randrange(256)])
    to=None
    try:
        if op=="write": os.pwrite(fd, b*ln, off)
        elif op=="writev": os.pwritev(fd, [b*(ln//2), bytes([random.randrange(256)])*(ln-ln//2)], off)
        elif op=="append":
            a=os.open(nm, os.O_WRONLY|os.O_APPEND); os.write(a, b*ln); os.close(a)
        elif op=="trunc": os.ftruncate(fd, random.randrange(0, MAXLEN))
        elif op=="ptrunc": os.truncate(nm, random.randrange(0, MAXLEN))
        elif op in ("mapw","mapkeep"):
            if size==0: continue
            off=random.randrange(0,size); ln=min(ln, size-off)
            if op=="mapkeep" and nm in maps: m, mfd=maps[nm]
            else:
                m, mfd=mmap.mmap(fd, size), os.dup(fd)
            # A kept mapping may outlive its file's size (truncated since): SIGBUS beyond it.
            if off+ln > min(len(m), os.fstat(mfd).st_size): continue
            m[off:off+ln]=b*ln
            if random.random()<0.3: m.flush()
            if op=="mapkeep": maps[nm]=(m, mfd)
            else: m.close(); os.close(mfd)
        elif op=="punch": libc.fallocate(fd, PUNCH|KEEP, ctypes.c_long(off), ctypes.c_long(ln))
        elif op=="zero": libc.fallocate(fd, ZERO|(KEEP if random.random()<0.5 else 0), ctypes.c_long(off), ctypes.c_long(ln))
        elif op=="falloc": libc.fallocate(fd, KEEP if random.random()<0.5 else 0, ctypes.c_long(off), ctypes.c_long(ln))
        elif op=="collapse":
            off=off//bs*bs; ln=max(bs, ln//bs*bs); libc.fallocate(fd, COLLAPSE, ctypes.c_long(off), ctypes.c_long(ln))
        elif op=="insert":
            off=off//bs*bs; ln=max(bs, ln//bs*bs)
            if off < size: libc.fallocate(fd, INSERT, ctypes.c_long(off), ctypes.c_long(ln))
        elif op=="cfr":
            src=fd_of(random.choice(names), os.O_RDONLY); os.copy_file_range(src, fd, ln, random.randrange(0,MAXLEN), off); os.close(src)
        elif op=="cfrself": os.copy_file_range(fd, fd, ln, random.randrange(0,MAXLEN), off)
        elif op=="clone":
            src=fd_of(random.choice(names), os.O_RDONLY)
            so=random.randrange(0,MAXLEN)//bs*bs; do=off//bs*bs; l=max(bs, ln//bs*bs)
            try: fcntl.ioctl(fd, FICLONERANGE, struct.pack("qQQQ", src, so, l, do))
            except OSError: pass
            os.close(src)
        elif op=="sendfile":
            src=fd_of(random.choice(names), os.O_RDONLY); os.lseek(fd, off, 0); os.sendfile(fd, src, random.randrange(0,MAXLEN), ln); os.close(src)
        elif op=="fsync": os.fsync(fd)
        elif op=="rename":
            to=random.choice(names)
            if to!=nm: os.rename(nm, to); maps.pop(to,None); 
            if nm in maps: maps[to]=maps.pop(nm)
        elif op=="link":
            to=random.choice(names)
            if to!=nm:
                try: os.unlink(to)
                except FileNotFoundError: pass
                maps.pop(to,None); os.link(nm, to)
        elif op=="unlinkre":
            os.unlink(nm); maps.pop(nm,None); os.close(os.open(nm, os.O_CREAT|os.O_WRONLY, 0o600))
        elif op=="direct":
            d=os.open(nm, os.O_WRONLY|os.O_DIRECT)
            buf=mmap.mmap(-1, max(bs, ln//bs*bs)); buf.write(b*len(buf))
            os.pwritev(d, [buf], off//bs*bs); os.close(d)
        elif op=="chmod": os.chmod(nm, random.choice([0o600,0o644,0o755,0o640]))
        elif op=="xattr": os.setxattr(nm, "user.k%d"%random.randrange(3), b*random.randrange(0,100))
        elif op=="touch": os.utime(nm, ns=(random.randrange(1<<40), random.randrange(1<<40)))
        stats[op]=stats.get(op,0)+1
        if os.environ.get("LOG"): print(i, op, nm, to or "", off, ln, os.fstat(fd).st_size, file=sys.stderr)
    except OSError as e:
        stats[op+"!"]=stats.get(op+"!",0)+1
    finally:
        os.close(fd)
print(stats)
