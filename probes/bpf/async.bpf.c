/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Asynchronous I/O: io_uring and Linux AIO change files without a write syscall.
 *
 * io_uring: every request is seen when its completion is posted (tp_btf/io_uring_complete),
 * where its result is known and its bytes are in the file: a successful write (WRITE, WRITEV,
 * WRITE_FIXED, WRITEV_FIXED, SPLICE into a file) becomes an inexact range that the recorder
 * re-reads; FSYNC, SYNC_FILE_RANGE, FALLOCATE, FTRUNCATE and OPENAT/OPENAT2 with O_CREAT or
 * O_TRUNC become the same events as their syscalls. Path operations (RENAMEAT, UNLINKAT,
 * MKDIRAT, SYMLINKAT, LINKAT) are built at submission (tp_btf/io_uring_submit_req, where the
 * kernel holds copies of the names), kept per request, and sent at a successful completion as
 * the same events as their syscalls. SETXATTR, FSETXATTR on a file under the root, and a path
 * operation whose kept event is missing become FX_OP_UNTRACKED: the recorder journals a gap and
 * heals it with a base. A request submitted with IOSQE_CQE_SKIP_SUCCESS posts no completion, so
 * its write is reported at submission.
 *
 * AIO: io_submit's iocbs are read at the syscall's exit; PWRITE/PWRITEV become inexact ranges
 * (buffered AIO writes complete inside io_submit), FSYNC/FDSYNC sync points. O_DIRECT writes
 * complete later: tp_btf/iomap_dio_complete reports every asynchronous direct write when it
 * completes (ext4, xfs, btrfs, f2fs), also io_uring's. */
#include "common.bpf.h"

#define FX_IORING_OP_WRITEV 2
#define FX_IORING_OP_FSYNC 3
#define FX_IORING_OP_WRITE_FIXED 5
#define FX_IORING_OP_SYNC_FILE_RANGE 8
#define FX_IORING_OP_FALLOCATE 17
#define FX_IORING_OP_OPENAT 18
#define FX_IORING_OP_WRITE 23
#define FX_IORING_OP_OPENAT2 28
#define FX_IORING_OP_SPLICE 30
#define FX_IORING_OP_RENAMEAT 35
#define FX_IORING_OP_UNLINKAT 36
#define FX_IORING_OP_MKDIRAT 37
#define FX_IORING_OP_SYMLINKAT 38
#define FX_IORING_OP_LINKAT 39
#define FX_IORING_OP_FSETXATTR 41
#define FX_IORING_OP_SETXATTR 42
#define FX_IORING_OP_FTRUNCATE 55
#define FX_IORING_OP_WRITEV_FIXED 61
#define FX_IORING_FSYNC_DATASYNC 1
/* io_kiocb flag bits, from an anonymous enum (no CO-RE relocation possible);
 * probes/tests/layout.rs checks them against this kernel's BTF. */
#define FX_REQ_F_FIXED_FILE_BIT 0
#define FX_REQ_F_CQE_SKIP_BIT 6
#define FX_AT_REMOVEDIR 0x200
#define FX_O_CREAT 0100
#define FX_O_TRUNC 01000
/* include/linux/fs.h: a write kiocb (the iomap tracepoint's format lists it). */
#define FX_IOCB_WRITE (1 << 18)
#define FX_IOCB_CMD_PWRITE 1
#define FX_IOCB_CMD_FSYNC 2
#define FX_IOCB_CMD_FDSYNC 3
#define FX_IOCB_CMD_PWRITEV 8
/* iocbs read per io_submit; the rest of a larger submission becomes a gap. */
#define FX_AIO_MAX_IOCBS 4096
/* iovecs summed for a PWRITEV length; longer vectors are re-read to the end of the file. */
#define FX_AIO_MAX_IOVECS 16
/* Length meaning "to the end of the file" (the recorder clamps ranges to the file's size). */
#define FX_LEN_TO_EOF (1ULL << 62)

/* Path operations in flight (built at submission, sent at completion): io_kiocb -> event.
 * A plain hash, not LRU: a small LRU map evicts live entries early (per-CPU free lists hoard
 * nodes), which turned io_uring path ops into gaps. A request that finds the map full at
 * submission becomes a gap (FX_OP_UNTRACKED) at completion. */
#define FX_URING_PATH_INFLIGHT 1024
struct fx_pending {
	struct fx_event ev;
	char body[2 * FX_PATH_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FX_URING_PATH_INFLIGHT);
	__type(key, __u64);
	__type(value, struct fx_pending);
} uring_paths SEC(".maps");

