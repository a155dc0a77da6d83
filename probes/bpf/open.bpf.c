/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* fd-based metadata: open/openat/openat2/creat that create or truncate, ftruncate, fchmod,
 * fchown. The file is known by the returned (or given) descriptor, so its path is exact. */
#include "common.bpf.h"

#define FX_O_CREAT 0100
#define FX_O_TRUNC 01000

static __always_inline int save(__u64 fd, __u64 flags, __u64 arg)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = fd, .flags = flags, .mode = arg };
	fx_save_args(&a);
	return 0;
}

static __always_inline int emit(__u64 fd, __u32 op, __u32 flags, __u64 len)
{
	struct file *f = fx_fd_file(fd);
	if (!f)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(s, op, BPF_CORE_READ(f, f_inode));
	if (fx_event_path(s, f))
		return 0;
	s->ev.flags |= flags;
	s->ev.len = len;
	fx_submit(s);
	return 0;
}

static __always_inline int open_exit(long ret)
{
	struct fx_args a;
	if (!fx_take_args(&a))
		return 0;
	__u64 flags = a.flags;
	if (ret < 0 || !(flags & (FX_O_CREAT | FX_O_TRUNC)))
		return 0;
	return emit(ret, FX_OP_CREATE, (flags & FX_O_TRUNC) ? FX_F_TRUNC : 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int fx_enter_openat(struct trace_event_raw_sys_enter *ctx) { return save(0, ctx->args[2], 0); }
SEC("tracepoint/syscalls/sys_exit_openat")
int fx_exit_openat(struct trace_event_raw_sys_exit *ctx) { return open_exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_open")
int fx_enter_open(struct trace_event_raw_sys_enter *ctx) { return save(0, ctx->args[1], 0); }
SEC("tracepoint/syscalls/sys_exit_open")
int fx_exit_open(struct trace_event_raw_sys_exit *ctx) { return open_exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_creat")
int fx_enter_creat(struct trace_event_raw_sys_enter *ctx) { return save(0, FX_O_CREAT | FX_O_TRUNC, 0); }
SEC("tracepoint/syscalls/sys_exit_creat")
int fx_exit_creat(struct trace_event_raw_sys_exit *ctx) { return open_exit(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_openat2")
int fx_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = 0;
	/* struct open_how { __u64 flags; __u64 mode; __u64 resolve; } */
	bpf_probe_read_user(&flags, sizeof(flags), (void *)ctx->args[2]);
	return save(0, flags, 0);
}
SEC("tracepoint/syscalls/sys_exit_openat2")
int fx_exit_openat2(struct trace_event_raw_sys_exit *ctx) { return open_exit(ctx->ret); }

static __always_inline int fd_exit(long ret, __u32 op)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	if (ret != 0)
		return 0;
	return emit(args.fd, op, 0, args.mode);
}

/* ftruncate and fallocate change a file's bytes: they are counted among its writers (see
 * fx_writer_overlapped), so a write racing them is re-read, and they are sent with
 * FX_F_CONCURRENT when they raced one (the recorder then journals the file's size and the
 * range's bytes as they are after the call). */
SEC("tracepoint/syscalls/sys_enter_ftruncate")
int fx_enter_ftruncate(struct trace_event_raw_sys_enter *ctx)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = ctx->args[0], .mode = ctx->args[1] };
	fx_save_write_args(&a, fx_fd_file(a.fd));
	return 0;
}

static __always_inline void truncate_event(const struct fx_args *a, long ret)
{
	if (ret != 0)
		return;
	struct file *f;
	struct fx_scratch *s = fx_file_event(a->fd, FX_OP_TRUNCATE, &f);
	if (!s)
		return;
	s->ev.len = a->mode;
	fx_submit_write(s, a);
}

SEC("tracepoint/syscalls/sys_exit_ftruncate")
int fx_exit_ftruncate(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	truncate_event(&args, ctx->ret);
	fx_writer_exit(&args);
	return 0;
}
SEC("tracepoint/syscalls/sys_enter_fchmod")
int fx_enter_fchmod(struct trace_event_raw_sys_enter *ctx) { return save(ctx->args[0], 0, ctx->args[1]); }
SEC("tracepoint/syscalls/sys_exit_fchmod")
int fx_exit_fchmod(struct trace_event_raw_sys_exit *ctx) { return fd_exit(ctx->ret, FX_OP_FCHMOD); }
SEC("tracepoint/syscalls/sys_enter_fchown")
int fx_enter_fchown(struct trace_event_raw_sys_enter *ctx) { return save(ctx->args[0], 0, 0); }
SEC("tracepoint/syscalls/sys_exit_fchown")
int fx_exit_fchown(struct trace_event_raw_sys_exit *ctx) { return fd_exit(ctx->ret, FX_OP_FCHOWN); }

SEC("tracepoint/syscalls/sys_enter_fallocate")
int fx_enter_fallocate(struct trace_event_raw_sys_enter *ctx)
{
	if (fx_skip_task())
		return 0;
	struct fx_args a = { .fd = ctx->args[0], .flags = ctx->args[1], .pos = ctx->args[2], .count = ctx->args[3] };
	fx_save_write_args(&a, fx_fd_file(a.fd));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fallocate")
int fx_exit_fallocate(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
	fx_fallocate_event(&args, ctx->ret);
	fx_writer_exit(&args);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
