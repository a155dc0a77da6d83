/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Record layouts shared by the eBPF programs and the Rust loader (probes/src/layout.rs).
 * Every field's offset is checked against the Rust side in a test (layout_matches_c). */
#ifndef FOXING_H
#define FOXING_H

#define FX_COMM_LEN 16
/* Path bytes carried by an event (PATH_MAX). */
#define FX_PATH_MAX 4096
/* A path op's directory that lies under the watched root comes as this byte followed by its
 * path below the root ("" for the root itself, else "/a/b"), whatever mount it was reached
 * through (a bind mount of the root or of a directory under it); other directories come as
 * their absolute path in the caller's mount namespace (a leading '/'). */
#define FX_DIR_ROOTED 1
/* Largest payload copied into one event; longer writes are sent as inexact ranges. */
#define FX_PAYLOAD_MAX (256 * 1024)

enum fx_op {
	/* fd-based: path = the file's path relative to the watched root. */
	FX_OP_WRITE = 1,     /* offset, len; payload follows unless FX_F_INEXACT */
	FX_OP_TRUNCATE = 2,  /* len = new size (ftruncate) */
	FX_OP_FSYNC = 3,
	FX_OP_FDATASYNC = 4,
	FX_OP_CREATE = 5,    /* open with O_CREAT or O_TRUNC: mode/owner_uid/owner_gid of the inode */
	FX_OP_FCHMOD = 6,    /* mode */
	FX_OP_FCHOWN = 7,    /* owner_uid, owner_gid of the inode after the call */
	FX_OP_FALLOCATE = 8, /* arg = mode, offset, len */
	FX_OP_SYNC_FILE_RANGE = 9,
	FX_OP_SYNCFS = 10,   /* path empty: the root's filesystem */
	FX_OP_SYNC = 11,     /* path empty: sync(2) */
	FX_OP_FUTIMES = 12,  /* offset = atime ns, len = mtime ns (FX_F_*TIME_* flags) */
	FX_OP_FSETXATTR = 13, /* data = name '\0' value */
	FX_OP_FREMOVEXATTR = 14, /* data = name */
	FX_OP_MMAP_SHARED = 15, /* a shared writable mapping: offset, len of the mapped range;
				 * arg: FX_MMAP_* bits of the inode's state then */
	/* path-based: path = dir1 '\0' name1, data = dir2 '\0' name2 (dirN absolute, nameN as the
	 * caller gave it); the recorder joins and normalizes them against the watched root. */
	FX_OP_PATH_UNLINK = 16,   /* flags & FX_F_RMDIR for rmdir/AT_REMOVEDIR */
	FX_OP_PATH_MKDIR = 17,    /* arg = mode, umask */
	FX_OP_PATH_RENAME = 18,   /* arg = renameat2 flags; 1 -> 2 */
	FX_OP_PATH_LINK = 19,     /* 1 (existing) -> 2 (new) */
	FX_OP_PATH_SYMLINK = 20,  /* name1 = target, 2 = the new link */
	FX_OP_PATH_CHMOD = 21,    /* arg = mode */
	FX_OP_PATH_CHOWN = 22,    /* arg = uid | gid << 32 (0xffffffff = unchanged) */
	FX_OP_PATH_TRUNCATE = 23, /* len = size */
	FX_OP_PATH_UTIMES = 24,   /* as FX_OP_FUTIMES; data empty */
	FX_OP_PATH_SETXATTR = 25, /* data = name '\0' value (not a dir/name pair) */
	FX_OP_PATH_REMOVEXATTR = 26, /* data = name */
	FX_OP_PATH_MKNOD = 27,    /* arg = mode (with S_IFMT), offset = rdev, umask */
	/* no path: */
	FX_OP_MSYNC = 28,         /* msync(MS_SYNC) by this task: a restore point for mappings */
	FX_OP_DIRTY_MAPPED = 29,  /* a page of a shared-mapped file became dirty (dev, ino) */
	/* A change that cannot be described (an io_uring path operation, a fixed-file target, an
	 * oversized io_submit): arg = what (io_uring opcode, or the AIO iocb limit); path set when
	 * the file is known. The recorder journals a gap and heals it with a base. */
	FX_OP_UNTRACKED = 30,
	/* path-based (as 16-27): mount, umount (1 = the mount point), move_mount and pivot_root
	 * (1 = the place left, 2 = the place reached): what the tree shows there changed */
	FX_OP_PATH_MOUNT = 31,
};

