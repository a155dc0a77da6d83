/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* fsync(2) and fdatasync(2) on files under the root: restore points. */
#include "common.bpf.h"

static __always_inline int on_enter(__u64 fd)
{
	if (fx_skip_task()) {
		fx_learn_root_sb();
		return 0;
	}
	struct fx_args a = { .fd = fd };
	fx_save_args(&a);
	return 0;
}

static __always_inline int on_exit(long ret, __u32 op)
{
	struct fx_args a;
	if (!fx_take_args(&a))
		return 0;
	__u64 fd = a.fd;
	if (ret != 0)
		return 0;
	struct file *f = fx_fd_file(fd);
	if (!f)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(s, op, BPF_CORE_READ(f, f_inode));
	if (fx_event_path(s, f))
		return 0;
	fx_submit(s);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int fx_enter_fsync(struct trace_event_raw_sys_enter *ctx) { return on_enter(ctx->args[0]); }
SEC("tracepoint/syscalls/sys_exit_fsync")
int fx_exit_fsync(struct trace_event_raw_sys_exit *ctx) { return on_exit(ctx->ret, FX_OP_FSYNC); }
SEC("tracepoint/syscalls/sys_enter_fdatasync")
int fx_enter_fdatasync(struct trace_event_raw_sys_enter *ctx) { return on_enter(ctx->args[0]); }
SEC("tracepoint/syscalls/sys_exit_fdatasync")
int fx_exit_fdatasync(struct trace_event_raw_sys_exit *ctx) { return on_exit(ctx->ret, FX_OP_FDATASYNC); }

SEC("tracepoint/syscalls/sys_enter_sync_file_range")
int fx_enter_sync_file_range(struct trace_event_raw_sys_enter *ctx) { return on_enter(ctx->args[0]); }
SEC("tracepoint/syscalls/sys_exit_sync_file_range")
int fx_exit_sync_file_range(struct trace_event_raw_sys_exit *ctx) { return on_exit(ctx->ret, FX_OP_SYNC_FILE_RANGE); }

/* syncfs(fd): a restore point when the fd's filesystem is the watched root's. */
SEC("tracepoint/syscalls/sys_enter_syncfs")
int fx_enter_syncfs(struct trace_event_raw_sys_enter *ctx) { return on_enter(ctx->args[0]); }
SEC("tracepoint/syscalls/sys_exit_syncfs")
int fx_exit_syncfs(struct trace_event_raw_sys_exit *ctx)
{
	struct fx_args a;
	if (!fx_take_args(&a))
		return 0;
	__u64 fd = a.fd;
	if (ctx->ret != 0)
		return 0;
	struct file *f = fx_fd_file(fd);
	if (!f)
		return 0;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	if (BPF_CORE_READ(inode, i_sb, s_dev) != root_dev)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(s, FX_OP_SYNCFS, inode);
	fx_submit(s);
	return 0;
}

/* sync(2): every filesystem, so the root's too. */
SEC("tracepoint/syscalls/sys_exit_sync")
int fx_exit_sync(struct trace_event_raw_sys_exit *ctx)
{
	if (fx_skip_task())
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(s, FX_OP_SYNC, NULL);
	fx_submit(s);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