static __always_inline bool fx_uring_path_op(__u8 op)
{
	return op == FX_IORING_OP_RENAMEAT || op == FX_IORING_OP_UNLINKAT || op == FX_IORING_OP_MKDIRAT ||
	       op == FX_IORING_OP_SYMLINKAT || op == FX_IORING_OP_LINKAT;
}

static __always_inline bool fx_uring_write_op(__u8 op)
{
	return op == FX_IORING_OP_WRITE || op == FX_IORING_OP_WRITEV || op == FX_IORING_OP_WRITE_FIXED ||
	       op == FX_IORING_OP_WRITEV_FIXED;
}

/* Emits an fd-based event for `f` if it is under the root; returns 0 when sent. */
static __always_inline int fx_emit_file(struct fx_scratch *s, struct file *f, __u32 op, __u32 flags,
					__u64 offset, __u64 len, __u64 arg)
{
	if (!f)
		return -1;
	fx_header(s, op, BPF_CORE_READ(f, f_inode));
	if (fx_event_path(s, f))
		return -1;
	s->ev.flags |= flags;
	s->ev.offset = offset;
	s->ev.len = len;
	s->ev.arg = arg;
	fx_submit(s);
	return 0;
}

/* A change the probes cannot describe: the recorder journals a gap and heals it. */
static __always_inline void fx_emit_untracked(struct fx_scratch *s, __u64 what)
{
	fx_header(s, FX_OP_UNTRACKED, NULL);
	s->ev.arg = what;
	fx_submit(s);
}

static __always_inline int fx_uring_completed(struct io_kiocb *req, __u8 op, __s64 res);

SEC("tp_btf/io_uring_complete")
int BPF_PROG(fx_uring_complete, struct io_ring_ctx *ring, void *reqp, struct io_uring_cqe *cqe)
{
	struct io_kiocb *req = reqp;
	if (!req || fx_skip_task())
		return 0;
	__u8 op = BPF_CORE_READ(req, opcode);
	__s64 res = BPF_CORE_READ(cqe, res);
	/* A rename counted as a path change in flight at submission (its pending entry exists). */
	__u64 key = (__u64)req;
	bool counted = op == FX_IORING_OP_RENAMEAT && bpf_map_lookup_elem(&uring_paths, &key);
	fx_uring_completed(req, op, res);
	if (counted)
		fx_ns_change_end();
	return 0;
}

