/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Writes through write(2) and pwrite64(2): exact payloads up to the cap, ranges beyond it. */
#include "common.bpf.h"

static __always_inline int on_enter(__u64 fd, __u64 buf, __u64 count, __u64 pos, bool positional)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = fd, .buf = buf, .count = count, .pos = pos };
	struct file *f = fx_fd_file(fd);
	if (!positional)
		fx_pos_enter(&a, f);
	fx_save_write_args(&a, f);
	return 0;
}

/* Exact writes are built in the ring buffer itself (reserve, copy the header and path, read the
 * payload from user memory straight into the record, submit): no second copy of the payload
 * through the scratch buffer. bpf_ringbuf_reserve takes a constant size, so records come in size
 * classes: a head of FX_RB_HEAD_BYTES (header + path) plus a payload class of P bytes; the
 * recorder reads path_len and data_len and ignores the padding. Paths too long for the head and
 * payloads over the largest class take the copying route (fx_output). */
#define FX_RB_HEAD_BYTES 256

#define FX_DEFINE_RING_WRITE(P)                                                                    \
	static __always_inline int fx_ring_write_##P(struct fx_scratch *s, const struct fx_args *a, \
						     __u64 buf, __u32 n, __u32 head)                \
	{                                                                                          \
		struct fx_event *r = bpf_ringbuf_reserve(&events, FX_RB_HEAD_BYTES + P, 0);         \
		if (!r) {                                                                          \
			/* Full: the seq is taken and the loss counted, as in fx_output. */          \
			s->ev.seq = __sync_fetch_and_add(&fx_seq, 1);                               \
			fx_count_drop(&s->ev);                                                     \
			return 0;                                                                  \
		}                                                                                  \
		__u32 off = head & (FX_RB_HEAD_BYTES - 1);                                         \
		bpf_probe_read_kernel(r, off, &s->ev);                                             \
		__u32 m = n;                                                                       \
		barrier_var(m); /* keep the clamp: the verifier needs it, clang thinks n <= P */  \
		m &= 2 * P - 1;                                                                    \
		if (m > P)                                                                         \
			m = P;                                                                     \
		if (bpf_probe_read_user((char *)r + off, m, (void *)buf) == 0) {                   \
			r->data_len = m;                                                           \
		} else {                                                                           \
			r->data_len = 0;                                                           \
			r->flags |= FX_F_INEXACT;                                                  \
		}                                                                                  \
		r->seq = __sync_fetch_and_add(&fx_seq, 1);                                         \
		r->flags |= fx_racy_check(s);                                                      \
		if (fx_writer_overlapped(a)) {                                                     \
			r->flags |= FX_F_CONCURRENT | FX_F_INEXACT;                                \
			r->data_len = 0;                                                           \
		}                                                                                  \
		bpf_ringbuf_submit(r, 0);                                                          \
		return 0;                                                                          \
	}

FX_DEFINE_RING_WRITE(256)
FX_DEFINE_RING_WRITE(1024)
FX_DEFINE_RING_WRITE(4096)
FX_DEFINE_RING_WRITE(8192)
FX_DEFINE_RING_WRITE(16384)
FX_DEFINE_RING_WRITE(65536)

/* 0 if the write was sent (or its loss counted) from the ring; -1: use the copying route. */
static __always_inline int fx_ring_write(struct fx_scratch *s, const struct fx_args *a, __u64 buf, __u32 n)
{
	__u32 head = sizeof(struct fx_event) + s->ev.path_len;
	if (head >= FX_RB_HEAD_BYTES)
		return -1;
	if (n <= 256)
		return fx_ring_write_256(s, a, buf, n, head);
	if (n <= 1024)
		return fx_ring_write_1024(s, a, buf, n, head);
	if (n <= 4096)
		return fx_ring_write_4096(s, a, buf, n, head);
	if (n <= 8192)
		return fx_ring_write_8192(s, a, buf, n, head);
	if (n <= 16384)
		return fx_ring_write_16384(s, a, buf, n, head);
	if (n <= 65536)
		return fx_ring_write_65536(s, a, buf, n, head);
	return -1;
}