enum fx_flags {
	FX_F_INEXACT = 1,    /* payload not captured: re-read offset..offset+len */
	FX_F_TRUNC = 2,      /* open truncated the file */
	FX_F_CREATED = 4,    /* open created the file (O_CREAT and it did not exist before) */
	FX_F_RMDIR = 8,      /* unlink of a directory */
	FX_F_NOFOLLOW = 16,  /* path op does not follow a final symlink (lchown, AT_SYMLINK_NOFOLLOW) */
	FX_F_ATIME_OMIT = 32,
	FX_F_ATIME_NOW = 64,
	FX_F_MTIME_OMIT = 128,
	FX_F_MTIME_NOW = 256,
	FX_F_CATCHALL = 512, /* DIRTY_MAPPED of an inode no mmap event announced: path set, arg = size */
	FX_F_CONCURRENT = 1024, /* another write to the inode was in flight: sent as a re-read
				 * range (FX_F_INEXACT, no payload), since exit order may differ
				 * from the order the bytes reached the file */
	FX_F_ABS_VIEW = 2048, /* a path op with an absolute name: dev = the caller's mount
			       * namespace (its id, NS_GET_MNTNS_ID), ino = its root directory's inode, so that the
			       * recorder resolves the name as the caller did (a container, a chroot) */
	FX_F_POS_UNKNOWN = 4096, /* a write at the file position whose position another user of the
				  * same open file moved meanwhile (a shared descriptor: forked
				  * children, threads; lseek or write between): where its bytes went is
				  * unknown, the recorder resyncs the whole file */
	FX_F_PATH_RACY = 8192, /* a rename or mount change ran while the event's names were
				* taken and its seq: the two may be journaled in the other order
				* than they happened (see fx_racy_check) */
	FX_F_UNLINKED = 16384, /* the inode had no name left (i_nlink 0: removed while open, or an
				* O_TMPFILE not linked yet): the change reaches no entry of the
				* tree, whatever name its dentry still shows */
	FX_F_NAME_GONE = 32768, /* the file's dentry is unlinked (removed while open, or an
				 * O_TMPFILE's "#ino" even after linkat named it): the path names
				 * no entry or another file; with i_nlink > 0 the inode lives on
				 * under other names, where the recorder resyncs it. On a path op:
				 * a name was given by such a descriptor (linkat of an O_TMPFILE) */
	FX_F_LINKED = 65536, /* a file with other names (i_nlink > 1, not a directory): a change
			      * through a name the replica does not hold yet reaches them too */
	FX_F_FAILED = 131072, /* the call failed but may have changed the file (fallocate: ext4 and
			       * xfs update mtime before they validate a collapse or insert range;
			       * ext4 keeps the size a preallocation reached before ENOSPC) */
};

/* FX_OP_MMAP_SHARED's arg: the inode had dirty pages (stores to those report nothing until
 * writeback cleans them), or was being written back, when it was mapped. */
enum {
	FX_MMAP_DIRTY_PAGES = 1,
	FX_MMAP_WRITEBACK = 2,
};

/* One event in the ring buffer: this header, then path_len bytes of path (relative to the
 * watched root, no leading '/'), then data_len bytes of payload. */
struct fx_event {
	__u64 seq;        /* gapless kernel event counter: a gap is a loss */
	__u64 time_ns;    /* bpf_ktime_get_boot_ns() at syscall exit */
	__u32 pid;
	__u32 tgid;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	char comm[FX_COMM_LEN];
	__u32 op;         /* enum fx_op */
	__u32 flags;      /* enum fx_flags */
	__u64 dev;        /* kernel dev_t of the inode's superblock */
	__u64 ino;
	__u64 offset;
	__u64 len;
	__u64 arg;        /* op-specific: open mode */
	__u32 path_len;
	__u32 data_len;
	__u32 mode;       /* inode i_mode (CREATE, FCHMOD) */
	__u32 owner_uid;  /* inode owner (CREATE, FCHOWN); for path ops the caller's fsuid/fsgid */
	__u32 owner_gid;
	__u32 umask;      /* the caller's umask (path ops that create) */
	__u64 seq_named;  /* fx_seq when the event's names were taken: a file event's path was
			   * named, a path op entered its syscall (the kernel looks its names
			   * up in between). A rename whose [seq_named, seq] overlaps an
			   * event's may be journaled in the other order (FX_F_PATH_RACY). */
};

#endif
