/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Times and extended attributes: utimensat (by path or, with a NULL path, by fd), utime,
 * utimes, futimesat, and the setxattr / removexattr families. */
#include "common.bpf.h"

#define FX_UTIME_NOW ((1L << 30) - 1)
#define FX_UTIME_OMIT ((1L << 30) - 2)
#define FX_XATTR_NAME_MAX 256
#define FX_XATTR_VALUE_MAX 65536

static __always_inline int save(__u64 dfd, __u64 path, __u64 a2, __u64 a3, __u64 a4, __u64 flags)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = dfd, .buf = path, .count = a2, .pos = a3, .mode = a4, .flags = flags };
	fx_names_enter(&a);
	fx_save_args(&a);
	return 0;
}

static __always_inline struct fx_args *take(void)
{
	return fx_peek_args();
}

static __always_inline void drop(void)
{
	fx_drop_args();
}

/* Fills the event's path: fd-based (relative, returns 0 when under the root) or dir/name. */
static __always_inline int target(struct fx_scratch *s, struct fx_args *a, __u32 fd_op, __u32 path_op, bool by_fd, __u64 fd)
{
	if (by_fd) {
		struct file *f = fx_fd_file(fd);
		if (!f)
			return -1;
		fx_header(s, fd_op, BPF_CORE_READ(f, f_inode));
		return fx_event_path(s, f);
	}
	fx_header(s, path_op, NULL);
	fx_names_since_enter(s, a);
	__u32 under = 0;
	int n = fx_dir_name(s, a->fd, a->buf, &s->body[0], &under);
	if (n < 0 || !under)
		return -1;
	s->ev.path_len = n & (FX_PATH_MAX * 2 - 1);
	return 0;
}

/* How a times syscall passes its two times (a NULL pointer: both now). */
#define FX_TIMES_TIMESPEC 0 /* utimensat: struct timespec[2], UTIME_NOW / UTIME_OMIT */
#define FX_TIMES_UTIMBUF 1  /* utime: struct utimbuf { actime, modtime } in seconds */
#define FX_TIMES_TIMEVAL 2  /* utimes, futimesat: struct timeval[2] */

static __always_inline int times_exit(long ret, __u32 kind)
{
	struct fx_args *ap = take();
	if (!ap)
		return 0;
	struct fx_args a = *ap;
	drop();
	if (ret != 0)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	if (target(s, &a, FX_OP_FUTIMES, FX_OP_PATH_UTIMES, a.buf == 0, a.fd))
		return 0;
	/* Normalized to timespec: atime sec, nsec, mtime sec, nsec. */
	__s64 ts[4] = { 0, FX_UTIME_NOW, 0, FX_UTIME_NOW };
	if (a.count) {
		__s64 raw[4] = {};
		if (kind == FX_TIMES_UTIMBUF) {
			bpf_probe_read_user(raw, 2 * sizeof(__s64), (void *)a.count);
			ts[0] = raw[0];
			ts[1] = 0;
			ts[2] = raw[1];
			ts[3] = 0;
		} else if (kind == FX_TIMES_TIMEVAL) {
			bpf_probe_read_user(raw, sizeof(raw), (void *)a.count);
			ts[0] = raw[0];
			ts[1] = raw[1] * 1000;
			ts[2] = raw[2];
			ts[3] = raw[3] * 1000;
		} else {
			bpf_probe_read_user(ts, sizeof(ts), (void *)a.count);
		}
	}
	__u32 fl = (a.flags & 0x100) ? FX_F_NOFOLLOW : 0;
	if (ts[1] == FX_UTIME_OMIT)
		fl |= FX_F_ATIME_OMIT;
	else if (ts[1] == FX_UTIME_NOW)
		fl |= FX_F_ATIME_NOW;
	if (ts[3] == FX_UTIME_OMIT)
		fl |= FX_F_MTIME_OMIT;
	else if (ts[3] == FX_UTIME_NOW)
		fl |= FX_F_MTIME_NOW;
	s->ev.flags |= fl;
	s->ev.offset = ts[0] * 1000000000 + ts[1];
	s->ev.len = ts[2] * 1000000000 + ts[3];
	fx_submit(s);
	return 0;
}