static __always_inline int fx_uring_completed(struct io_kiocb *req, __u8 op, __s64 res)
{
	if (res < 0) {
		if (fx_uring_path_op(op)) {
			__u64 key = (__u64)req;
			bpf_map_delete_elem(&uring_paths, &key);
		}
		return 0;
	}
	/* Every request type's command data starts with its file (io_kiocb's first field; read
	 * plainly: aya 0.14 cannot relocate offset 0). */
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), (void *)req);
	struct fx_scratch *s = NULL;
	if (fx_uring_write_op(op)) {
		if (res == 0 || !(s = fx_scratch()))
			return 0;
		/* The write advanced its kiocb past the bytes (io_rw starts with the kiocb). */
		__u64 end = BPF_CORE_READ((struct kiocb *)req, ki_pos);
		__u64 start = end >= (__u64)res ? end - res : 0;
		fx_emit_file(s, f, FX_OP_WRITE, FX_F_INEXACT, start, res, 0);
		return 0;
	}
	switch (op) {
	case FX_IORING_OP_SPLICE: {
		if (res == 0 || !(s = fx_scratch()))
			return 0;
		__s64 off = BPF_CORE_READ((struct io_splice *)req, off_out);
		__u64 end = off >= 0 ? off + res : BPF_CORE_READ(f, f_pos);
		__u64 start = end >= (__u64)res ? end - res : 0;
		fx_emit_file(s, f, FX_OP_WRITE, FX_F_INEXACT, start, res, 0);
		return 0;
	}
	case FX_IORING_OP_FSYNC: {
		if (!(s = fx_scratch()))
			return 0;
		int fl = BPF_CORE_READ((struct io_sync *)req, flags);
		fx_emit_file(s, f, (fl & FX_IORING_FSYNC_DATASYNC) ? FX_OP_FDATASYNC : FX_OP_FSYNC, 0, 0, 0, 0);
		return 0;
	}
	case FX_IORING_OP_SYNC_FILE_RANGE:
		if ((s = fx_scratch()))
			fx_emit_file(s, f, FX_OP_SYNC_FILE_RANGE, 0, 0, 0, 0);
		return 0;
	case FX_IORING_OP_FALLOCATE: {
		if (!(s = fx_scratch()))
			return 0;
		struct io_sync *sy = (struct io_sync *)req;
		fx_emit_file(s, f, FX_OP_FALLOCATE, 0, BPF_CORE_READ(sy, off), BPF_CORE_READ(sy, len),
			     BPF_CORE_READ(sy, mode));
		return 0;
	}
	case FX_IORING_OP_FTRUNCATE:
		if ((s = fx_scratch()))
			fx_emit_file(s, f, FX_OP_TRUNCATE, 0, 0, BPF_CORE_READ((struct io_ftrunc *)req, len), 0);
		return 0;
	case FX_IORING_OP_OPENAT:
	case FX_IORING_OP_OPENAT2: {
		struct io_open *o = (struct io_open *)req;
		__u64 flags = BPF_CORE_READ(o, how.flags);
		if (!(flags & (FX_O_CREAT | FX_O_TRUNC)) || !(s = fx_scratch()))
			return 0;
		if (BPF_CORE_READ(o, file_slot)) {
			/* Opened into a fixed-file slot: no descriptor to find the file by. */
			fx_emit_untracked(s, op);
			return 0;
		}
		fx_emit_file(s, fx_fd_file(res), FX_OP_CREATE, (flags & FX_O_TRUNC) ? FX_F_TRUNC : 0, 0, 0, 0);
		return 0;
	}
	case FX_IORING_OP_FSETXATTR:
		if ((s = fx_scratch()))
			fx_emit_file(s, f, FX_OP_UNTRACKED, 0, 0, 0, op);
		return 0;
	case FX_IORING_OP_SETXATTR:
		if ((s = fx_scratch()))
			fx_emit_untracked(s, op);
		return 0;
	}
	if (fx_uring_path_op(op)) {
		__u64 key = (__u64)req;
		struct fx_pending *p = bpf_map_lookup_elem(&uring_paths, &key);
		if (!(s = fx_scratch()))
			return 0;
		if (!p) {
			fx_emit_untracked(s, op);
			return 0;
		}
		if (p->ev.op == 0) {
			/* Certainly outside the root. */
			bpf_map_delete_elem(&uring_paths, &key);
			return 0;
		}
		/* Copy out before deleting (the value is freed with the element). */
		bpf_probe_read_kernel(&s->ev, sizeof(struct fx_pending), p);
		bpf_map_delete_elem(&uring_paths, &key);
		s->ev.time_ns = bpf_ktime_get_boot_ns();
		fx_submit(s);
	}
	return 0;
}

/* Builds the event of an io_uring path operation as its syscall would (dir + name pairs) from
 * the kernel's copies of the names; kept until the completion. */