static __always_inline void write_event(const struct fx_args *a, long ret, bool positional)
{
	struct fx_args args = *a;
	if (ret <= 0)
		return;
	struct file *f;
	struct fx_scratch *s = fx_file_event(args.fd, FX_OP_WRITE, &f);
	if (!s)
		return;
	__u64 len = ret;
	s->ev.offset = args.pos;
	s->ev.len = len;
	__u32 fl = 0;
	if (!positional)
		/* write(2) advanced f_pos past the bytes (also with O_APPEND). */
		fl = fx_pos_range(&args, f, FX_FIELD(&s->hf, f, f_pos), len, &s->ev.offset, &s->ev.len);
	else if (FX_FIELD(&s->hf, f, f_flags) & FX_O_APPEND)
		fl = fx_append_range(&args, f, len, &s->ev.offset, &s->ev.len);
	if (fl) {
		s->ev.flags |= fl;
		fx_submit_write(s, &args);
		return;
	}
	__u32 cap = payload_cap_bytes;
	if (cap > FX_PAYLOAD_MAX)
		cap = FX_PAYLOAD_MAX;
	if (len <= cap && fx_ring_write(s, &args, args.buf, len) == 0)
		return;
	if (len <= cap) {
		__u32 off = s->ev.path_len & (FX_PATH_MAX - 1);
		__u32 n = len & (FX_PAYLOAD_MAX * 2 - 1);
		if (n > FX_PAYLOAD_MAX)
			n = FX_PAYLOAD_MAX;
		if (bpf_probe_read_user(&s->body[off], n, (void *)args.buf) == 0)
			s->ev.data_len = n;
		else
			s->ev.flags |= FX_F_INEXACT;
	} else {
		s->ev.flags |= FX_F_INEXACT;
	}
	fx_submit_write(s, &args);
}

/* Takes the saved arguments, journals the write, and only then counts it out of its inode's
 * writers (after its seq was taken; see fx_writer_overlapped). */
static __always_inline int on_exit(long ret, bool positional)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	write_event(&args, ret, positional);
	fx_writer_exit(&args);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int fx_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], 0, false);
}

SEC("tracepoint/syscalls/sys_exit_write")
int fx_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, false);
}

SEC("tracepoint/syscalls/sys_enter_pwrite64")
int fx_enter_pwrite64(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], true);
}

SEC("tracepoint/syscalls/sys_exit_pwrite64")
int fx_exit_pwrite64(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, true);
}

/* Writes whose bytes are not copied (vectors, copies between files): an inexact range that the
 * recorder re-reads. pos_ptr: user pointer to the output offset updated by the call, or 0. */
static __always_inline int range_enter(__u64 fd, __u64 pos, __u64 pos_ptr, __u64 positional)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = fd, .pos = pos, .buf = pos_ptr, .flags = positional };
	struct file *f = fx_fd_file(fd);
	if (!((positional & 1) && pos != (__u64)-1) && !pos_ptr)
		fx_pos_enter(&a, f);
	fx_save_write_args(&a, f);
	return 0;
}

static __always_inline void range_event(const struct fx_args *a, long ret)
{
	struct fx_args args = *a;
	if (ret <= 0)
		return;
	struct file *f;
	struct fx_scratch *s = fx_file_event(args.fd, FX_OP_WRITE, &f);
	if (!s)
		return;
	__u64 end = 0;
	s->ev.flags |= FX_F_INEXACT;
	if ((args.flags & 1) && ((args.flags & 2) || (FX_FIELD(&s->hf, f, f_flags) & FX_O_APPEND))) {
		/* Appended, whatever the offset (fx_append_range). */
		s->ev.flags |= fx_append_range(&args, f, ret, &s->ev.offset, &s->ev.len);
		fx_submit_write(s, &args);
		return;
	} else if (args.flags == 1 && args.pos != (__u64)-1) {
		end = args.pos + ret;
	} else if (args.buf) {
		bpf_probe_read_user(&end, sizeof(end), (void *)args.buf);
	} else {
		/* At the file position: see fx_pos_range. */
		s->ev.flags |= fx_pos_range(&args, f, FX_FIELD(&s->hf, f, f_pos), ret, &s->ev.offset,
					    &s->ev.len);
		fx_submit_write(s, &args);
		return;
	}
	s->ev.offset = end - ret;
	s->ev.len = ret;
	fx_submit_write(s, &args);
}

