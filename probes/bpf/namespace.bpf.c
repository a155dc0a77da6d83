/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Path-based changes: unlink, rmdir, mkdir, rename, link, symlink, chmod, chown, truncate.
 * At exit (success only) the event carries each directory's absolute path and the name as the
 * caller gave it; the recorder joins, normalizes and keeps those under the watched root. */
#include "common.bpf.h"

#define FX_AT_REMOVEDIR 0x200
#define FX_AT_SYMLINK_NOFOLLOW 0x100

static __always_inline int save(__u64 dfd1, __u64 p1, __u64 dfd2, __u64 p2, __u64 flags, __u64 mode)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = dfd1, .buf = p1, .count = dfd2, .pos = p2, .flags = flags, .mode = mode };
	fx_names_enter(&a);
	fx_save_args(&a);
	return 0;
}

/* A rename: counted as a path change in flight (for the path cache) from enter to exit. */
static __always_inline int save_rename(__u64 dfd1, __u64 p1, __u64 dfd2, __u64 p2, __u64 flags)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = dfd1, .buf = p1, .count = dfd2, .pos = p2, .flags = flags, .ns_change = 1 };
	fx_ns_change_begin();
	/* After its own begin: only others' changes move fx_ns_gen from here. */
	fx_names_enter(&a);
	if (!fx_save_args(&a))
		fx_ns_change_end();
	return 0;
}

static __always_inline int path_event(const struct fx_args *a, long ret, __u32 op, bool two);

static __always_inline int path_exit(long ret, __u32 op, bool two)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	path_event(&args, ret, op, two);
	if (args.ns_change)
		fx_ns_change_end();
	return 0;
}

static __always_inline int path_event(const struct fx_args *a, long ret, __u32 op, bool two)
{
	struct fx_args args = *a;
	if (ret != 0)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(s, op, NULL);
	fx_names_since_enter(s, &args);
	__u32 under1 = 0, under2 = 0;
	int n1 = fx_dir_name(s, args.fd, args.buf, &s->body[0], &under1);
	if (n1 < 0)
		return 0;
	s->ev.path_len = n1 & (FX_PATH_MAX * 2 - 1);
	if (two) {
		int n2 = fx_dir_name(s, args.count, args.pos, &s->body[s->ev.path_len & (FX_PATH_MAX * 2 - 1)], &under2);
		if (n2 < 0)
			return 0;
		s->ev.data_len = n2 & (FX_PATH_MAX * 2 - 1);
	}
	/* A symlink's first pair is its target text, not a place. */
	if (op == FX_OP_PATH_SYMLINK)
		under1 = 0;
	if (!under1 && !under2)
		return 0;
	s->ev.arg = args.mode;
	__u64 fl = args.flags;
	if (op == FX_OP_PATH_UNLINK && (fl & FX_AT_REMOVEDIR))
		s->ev.flags |= FX_F_RMDIR;
	if (fl & FX_AT_SYMLINK_NOFOLLOW)
		s->ev.flags |= FX_F_NOFOLLOW;
	if (op == FX_OP_PATH_RENAME)
		s->ev.arg = fl;
	if (op == FX_OP_PATH_MKNOD) {
		s->ev.offset = (__u32)fl; /* rdev: an unsigned int */
		s->ev.flags &= ~FX_F_NOFOLLOW;
	}
	if (op == FX_OP_PATH_MKDIR || op == FX_OP_PATH_MKNOD) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
		s->ev.umask = BPF_CORE_READ(task, fs, umask);
	}
	fx_submit(s);
	return 0;
}

#define ENTER(sc) SEC("tracepoint/syscalls/sys_enter_" #sc) int fx_enter_##sc(struct trace_event_raw_sys_enter *ctx)
#define EXIT(sc, op, two) \
	SEC("tracepoint/syscalls/sys_exit_" #sc) int fx_exit_##sc(struct trace_event_raw_sys_exit *ctx) { return path_exit(ctx->ret, op, two); }

ENTER(unlink) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, 0, 0); }
EXIT(unlink, FX_OP_PATH_UNLINK, false)
ENTER(unlinkat) { return save(ctx->args[0], ctx->args[1], 0, 0, ctx->args[2], 0); }
EXIT(unlinkat, FX_OP_PATH_UNLINK, false)
ENTER(rmdir) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, FX_AT_REMOVEDIR, 0); }
EXIT(rmdir, FX_OP_PATH_UNLINK, false)
ENTER(mkdir) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, 0, ctx->args[1]); }
EXIT(mkdir, FX_OP_PATH_MKDIR, false)
ENTER(mkdirat) { return save(ctx->args[0], ctx->args[1], 0, 0, 0, ctx->args[2]); }
EXIT(mkdirat, FX_OP_PATH_MKDIR, false)
ENTER(rename) { return save_rename(FX_AT_FDCWD, ctx->args[0], FX_AT_FDCWD, ctx->args[1], 0); }
EXIT(rename, FX_OP_PATH_RENAME, true)
ENTER(renameat) { return save_rename(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], 0); }
EXIT(renameat, FX_OP_PATH_RENAME, true)
ENTER(renameat2) { return save_rename(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], ctx->args[4]); }
EXIT(renameat2, FX_OP_PATH_RENAME, true)
ENTER(link) { return save(FX_AT_FDCWD, ctx->args[0], FX_AT_FDCWD, ctx->args[1], 0, 0); }
EXIT(link, FX_OP_PATH_LINK, true)
ENTER(linkat) { return save(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], 0, 0); }
EXIT(linkat, FX_OP_PATH_LINK, true)
ENTER(symlink) { return save(FX_NO_DIR, ctx->args[0], FX_AT_FDCWD, ctx->args[1], 0, 0); }
EXIT(symlink, FX_OP_PATH_SYMLINK, true)
ENTER(symlinkat) { return save(FX_NO_DIR, ctx->args[0], ctx->args[1], ctx->args[2], 0, 0); }
EXIT(symlinkat, FX_OP_PATH_SYMLINK, true)
ENTER(chmod) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, 0, ctx->args[1]); }
EXIT(chmod, FX_OP_PATH_CHMOD, false)
ENTER(fchmodat) { return save(ctx->args[0], ctx->args[1], 0, 0, 0, ctx->args[2]); }
EXIT(fchmodat, FX_OP_PATH_CHMOD, false)
ENTER(fchmodat2) { return save(ctx->args[0], ctx->args[1], 0, 0, ctx->args[3], ctx->args[2]); }
EXIT(fchmodat2, FX_OP_PATH_CHMOD, false)
ENTER(chown) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, 0, (ctx->args[1] & 0xffffffff) | (ctx->args[2] << 32)); }
EXIT(chown, FX_OP_PATH_CHOWN, false)
ENTER(lchown) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, FX_AT_SYMLINK_NOFOLLOW, (ctx->args[1] & 0xffffffff) | (ctx->args[2] << 32)); }
EXIT(lchown, FX_OP_PATH_CHOWN, false)
ENTER(fchownat) { return save(ctx->args[0], ctx->args[1], 0, 0, ctx->args[4], (ctx->args[2] & 0xffffffff) | (ctx->args[3] << 32)); }
EXIT(fchownat, FX_OP_PATH_CHOWN, false)
ENTER(truncate) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, 0, ctx->args[1]); }
SEC("tracepoint/syscalls/sys_exit_truncate")
int fx_exit_truncate(struct trace_event_raw_sys_exit *ctx)
{
	/* The length was saved as args.mode by the enter below. */
	return path_exit(ctx->ret, FX_OP_PATH_TRUNCATE, false);
}