static __always_inline void fx_uring_path_submit(struct io_kiocb *req, __u8 op)
{
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return;
	__u64 dfd1 = FX_AT_FDCWD, dfd2 = FX_AT_FDCWD, n1 = 0, n2 = 0, flags = 0, mode = 0;
	__u32 fop = 0;
	struct filename *fn1 = NULL, *fn2 = NULL;
	bool two = false;
	switch (op) {
	case FX_IORING_OP_RENAMEAT: {
		struct io_rename *r = (struct io_rename *)req;
		dfd1 = (__s64)BPF_CORE_READ(r, old_dfd);
		dfd2 = (__s64)BPF_CORE_READ(r, new_dfd);
		fn1 = BPF_CORE_READ(r, oldpath);
		fn2 = BPF_CORE_READ(r, newpath);
		flags = BPF_CORE_READ(r, flags);
		fop = FX_OP_PATH_RENAME;
		two = true;
		break;
	}
	case FX_IORING_OP_UNLINKAT: {
		struct io_unlink *u = (struct io_unlink *)req;
		dfd1 = (__s64)BPF_CORE_READ(u, dfd);
		fn1 = BPF_CORE_READ(u, filename);
		flags = BPF_CORE_READ(u, flags);
		fop = FX_OP_PATH_UNLINK;
		break;
	}
	case FX_IORING_OP_MKDIRAT: {
		struct io_mkdir *m = (struct io_mkdir *)req;
		dfd1 = (__s64)BPF_CORE_READ(m, dfd);
		fn1 = BPF_CORE_READ(m, filename);
		mode = BPF_CORE_READ(m, mode);
		fop = FX_OP_PATH_MKDIR;
		break;
	}
	case FX_IORING_OP_SYMLINKAT:
	case FX_IORING_OP_LINKAT: {
		struct io_link *l = (struct io_link *)req;
		dfd1 = op == FX_IORING_OP_SYMLINKAT ? FX_NO_DIR : (__s64)BPF_CORE_READ(l, old_dfd);
		dfd2 = (__s64)BPF_CORE_READ(l, new_dfd);
		fn1 = BPF_CORE_READ(l, oldpath);
		fn2 = BPF_CORE_READ(l, newpath);
		fop = op == FX_IORING_OP_SYMLINKAT ? FX_OP_PATH_SYMLINK : FX_OP_PATH_LINK;
		two = true;
		break;
	}
	default:
		return;
	}
	/* struct filename's first field is the kernel copy of the name (offset 0: read plainly). */
	bpf_probe_read_kernel(&n1, sizeof(n1), (void *)fn1);
	if (two)
		bpf_probe_read_kernel(&n2, sizeof(n2), (void *)fn2);
	fx_header(s, fop, NULL);
	__u32 under1 = 0, under2 = 0;
	int l1 = fx_dir_name_from(s, dfd1, n1, true, &s->body[0], &under1);
	if (l1 < 0)
		return;
	s->ev.path_len = l1 & (FX_PATH_MAX * 2 - 1);
	if (two) {
		int l2 = fx_dir_name_from(s, dfd2, n2, true, &s->body[s->ev.path_len & (FX_PATH_MAX * 2 - 1)], &under2);
		if (l2 < 0)
			return;
		s->ev.data_len = l2 & (FX_PATH_MAX * 2 - 1);
	}
	if (fop == FX_OP_PATH_SYMLINK)
		under1 = 0;
	if (!under1 && !under2)
		s->ev.op = 0; /* certainly outside the root: kept only to be recognized at completion */
	if (fop == FX_OP_PATH_UNLINK && (flags & FX_AT_REMOVEDIR))
		s->ev.flags |= FX_F_RMDIR;
	if (fop == FX_OP_PATH_RENAME)
		s->ev.arg = flags;
	if (fop == FX_OP_PATH_MKDIR) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
		s->ev.arg = mode;
		s->ev.umask = BPF_CORE_READ(task, fs, umask);
	}
	__u64 key = (__u64)req;
	/* A rename is a path change in flight from here to its completion (the path cache). */
	if (bpf_map_update_elem(&uring_paths, &key, &s->ev, BPF_ANY) == 0 && fop == FX_OP_PATH_RENAME)
		fx_ns_change_begin();
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(fx_uring_submit, struct io_kiocb *req)
{
	if (!req || fx_skip_task())
		return 0;
	__u8 op = BPF_CORE_READ(req, opcode);
	__u64 rflags = BPF_CORE_READ(req, flags);
	bool skip_cqe = rflags & (1ULL << FX_REQ_F_CQE_SKIP_BIT);
	if (fx_uring_path_op(op)) {
		if (!skip_cqe) {
			fx_uring_path_submit(req, op);
		} else {
			/* No completion will tell whether it worked: heal instead. A rename without a
			 * completion stays "in flight" for the path cache (which is then off for good). */
			if (op == FX_IORING_OP_RENAMEAT)
				fx_ns_change_begin();
			struct fx_scratch *s = fx_scratch();
			if (s)
				fx_emit_untracked(s, op);
		}
		return 0;
	}
	if (!fx_uring_write_op(op) || !skip_cqe)
		return 0;
	/* No completion will be posted: report the range now. The file is not assigned yet; the
	 * descriptor is in cqe.fd (a fixed-file slot cannot be resolved: a gap). */
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	if (rflags & (1ULL << FX_REQ_F_FIXED_FILE_BIT)) {
		fx_emit_untracked(s, op);
		return 0;
	}
	struct file *f = fx_fd_file(BPF_CORE_READ(req, cqe.fd));
	if (!f)
		return 0;
	__u64 pos = BPF_CORE_READ((struct kiocb *)req, ki_pos);
	if (pos == (__u64)-1)
		pos = BPF_CORE_READ(f, f_pos);
	__u64 len = FX_LEN_TO_EOF;
	if (op == FX_IORING_OP_WRITE || op == FX_IORING_OP_WRITE_FIXED)
		len = BPF_CORE_READ((struct io_rw *)req, len);
	fx_emit_file(s, f, FX_OP_WRITE, FX_F_INEXACT, pos, len, 0);
	return 0;
}

