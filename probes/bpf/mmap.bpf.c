/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Writes through shared mappings bypass every write syscall. mmap(2) of a file under the root
 * with PROT_WRITE and MAP_SHARED is reported (with the path and the range) and the inode is
 * remembered; the writeback_dirty_folio tracepoint then reports when a page of such an inode
 * becomes dirty (a store through the mapping after the page was clean), so the recorder knows
 * to re-read it. msync(MS_SYNC) is a restore point. The same tracepoint is the catch-all for
 * pages dirtied outside every hooked syscall (fx_catchall_path). */
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
	struct fx_args args;
	if (!fx_take_args(&args))
		return 0;
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
	fx_header(s, FX_OP_MMAP_SHARED, inode);
	if (fx_event_path(s, f))
		return 0;
	s->ev.offset = args.pos;
	s->ev.len = args.count;
	struct fx_inode_key k = { .dev = s->ev.dev, .ino = s->ev.ino };
	__u64 one = 1;
	bpf_map_update_elem(&mmapped, &k, &one, BPF_ANY);
	/* After the inode is remembered, every page turning dirty is reported; pages dirty
	 * already (written by write(2) and not yet written back) are not, nor are stores to
	 * them: say so, for the recorder to re-read them until writeback cleans them. */
	__u32 dirty_pages = 4, syncing = 128; /* before 6.18: I_DIRTY_PAGES, I_SYNC */
	if (bpf_core_enum_value_exists(enum inode_state_flags_t, I_DIRTY_PAGES)) {
		dirty_pages = bpf_core_enum_value(enum inode_state_flags_t, I_DIRTY_PAGES);
		syncing = bpf_core_enum_value(enum inode_state_flags_t, I_SYNC);
	}
	__u32 state = BPF_CORE_READ(inode, i_state);
	if (state & dirty_pages)
		s->ev.arg |= FX_MMAP_DIRTY_PAGES;
	if (state & syncing)
		s->ev.arg |= FX_MMAP_WRITEBACK;
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
	fx_header(s, FX_OP_MSYNC, NULL);
	fx_submit(s);
	return 0;
}

/* Inodes whose pages turned dirty outside any hooked syscall (the catch-all below), by
 * verdict: 1 under the root, 2 outside. The recorder clears it when something moves in. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fx_inode_key);
	__type(value, __u64);
} dirty_verdicts SEC(".maps");

#define FX_PF_IO_WORKER 0x00000010

/* A page dirtied by no hooked syscall (a mapping made before the recorder started or whose
 * mmap event was lost, a kernel thread writing a file): find the inode's path by its first
 * dentry alias, within its filesystem, and report it if it is under the root. Returns 0 when
 * the event's path is set. */
static __always_inline int fx_catchall_path(struct fx_scratch *s, struct inode *inode, struct fx_inode_key *k)
{
	__u64 *v = bpf_map_lookup_elem(&dirty_verdicts, k);
	if (v && *v == 2)
		return -1;
	struct hlist_node *alias = BPF_CORE_READ(inode, i_dentry.first);
	if (!alias)
		return -1;
	struct dentry *d = (struct dentry *)((char *)alias - bpf_core_field_offset(struct dentry, d_u));
	__u32 start = 0;
	/* No vfsmount: the walk stays inside the inode's filesystem. */
	int n = fx_path(s, d, NULL, &start);
	if (n == FX_PATH_UNKNOWN) {
		fx_lose(s); /* too deep to tell: a loss of the inode, not cached */
		return -1;
	}
	__u64 verdict = n > 0 ? 1 : 2;
	bpf_map_update_elem(&dirty_verdicts, k, &verdict, BPF_ANY);
	if (n <= 0)
		return -1;
	__u32 len = n & (FX_PATH_MAX - 1);
	bpf_probe_read_kernel(s->body, len, &s->walk[start & (FX_PATH_MAX - 1)]);
	s->ev.path_len = len;
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
	bool mapped = bpf_map_lookup_elem(&mmapped, &k) != NULL;
	/* A write syscall of this task dirties its own pages: that write is journaled already.
	 * Not so for a mapped file: a store through a mapping to a page a write left dirty
	 * reports nothing, so the page must be known (re-read) from this report on. */
	if (!mapped && fx_peek_args())
		return 0;
	if (!mapped) {
		/* io_uring's workers and SQPOLL threads: journaled at completion (async.bpf.c). */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
		if (BPF_CORE_READ(task, flags) & FX_PF_IO_WORKER)
			return 0;
		if (fx_skip_task())
			return 0;
	}
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return 0;
	fx_header(s, FX_OP_DIRTY_MAPPED, inode);
	if (!mapped) {
		if (fx_catchall_path(s, inode, &k))
			return 0;
		s->ev.flags |= FX_F_CATCHALL;
		s->ev.arg = BPF_CORE_READ(inode, i_size);
	}
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