/* utimensat(dfd, path, times*, flags) */
SEC("tracepoint/syscalls/sys_enter_utimensat")
int fx_enter_utimensat(struct trace_event_raw_sys_enter *ctx)
{
	return save(ctx->args[0], ctx->args[1], ctx->args[2], 0, 0, ctx->args[3]);
}
SEC("tracepoint/syscalls/sys_exit_utimensat")
int fx_exit_utimensat(struct trace_event_raw_sys_exit *ctx) { return times_exit(ctx->ret, FX_TIMES_TIMESPEC); }

/* utime(path, utimbuf*), utimes(path, timeval[2]), futimesat(dfd, path, timeval[2]): follow
 * symlinks; a NULL times pointer sets both to now. */
SEC("tracepoint/syscalls/sys_enter_utime")
int fx_enter_utime(struct trace_event_raw_sys_enter *ctx) { return save(FX_AT_FDCWD, ctx->args[0], ctx->args[1], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_utime")
int fx_exit_utime(struct trace_event_raw_sys_exit *ctx) { return times_exit(ctx->ret, FX_TIMES_UTIMBUF); }
SEC("tracepoint/syscalls/sys_enter_utimes")
int fx_enter_utimes(struct trace_event_raw_sys_enter *ctx) { return save(FX_AT_FDCWD, ctx->args[0], ctx->args[1], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_utimes")
int fx_exit_utimes(struct trace_event_raw_sys_exit *ctx) { return times_exit(ctx->ret, FX_TIMES_TIMEVAL); }
SEC("tracepoint/syscalls/sys_enter_futimesat")
int fx_enter_futimesat(struct trace_event_raw_sys_enter *ctx) { return save(ctx->args[0], ctx->args[1], ctx->args[2], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_futimesat")
int fx_exit_futimesat(struct trace_event_raw_sys_exit *ctx) { return times_exit(ctx->ret, FX_TIMES_TIMEVAL); }

/* Appends name '\0' value (value_len may be 0) after the path. */
static __always_inline void xattr_data(struct fx_scratch *s, __u64 uname, __u64 uvalue, __u64 size)
{
	__u32 off = s->ev.path_len & (FX_PATH_MAX * 2 - 1);
	long n = bpf_probe_read_user_str(&s->body[off], FX_XATTR_NAME_MAX, (void *)uname);
	if (n <= 0)
		return;
	__u32 voff = (off + n) & (FX_PATH_MAX * 4 - 1);
	__u32 len = size > FX_XATTR_VALUE_MAX ? FX_XATTR_VALUE_MAX : size;
	len &= (FX_XATTR_VALUE_MAX * 2 - 1);
	if (len > FX_XATTR_VALUE_MAX)
		len = FX_XATTR_VALUE_MAX;
	if (uvalue && len && bpf_probe_read_user(&s->body[voff], len, (void *)uvalue))
		return;
	s->ev.data_len = (n + (uvalue ? len : 0)) & (FX_PAYLOAD_MAX * 2 - 1);
}

static __always_inline int xattr_exit(long ret, __u32 fd_op, __u32 path_op, bool by_fd, bool nofollow, bool remove)
{
	struct fx_args *ap = take();
	if (!ap)
		return 0;
	struct fx_args a = *ap;
	drop();
	if (ret != 0)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	/* by_fd: a.fd is the file; path form: a.fd = AT_FDCWD, a.buf = path. */
	if (target(s, &a, fd_op, path_op, by_fd, a.fd))
		return 0;
	if (nofollow || (a.flags & 0x100))
		s->ev.flags |= FX_F_NOFOLLOW;
	xattr_data(s, a.count, remove ? 0 : a.pos, remove ? 0 : a.mode);
	fx_submit(s);
	return 0;
}

/* setxattr(path, name, value, size, flags) / lsetxattr / fsetxattr(fd, ...) */
SEC("tracepoint/syscalls/sys_enter_setxattr")
int fx_enter_setxattr(struct trace_event_raw_sys_enter *ctx) { return save(FX_AT_FDCWD, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], 0); }
SEC("tracepoint/syscalls/sys_exit_setxattr")
int fx_exit_setxattr(struct trace_event_raw_sys_exit *ctx) { return xattr_exit(ctx->ret, FX_OP_FSETXATTR, FX_OP_PATH_SETXATTR, false, false, false); }
SEC("tracepoint/syscalls/sys_enter_lsetxattr")
int fx_enter_lsetxattr(struct trace_event_raw_sys_enter *ctx) { return save(FX_AT_FDCWD, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], 0); }
SEC("tracepoint/syscalls/sys_exit_lsetxattr")
int fx_exit_lsetxattr(struct trace_event_raw_sys_exit *ctx) { return xattr_exit(ctx->ret, FX_OP_FSETXATTR, FX_OP_PATH_SETXATTR, false, true, false); }
SEC("tracepoint/syscalls/sys_enter_fsetxattr")
int fx_enter_fsetxattr(struct trace_event_raw_sys_enter *ctx) { return save(ctx->args[0], 0, ctx->args[1], ctx->args[2], ctx->args[3], 0); }
SEC("tracepoint/syscalls/sys_exit_fsetxattr")
int fx_exit_fsetxattr(struct trace_event_raw_sys_exit *ctx) { return xattr_exit(ctx->ret, FX_OP_FSETXATTR, FX_OP_PATH_SETXATTR, true, false, false); }
/* removexattr(path, name) / lremovexattr / fremovexattr(fd, name) */
SEC("tracepoint/syscalls/sys_enter_removexattr")
int fx_enter_removexattr(struct trace_event_raw_sys_enter *ctx) { return save(FX_AT_FDCWD, ctx->args[0], ctx->args[1], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_removexattr")
int fx_exit_removexattr(struct trace_event_raw_sys_exit *ctx) { return xattr_exit(ctx->ret, FX_OP_FREMOVEXATTR, FX_OP_PATH_REMOVEXATTR, false, false, true); }
SEC("tracepoint/syscalls/sys_enter_lremovexattr")
int fx_enter_lremovexattr(struct trace_event_raw_sys_enter *ctx) { return save(FX_AT_FDCWD, ctx->args[0], ctx->args[1], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_lremovexattr")
int fx_exit_lremovexattr(struct trace_event_raw_sys_exit *ctx) { return xattr_exit(ctx->ret, FX_OP_FREMOVEXATTR, FX_OP_PATH_REMOVEXATTR, false, true, true); }
SEC("tracepoint/syscalls/sys_enter_fremovexattr")
int fx_enter_fremovexattr(struct trace_event_raw_sys_enter *ctx) { return save(ctx->args[0], 0, ctx->args[1], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_fremovexattr")
int fx_exit_fremovexattr(struct trace_event_raw_sys_exit *ctx) { return xattr_exit(ctx->ret, FX_OP_FREMOVEXATTR, FX_OP_PATH_REMOVEXATTR, true, false, true); }

/* setxattrat(dfd, path, at_flags, name, struct xattr_args *, size) and removexattrat(dfd,
 * path, at_flags, name) (Linux 6.13): a NULL path acts on dfd; AT_SYMLINK_NOFOLLOW kept. */
SEC("tracepoint/syscalls/sys_enter_setxattrat")
int fx_enter_setxattrat(struct trace_event_raw_sys_enter *ctx)
{
	struct { __u64 value; __u32 size; __u32 flags; } xa = {};
	bpf_probe_read_user(&xa, sizeof(xa), (void *)ctx->args[4]);
	return save(ctx->args[0], ctx->args[1], ctx->args[3], xa.value, xa.size, ctx->args[2]);
}
SEC("tracepoint/syscalls/sys_exit_setxattrat")
int fx_exit_setxattrat(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args *ap = take();
	bool by_fd = ap && ap->buf == 0;
	return xattr_exit(ctx->ret, FX_OP_FSETXATTR, FX_OP_PATH_SETXATTR, by_fd, false, false);
}
SEC("tracepoint/syscalls/sys_enter_removexattrat")
int fx_enter_removexattrat(struct trace_event_raw_sys_enter *ctx) { return save(ctx->args[0], ctx->args[1], ctx->args[3], 0, 0, ctx->args[2]); }
SEC("tracepoint/syscalls/sys_exit_removexattrat")
int fx_exit_removexattrat(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args *ap = take();
	bool by_fd = ap && ap->buf == 0;
	return xattr_exit(ctx->ret, FX_OP_FREMOVEXATTR, FX_OP_PATH_REMOVEXATTR, by_fd, false, true);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