ENTER(mknod) { return save(FX_AT_FDCWD, ctx->args[0], 0, 0, ctx->args[2], ctx->args[1]); }
EXIT(mknod, FX_OP_PATH_MKNOD, false)
ENTER(mknodat) { return save(ctx->args[0], ctx->args[1], 0, 0, ctx->args[3], ctx->args[2]); }
EXIT(mknodat, FX_OP_PATH_MKNOD, false)

/* bind(2) of an AF_UNIX socket to a path creates a socket file there, as mknod(S_IFSOCK)
 * would (`srwx` files such as mysql.sock in a data directory): sent as that mknod, the name
 * relative to the cwd, mode as unix_bind gives it (0777 less the umask). Abstract names
 * (first byte 0) are no files; other families return at the first read. */
#define FX_AF_UNIX 1
#define FX_S_IFSOCK 0140000
ENTER(bind)
{
	__u64 addr = ctx->args[1];
	__u16 family = 0;
	char first = 0;
	if (ctx->args[2] < 3 || bpf_probe_read_user(&family, sizeof(family), (void *)addr) ||
	    family != FX_AF_UNIX)
		return 0;
	if (bpf_probe_read_user(&first, 1, (void *)(addr + 2)) || first == 0)
		return 0;
	return save(FX_AT_FDCWD, addr + 2, 0, 0, 0, FX_S_IFSOCK | 0777);
}
EXIT(bind, FX_OP_PATH_MKNOD, false)

/* Mount changes move paths without a rename: they invalidate the path cache (counted for every
 * task, the recorder's own included), and one under the watched root replaces what the tree
 * shows there (a filesystem mounted on a directory, or unmounted from it): a path event for the
 * mount point (FX_OP_PATH_MOUNT; for move_mount the place left and the place reached), which the
 * recorder re-states like an arrival. */
#define FX_MOVE_MOUNT_F_EMPTY_PATH 0x4

static __always_inline int mount_enter(__u64 dfd1, __u64 p1, __u64 dfd2, __u64 p2)
{
	struct fx_args a = { .fd = dfd1, .buf = p1, .count = dfd2, .pos = p2, .ns_change = 1 };
	fx_ns_change_begin();
	fx_names_enter(&a);
	if (!fx_save_args(&a))
		fx_ns_change_end();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mount")
int fx_enter_mount(struct trace_event_raw_sys_enter *ctx) { return mount_enter(FX_AT_FDCWD, ctx->args[1], 0, 0); }
EXIT(mount, FX_OP_PATH_MOUNT, false)
SEC("tracepoint/syscalls/sys_enter_umount")
int fx_enter_umount(struct trace_event_raw_sys_enter *ctx) { return mount_enter(FX_AT_FDCWD, ctx->args[0], 0, 0); }
EXIT(umount, FX_OP_PATH_MOUNT, false)
/* move_mount(from_dfd, from_path, to_dfd, to_path, flags): a new mount (fsmount's detached
 * tree, MOVE_MOUNT_F_EMPTY_PATH) left no place: no first place then. */
SEC("tracepoint/syscalls/sys_enter_move_mount")
int fx_enter_move_mount(struct trace_event_raw_sys_enter *ctx)
{
	bool detached = ctx->args[4] & FX_MOVE_MOUNT_F_EMPTY_PATH;
	return mount_enter(detached ? FX_NO_DIR : ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}
EXIT(move_mount, FX_OP_PATH_MOUNT, true)
SEC("tracepoint/syscalls/sys_enter_pivot_root")
int fx_enter_pivot_root(struct trace_event_raw_sys_enter *ctx) { return mount_enter(FX_AT_FDCWD, ctx->args[0], FX_AT_FDCWD, ctx->args[1]); }
EXIT(pivot_root, FX_OP_PATH_MOUNT, true)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