static __always_inline int range_exit(long ret)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	range_event(&args, ret);
	fx_writer_exit(&args);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int fx_enter_writev(struct trace_event_raw_sys_enter *ctx) { return range_enter(ctx->args[0], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_writev")
int fx_exit_writev(struct trace_event_raw_sys_exit *ctx) { return range_exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_pwritev")
int fx_enter_pwritev(struct trace_event_raw_sys_enter *ctx) { return range_enter(ctx->args[0], ctx->args[3], 0, 1); }
SEC("tracepoint/syscalls/sys_exit_pwritev")
int fx_exit_pwritev(struct trace_event_raw_sys_exit *ctx) { return range_exit(ctx->ret); }
/* pwritev2 with offset -1 writes at the file position (but RWF_APPEND appends). */
SEC("tracepoint/syscalls/sys_enter_pwritev2")
int fx_enter_pwritev2(struct trace_event_raw_sys_enter *ctx)
{
	/* flags bit 2: RWF_APPEND, an append whatever the offset. */
	return range_enter(ctx->args[0], ctx->args[3], 0, 1 | ((ctx->args[5] & FX_RWF_APPEND) ? 2 : 0));
}
SEC("tracepoint/syscalls/sys_exit_pwritev2")
int fx_exit_pwritev2(struct trace_event_raw_sys_exit *ctx) { return range_exit(ctx->ret); }
/* copy_file_range(fd_in, off_in*, fd_out, off_out*, len, flags) */
SEC("tracepoint/syscalls/sys_enter_copy_file_range")
int fx_enter_copy_file_range(struct trace_event_raw_sys_enter *ctx) { return range_enter(ctx->args[2], 0, ctx->args[3], 0); }
SEC("tracepoint/syscalls/sys_exit_copy_file_range")
int fx_exit_copy_file_range(struct trace_event_raw_sys_exit *ctx) { return range_exit(ctx->ret); }
/* sendfile(out_fd, in_fd, offset*, count): the offset pointer is the input's. */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int fx_enter_sendfile64(struct trace_event_raw_sys_enter *ctx) { return range_enter(ctx->args[0], 0, 0, 0); }
SEC("tracepoint/syscalls/sys_exit_sendfile64")
int fx_exit_sendfile64(struct trace_event_raw_sys_exit *ctx) { return range_exit(ctx->ret); }
/* splice(fd_in, off_in*, fd_out, off_out*, len, flags) */
SEC("tracepoint/syscalls/sys_enter_splice")
int fx_enter_splice(struct trace_event_raw_sys_enter *ctx) { return range_enter(ctx->args[2], 0, ctx->args[3], 0); }
SEC("tracepoint/syscalls/sys_exit_splice")
int fx_exit_splice(struct trace_event_raw_sys_exit *ctx) { return range_exit(ctx->ret); }

/* ioctls that change a file's bytes without a write; every other ioctl costs a few compares.
 * - Reflinks: ioctl(dest, FICLONE, src_fd) shares src's whole content, FICLONERANGE a range
 *   (struct file_clone_range; length 0 = to the end): an inexact range of dest, re-read by the
 *   recorder (FIDEDUPERANGE changes no bytes and no times).
 * - Preallocation (fs/ioctl.c, every filesystem with fallocate): FS_IOC_RESVSP(64) is
 *   fallocate(KEEP_SIZE), FS_IOC_UNRESVSP(64) fallocate(KEEP_SIZE | PUNCH_HOLE) and
 *   FS_IOC_ZERO_RANGE fallocate(KEEP_SIZE | ZERO_RANGE) of struct space_resv's range, whose
 *   start is relative to l_whence: journaled as that fallocate. */
#define FX_FICLONE 0x40049409
#define FX_FICLONERANGE 0x4020940d
#define FX_IOC_RESVSP 0x40305828
#define FX_IOC_UNRESVSP 0x40305829
#define FX_IOC_RESVSP64 0x4030582a
#define FX_IOC_UNRESVSP64 0x4030582b
#define FX_IOC_ZERO_RANGE 0x40305839
#define FX_FALLOC_FL_KEEP_SIZE 0x01
#define FX_FALLOC_FL_PUNCH_HOLE 0x02
#define FX_FALLOC_FL_ZERO_RANGE 0x10
#define FX_LEN_TO_EOF_BYTES (1ULL << 62)

/* The head of the kernel's struct space_resv (include/linux/falloc.h, 48 bytes). */
struct fx_space_resv {
	__s16 l_type;
	__s16 l_whence;
	__s64 l_start;
	__s64 l_len;
};

/* The fallocate mode a preallocation ioctl becomes, or -1 for any other command. */
static __always_inline int prealloc_mode(__u32 cmd)
{
	switch (cmd) {
	case FX_IOC_RESVSP:
	case FX_IOC_RESVSP64:
		return FX_FALLOC_FL_KEEP_SIZE;
	case FX_IOC_UNRESVSP:
	case FX_IOC_UNRESVSP64:
		return FX_FALLOC_FL_KEEP_SIZE | FX_FALLOC_FL_PUNCH_HOLE;
	case FX_IOC_ZERO_RANGE:
		return FX_FALLOC_FL_KEEP_SIZE | FX_FALLOC_FL_ZERO_RANGE;
	}
	return -1;
}

SEC("tracepoint/syscalls/sys_enter_ioctl")
int fx_enter_ioctl(struct trace_event_raw_sys_enter *ctx)
{
	__u32 cmd = ctx->args[1];
	int pmode = prealloc_mode(cmd);
	if (cmd != FX_FICLONE && cmd != FX_FICLONERANGE && pmode < 0)
		return 0;
	if (fx_skip_task())
		return 0;
	struct file *f = fx_fd_file(ctx->args[0]);
	/* mode: the command; flags: the fallocate mode of a preallocation. */
	struct fx_args a = { .fd = ctx->args[0], .pos = 0, .count = FX_LEN_TO_EOF_BYTES, .mode = cmd };
	if (cmd == FX_FICLONERANGE) {
		struct file_clone_range r = {};
		bpf_probe_read_user(&r, sizeof(r), (void *)ctx->args[2]);
		a.pos = r.dest_offset;
		a.count = r.src_length ? r.src_length : FX_LEN_TO_EOF_BYTES;
	} else if (pmode >= 0) {
		struct fx_space_resv r = {};
		if (bpf_probe_read_user(&r, sizeof(r), (void *)ctx->args[2]) || !f)
			return 0; /* the kernel fails it too (EFAULT, EBADF) */
		/* As ioctl_preallocate resolves it; another whence fails with EINVAL. */
		if (r.l_whence == 1)
			r.l_start += BPF_CORE_READ(f, f_pos);
		else if (r.l_whence == 2)
			r.l_start += BPF_CORE_READ(f, f_inode, i_size);
		a.flags = pmode;
		a.pos = r.l_start;
		a.count = r.l_len;
	}
	fx_save_write_args(&a, f);
	return 0;
}

static __always_inline void clone_event(const struct fx_args *a, long ret)
{
	struct fx_args args = *a;
	if (ret != 0)
		return;
	struct file *f;
	struct fx_scratch *s = fx_file_event(args.fd, FX_OP_WRITE, &f);
	if (!s)
		return;
	s->ev.offset = args.pos;
	s->ev.len = args.count;
	s->ev.flags |= FX_F_INEXACT;
	fx_submit_write(s, &args);
}

SEC("tracepoint/syscalls/sys_exit_ioctl")
int fx_exit_ioctl(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	if (args.mode == FX_FICLONE || args.mode == FX_FICLONERANGE)
		clone_event(&args, ctx->ret);
	else if (prealloc_mode(args.mode) >= 0)
		fx_fallocate_event(&args, ctx->ret);
	fx_writer_exit(&args);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
