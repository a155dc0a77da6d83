/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Writes through shared mappings bypass every write syscall. mmap(2) of a file under the root
 * with PROT_WRITE and MAP_SHARED is reported (with the path and the range) and the inode is
 * remembered; the writeback_dirty_folio tracepoint then reports when a page of such an inode
 * becomes dirty (a store through the mapping after the page was clean), so the recorder knows
 * to re-read it. msync(MS_SYNC) is a restore point. */
#include "common.bpf.h"

#define FX_PROT_WRITE 0x2
#define FX_MAP_TYPE 0x0f
#define FX_MAP_SHARED 0x01
#define FX_MAP_SHARED_VALIDATE 0x03
#define FX_MS_SYNC 4

/* Inodes under the root with a shared writable mapping: (dev, ino) -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fx_inode_key);
	__type(value, __u64);
} mmapped SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_mmap")
int fx_enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
	if (fx_skip_task())
		return 0;
	__u64 prot = ctx->args[2], flags = ctx->args[3];
	__u64 type = flags & FX_MAP_TYPE;
	if (!(prot & FX_PROT_WRITE) || (type != FX_MAP_SHARED && type != FX_MAP_SHARED_VALIDATE))
		return 0;
	struct fx_args a = { .fd = ctx->args[4], .count = ctx->args[1], .pos = ctx->args[5] };
	fx_save_args(&a);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int fx_exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct fx_args *a = bpf_map_lookup_elem(&inflight, &id);
	if (!a)
		return 0;
	struct fx_args args = *a;
	bpf_map_delete_elem(&inflight, &id);
	/* mmap returns an address; errors are -4095..-1. */
	if ((__u64)ctx->ret >= (__u64)-4095)
		return 0;
	struct file *f = fx_fd_file(args.fd);
	if (!f)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	fx_header(&s->ev, FX_OP_MMAP_SHARED, inode);
	if (fx_event_path(s, f))
		return 0;
	s->ev.offset = args.pos;
	s->ev.len = args.count;
	struct fx_inode_key k = { .dev = s->ev.dev, .ino = s->ev.ino };
	__u64 one = 1;
	bpf_map_update_elem(&mmapped, &k, &one, BPF_ANY);
	fx_submit(s);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_msync")
int fx_exit_msync(struct trace_event_raw_sys_exit *ctx)
{
	if (fx_skip_task() || ctx->ret != 0)
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(&s->ev, FX_OP_MSYNC, NULL);
	fx_submit(s);
	return 0;
}

SEC("tp_btf/writeback_dirty_folio")
int BPF_PROG(fx_dirty_folio, struct folio *folio, struct address_space *mapping)
{
	if (!mapping)
		return 0;
	struct inode *inode = BPF_CORE_READ(mapping, host);
	if (!inode)
		return 0;
	struct fx_inode_key k = {
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
		.ino = BPF_CORE_READ(inode, i_ino),
	};
	if (!bpf_map_lookup_elem(&mmapped, &k))
		return 0;
	/* A write syscall of this task dirties its own pages: that write is journaled already. */
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_lookup_elem(&inflight, &id))
		return 0;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(&s->ev, FX_OP_DIRTY_MAPPED, inode);
	s->ev.offset = BPF_CORE_READ(folio, index) * 4096;
	/* A large folio turns dirty as a whole: report its size. folio->flags is the first field
	 * (read plainly: aya 0.14 cannot relocate offset 0); the order of a large folio (PG_head
	 * set) is the low byte of _flags_1. */
	__u64 flags = 0;
	bpf_probe_read_kernel(&flags, sizeof(flags), (void *)folio);
	__u64 pages = 1;
	if (flags & (1UL << bpf_core_enum_value(enum pageflags, PG_head)))
		pages = 1UL << (BPF_CORE_READ(folio, _flags_1) & 0xff);
	s->ev.len = pages * 4096;
	fx_submit(s);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