/* Asynchronous direct writes, at completion. Can run in interrupt context: uses its own scratch
 * slot, never the task's. */
SEC("tp_btf/iomap_dio_complete")
int BPF_PROG(fx_dio_complete, struct kiocb *iocb, int error, ssize_t ret)
{
	if (!iocb || ret <= 0 || error)
		return 0;
	if (!(BPF_CORE_READ(iocb, ki_flags) & FX_IOCB_WRITE))
		return 0;
	/* A synchronous kiocb (no ki_complete) is a write syscall: journaled by its tracepoint. */
	if (!BPF_CORE_READ(iocb, ki_complete))
		return 0;
	struct fx_scratch *s = fx_scratch_irq();
	if (!s)
		return 0;
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), (void *)iocb); /* ki_filp: offset 0 */
	__u64 end = BPF_CORE_READ(iocb, ki_pos);
	__u64 start = end >= (__u64)ret ? end - ret : 0;
	fx_emit_file(s, f, FX_OP_WRITE, FX_F_INEXACT, start, ret, 0);
	return 0;
}

/* io_uring_enter runs requests inline: the pages they dirty are journaled at completion, so the
 * dirty-page catch-all (mmap.bpf.c) skips tasks inside it, as inside any hooked write. */
SEC("tracepoint/syscalls/sys_enter_io_uring_enter")
int fx_enter_io_uring_enter(struct trace_event_raw_sys_enter *ctx)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = {};
	fx_save_args(&a);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_io_uring_enter")
int fx_exit_io_uring_enter(struct trace_event_raw_sys_exit *ctx)
{
	fx_drop_args();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_io_submit")
int fx_enter_io_submit(struct trace_event_raw_sys_enter *ctx)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .count = ctx->args[1], .buf = ctx->args[2] };
	fx_save_args(&a);
	return 0;
}

struct fx_aio_walk {
	__u64 iocbpp;
	struct fx_scratch *s;
};

static long fx_aio_iovec_step(__u64 i, void *arg)
{
	__u64 *acc = arg; /* acc[0] = iovec array, acc[1] = count, acc[2] = sum */
	if (i >= acc[1])
		return 1;
	__u64 l = 0;
	bpf_probe_read_user(&l, sizeof(l), (void *)(acc[0] + i * 16 + 8));
	acc[2] += l;
	return 0;
}

static long fx_aio_step(__u64 i, void *arg)
{
	struct fx_aio_walk *w = arg;
	__u64 p = 0;
	struct iocb cb = {};
	if (bpf_probe_read_user(&p, sizeof(p), (void *)(w->iocbpp + i * 8)) ||
	    bpf_probe_read_user(&cb, sizeof(cb), (void *)p))
		return 0;
	__u16 op = cb.aio_lio_opcode;
	if (op != FX_IOCB_CMD_PWRITE && op != FX_IOCB_CMD_PWRITEV && op != FX_IOCB_CMD_FSYNC &&
	    op != FX_IOCB_CMD_FDSYNC)
		return 0;
	struct file *f = fx_fd_file(cb.aio_fildes);
	if (!f)
		return 0;
	if (op == FX_IOCB_CMD_FSYNC || op == FX_IOCB_CMD_FDSYNC) {
		fx_emit_file(w->s, f, op == FX_IOCB_CMD_FSYNC ? FX_OP_FSYNC : FX_OP_FDATASYNC, 0, 0, 0, 0);
		return 0;
	}
	__u64 len = cb.aio_nbytes;
	if (op == FX_IOCB_CMD_PWRITEV) {
		__u64 acc[3] = { cb.aio_buf, cb.aio_nbytes, 0 };
		if (cb.aio_nbytes <= FX_AIO_MAX_IOVECS) {
			bpf_loop(FX_AIO_MAX_IOVECS, fx_aio_iovec_step, acc, 0);
			len = acc[2];
		} else {
			len = FX_LEN_TO_EOF;
		}
	}
	if (len)
		fx_emit_file(w->s, f, FX_OP_WRITE, FX_F_INEXACT, cb.aio_offset, len, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_io_submit")
int fx_exit_io_submit(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	long n = ctx->ret;
	if (n <= 0)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	struct fx_aio_walk w = { .iocbpp = args.buf, .s = s };
	if (n > FX_AIO_MAX_IOCBS) {
		fx_emit_untracked(s, FX_AIO_MAX_IOCBS);
		n = FX_AIO_MAX_IOCBS;
	}
	bpf_loop(n, fx_aio_step, &w, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
