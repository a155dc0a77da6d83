/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Maps, configuration and helpers shared by every Foxing probe. Included by each .bpf.c;
 * the definitions are __weak so the linked object holds one copy. */
#ifndef FOXING_COMMON_BPF_H
#define FOXING_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "foxing.h"

/* Configuration, set by the loader before load. */
const volatile __u64 root_dev SEC(".rodata") __weak = 0;
const volatile __u64 root_ino SEC(".rodata") __weak = 0;
const volatile __u32 self_tgid SEC(".rodata") __weak = 0;
/* The recorder's descriptor on the watched root (-1: none). */
const volatile __s32 self_root_fd SEC(".rodata") __weak = -1;
const volatile __u32 payload_cap_bytes SEC(".rodata") __weak = FX_PAYLOAD_MAX;
/* Possible CPUs; the scratch map holds two slots per CPU (task and interrupt context). */
const volatile __u32 nr_cpus SEC(".rodata") __weak = 1;

/* The gapless event counter. */
__u64 fx_seq SEC(".bss") __weak = 0;
/* The watched root's superblock (struct super_block *), learned by fx_learn_root_sb; 0 until
 * then. */
__u64 fx_root_sb SEC(".bss") __weak = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} events SEC(".maps") __weak;

/* Per CPU: [0] events that did not fit in the ring buffer, [1] inodes that could not be marked
 * in the dirty map (full: the recorder falls back to a whole-tree base), [2] one past the
 * highest seq dropped (a heal waits until the recorder has drained every seq below it: an
 * event older than a lost one journaled after the heal's read would undo it). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps") __weak;

/* Inodes whose events were dropped: the recorder resyncs them (a targeted heal) and deletes
 * their keys. (0, 0) marks a dropped event without an inode (path operations, syncs): the
 * recorder heals those with a whole-tree base. A plain hash (not LRU) so that a full map is
 * seen (drops[1]) instead of silently evicting marks. key: (dev, ino). */
struct fx_inode_key {
	__u64 dev;
	__u64 ino;
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fx_inode_key);
	__type(value, __u64);
} dirty SEC(".maps") __weak;

/* Chunks of files whose writes were dropped: the recorder re-reads just those chunks (a write
 * spanning more than FX_CHUNKS_PER_DROP chunks marks its whole inode in `dirty` instead).
 * key: (dev, ino, offset >> FX_CHUNK_SHIFT). */
#define FX_CHUNK_SHIFT 20
#define FX_CHUNKS_PER_DROP 16
struct fx_chunk_key {
	__u64 dev;
	__u64 ino;
	__u64 chunk;
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fx_chunk_key);
	__type(value, __u64);
} dirty_chunks SEC(".maps") __weak;

/* Syscall arguments saved at sys_enter, by pid_tgid. */
struct fx_args {
	__u64 fd;
	__u64 buf;
	__u64 count;
	__u64 pos;
	__u64 flags;
	__u64 mode;
	/* Writes: the writers slot of the inode + 1 (0: not counted), the writers in flight on
	 * that slot when this one entered, and this write's entry number on the slot. */
	__u64 wslot;
	__u64 wbefore;
	__u64 wentry;
	/* A rename or mount change counted in fx_ns_busy at enter (see fx_ns_change_begin). */
	__u64 ns_change;
	/* Writes at the file position: f_pos, O_APPEND and (with it) i_size at entry
	 * (fx_pos_enter, fx_pos_range). */
	__u64 pos_enter;
	__u64 size_enter;
	__u64 append;
	/* Path ops: fx_ns_gen (after the op's own rename began), fx_seq and the renames in flight
	 * (other than its own) at enter: see fx_racy_check. */
	__u64 ns_gen;
	__u64 seq_enter;
	__u64 ns_busy;
};
/* Task-local storage (one slot per task, found through the task itself: no hash, no global
 * lock, no capacity limit, freed with the task). `valid` is 0 once the exit took the args. */
struct fx_args_slot {
	struct fx_args a;
	__u64 valid;
};
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fx_args_slot);
} inflight SEC(".maps") __weak;

/* The path cache: the path below the root (or "outside") of recently seen dentries, so that
 * a file written again and again is not walked up to the root on every write. An entry is used
 * only if no rename or mount change anywhere began since it was made and none is in flight
 * (fx_ns_gen, fx_ns_busy), and the dentry still has the parent, name hash, inode and mount it
 * had (a freed dentry's address can be reused). Paths of FX_PATH_CACHE_BYTES or more are
 * walked every time. docs/capture.md, "Path cache". */
#define FX_PATH_CACHE_BYTES 256
#define FX_PATH_CACHE_ENTRIES 16384
struct fx_path_entry {
	__u64 gen;
	__u64 mnt;
	__u64 parent;
	__u64 hash_len;
	__u64 inode;
	__u64 dev;
	__u64 ino;
	__s32 len; /* path length; -1: outside the root (or the root itself) */
	__u32 pad;
	char path[FX_PATH_CACHE_BYTES];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FX_PATH_CACHE_ENTRIES);
	__type(key, __u64);
	__type(value, struct fx_path_entry);
} path_cache SEC(".maps") __weak;

/* Bumped when a rename or mount change begins and when it ends (any task, any path). */
__u64 fx_ns_gen SEC(".bss") __weak = 0;
/* Renames and mount changes in flight: the cache is neither read nor filled meanwhile. */
__u64 fx_ns_busy SEC(".bss") __weak = 0;

/* fx_ns_busy for the recorder: [0] renames and mount changes in flight. A change's event is
 * in the ring before it is counted out, so "none in flight, then a drain that empties the ring"
 * means every change that began before has been handed over (an array lookup is inlined by
 * the verifier: no helper call). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ns_inflight SEC(".maps") __weak;

static __always_inline void fx_ns_inflight_add(__u64 d)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&ns_inflight, &k);
	if (v)
		__sync_fetch_and_add(v, d);
}

static __always_inline void fx_ns_change_begin(void)
{
	__sync_fetch_and_add(&fx_ns_busy, 1);
	__sync_fetch_and_add(&fx_ns_gen, 1);
	fx_ns_inflight_add(1);
}

static __always_inline void fx_ns_change_end(void)
{
	__sync_fetch_and_add(&fx_ns_gen, 1);
	__sync_fetch_and_add(&fx_ns_busy, -1);
	fx_ns_inflight_add(-1);
}

/* The first FX_HEAD_BYTES bytes of a kernel object, copied with one helper call: a helper call
 * costs ~40 ns on this machine class (SRSO "safe RET" mitigation; docs/benchmarks.md), a direct
 * load ~1 ns, and the hot path needs several fields of the same file, inode and dentry. Fields
 * are taken from the copy at their CO-RE offsets (FX_FIELD); a field beyond the window on some
 * other kernel's layout, or a failed copy, falls back to reading that field alone. */
#define FX_HEAD_BYTES 128
struct fx_head {
	char b[FX_HEAD_BYTES];
	__u64 ok;
};

static __always_inline void fx_read_head(struct fx_head *h, const void *obj)
{
	h->ok = obj && bpf_probe_read_kernel(h->b, FX_HEAD_BYTES, obj) == 0;
}

/* p->field from h (a copy of p's head), or read on its own. */
#define FX_FIELD(h, p, field)                                                                      \
	({                                                                                         \
		__u32 __off = bpf_core_field_offset(p->field);                                     \
		__u32 __i = __off & (FX_HEAD_BYTES - 1);                                           \
		__u64 __v;                                                                         \
		if ((h)->ok && __off + sizeof(p->field) <= FX_HEAD_BYTES) {                        \
			if (sizeof(p->field) == 8)                                                 \
				__v = *(__u64 *)&(h)->b[__i];                                      \
			else if (sizeof(p->field) == 4)                                            \
				__v = *(__u32 *)&(h)->b[__i];                                      \
			else                                                                       \
				__v = *(__u16 *)&(h)->b[__i];                                      \
		} else {                                                                           \
			__v = (__u64)BPF_CORE_READ(p, field);                                      \
		}                                                                                  \
		(typeof(p->field + 0))__v;                                                         \
	})

/* Per-CPU scratch: the event being built (header, path, payload), the path walk buffer, a
 * path cache entry being built, and copies of the heads of the event's file, inode, dentry. */
#define FX_PATH_BUF (FX_PATH_MAX + 256)
struct fx_scratch {
	struct fx_event ev;
	char body[FX_PATH_BUF + FX_PAYLOAD_MAX];
	char walk[FX_PATH_BUF];
	struct fx_path_entry pe;
	struct fx_head hf; /* the file */
	struct fx_head hi; /* its inode */
	struct fx_head hd; /* its dentry */
	/* fx_racy_check: check (1) with fx_ns_gen as it was when the names were taken, and the
	 * renames in flight that are the event's own (a rename's). */
	__u64 named_gen;
	__u32 name_check;
	__u32 own_changes;
};
/* Two slots per CPU (a per-CPU array value cannot exceed 32 KiB): one for programs in task
 * context, one for programs that can run in interrupt context (so they never clobber an event
 * being built by the task they interrupted). The loader sets max_entries to 2 * nr_cpus.
 * Programs run with migration disabled. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct fx_scratch);
} scratch SEC(".maps") __weak;

/* Writes in flight per inode, for detecting overlapping concurrent writers. The kernel orders
 * the bytes of writes to one file by the inode lock; the journal orders them by the seq taken at
 * syscall exit. A writer preempted between its copy and its exit tracepoint can take its seq
 * after an overlapping write that landed later. So each data write counts itself in its inode's
 * slot at enter and out after its seq is taken; a write that saw another in flight at any time
 * in between is sent as a re-read range (FX_F_CONCURRENT): the recorder reads the range after
 * the write returned, and the last writer of every byte is re-read after it landed. Slots are
 * a hash of the inode pointer (the file holds the inode alive while the write runs); a shared
 * slot only costs extra re-reads. An array, never deleted from: no insert/delete races. */
#define FX_WRITER_SLOTS 16384
struct fx_writers {
	__u64 inflight;
	__u64 entries;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FX_WRITER_SLOTS);
	__type(key, __u32);
	__type(value, struct fx_writers);
} writers SEC(".maps") __weak;

static __always_inline void fx_writer_enter(struct fx_args *a, struct inode *inode)
{
	__u32 slot = (((__u64)inode >> 6) * 0x9E3779B97F4A7C15ULL) >> 50;
	slot &= FX_WRITER_SLOTS - 1;
	struct fx_writers *w = bpf_map_lookup_elem(&writers, &slot);
	if (!w)
		return;
	a->wbefore = __sync_fetch_and_add(&w->inflight, 1);
	a->wentry = __sync_fetch_and_add(&w->entries, 1);
	a->wslot = slot + 1;
}

/* After the write's seq was taken: did another write to the slot run at any time since this
 * one entered (in flight then, or entered since)? */
static __always_inline bool fx_writer_overlapped(const struct fx_args *a)
{
	if (!a->wslot)
		return false;
	__u32 slot = (a->wslot - 1) & (FX_WRITER_SLOTS - 1);
	struct fx_writers *w = bpf_map_lookup_elem(&writers, &slot);
	if (!w)
		return true;
	return a->wbefore != 0 || __sync_fetch_and_add(&w->entries, 0) != a->wentry + 1;
}

static __always_inline void fx_writer_exit(const struct fx_args *a)
{
	if (!a->wslot)
		return;
	__u32 slot = (a->wslot - 1) & (FX_WRITER_SLOTS - 1);
	struct fx_writers *w = bpf_map_lookup_elem(&writers, &slot);
	if (w)
		__sync_fetch_and_add(&w->inflight, -1);
}

static __always_inline bool fx_skip_task(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return tgid == self_tgid;
}

/* Saves the syscall's arguments in this task's slot; false if no slot could be allocated. */
static __always_inline bool fx_save_args(const struct fx_args *a)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct fx_args_slot *sl =
		bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!sl)
		return false;
	sl->a = *a;
	sl->valid = 1;
	return true;
}

/* The arguments this task saved at sys_enter and not yet taken, or NULL. */
static __always_inline struct fx_args *fx_peek_args(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct fx_args_slot *sl = bpf_task_storage_get(&inflight, task, 0, 0);
	if (!sl || !sl->valid)
		return NULL;
	return &sl->a;
}

/* Marks this task's saved arguments taken. */
static __always_inline void fx_drop_args(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct fx_args_slot *sl = bpf_task_storage_get(&inflight, task, 0, 0);
	if (sl)
		sl->valid = 0;
}

/* Takes (copies and marks taken) the arguments this task saved at sys_enter; false if none. */
static __always_inline bool fx_take_args(struct fx_args *out)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct fx_args_slot *sl = bpf_task_storage_get(&inflight, task, 0, 0);
	if (!sl || !sl->valid)
		return false;
	*out = sl->a;
	sl->valid = 0;
	return true;
}

/* Saves a data write's arguments and counts it in its inode's writers slot (only when the
 * arguments were saved: the exit that finds them is what counts it out). */
static __always_inline void fx_save_write_args(struct fx_args *a, struct file *f)
{
	if (f)
		fx_writer_enter(a, BPF_CORE_READ(f, f_inode));
	if (!fx_save_args(a))
		fx_writer_exit(a);
}

/* The descriptor's file. The task pointer is BTF-typed, so task->files->fdt are direct loads
 * (no helper call each); only the slot fds[fd] (a variable index) needs a probe read. */
static __always_inline struct file *fx_fd_file(__u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	if (!files)
		return NULL;
	struct fdtable *fdt = files->fdt;
	if (!fdt)
		return NULL;
	/* max_fds is the first field (aya 0.14 cannot relocate offset-0 accesses): a plain load. */
	unsigned int max = *(unsigned int *)fdt;
	struct file **fds = fdt->fd;
	struct file *f = NULL;
	fd = (__u32)fd; /* an (unsigned) int in every syscall: the register's high half is noise */
	if (fd >= max)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* The stable prefix of the kernel's private struct mount (unchanged since Linux 3.3):
 * hlist_node mnt_hash; struct mount *mnt_parent; struct dentry *mnt_mountpoint; struct vfsmount mnt.
 * aya 0.14 fails CO-RE relocations into struct mount (call 0xbad2310 at load), so these are read
 * at fixed offsets; probes/tests/layout.rs checks them against this kernel's BTF. */
#define FX_MOUNT_PARENT_OFF 16
#define FX_MOUNT_MOUNTPOINT_OFF 24
#define FX_MOUNT_MNT_OFF 32

struct fx_walk {
	struct dentry *d;
	struct vfsmount *vmnt;
	struct mount *mnt;
	__u32 off;
	__u32 found;
	__u32 absolute; /* walk to the namespace root instead of stopping at the watched root */
	__u32 ended;    /* the walk reached the watched root or a namespace/filesystem root */
	__u32 toolong;  /* the name outgrew PATH_MAX: the walk goes on without writing it */
	char *buf;
};

/* The walk names up to PATH_MAX bytes, then goes on up to this many levels without naming, so
 * that a deep path outside the root is still known to be outside (stress-ng's dirdeep makes
 * 2,000 levels). A walk that ends sooner costs nothing for the larger bound. */
#define FX_WALK_LEVELS_MAX 65536

/* fx_path's verdict for a path under the watched root that cannot be named (longer than
 * PATH_MAX), or whose place is unknown (deeper than FX_WALK_LEVELS_MAX). */
#define FX_PATH_UNKNOWN (-2)

/* One step up the tree: prepend the name of ctx->d, or stop at the watched root. */
static long fx_walk_step(__u64 i, void *arg)
{
	struct fx_walk *w = arg;
	struct dentry *d = w->d;
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	__u64 ino = BPF_CORE_READ(inode, i_ino);
	__u64 dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (ino == root_ino && dev == root_dev) {
		w->found = 1;
		if (!w->absolute) {
			w->ended = 1;
			return 1;
		}
	}
	/* mnt_root is the first field of struct vfsmount (since 2.6); aya 0.14 fails to relocate
	 * CO-RE accesses to offset-0 fields (the load shows call 0xbad2310), so read it plainly. */
	struct dentry *mnt_root = NULL;
	bpf_probe_read_kernel(&mnt_root, sizeof(mnt_root), (void *)w->vmnt);
	struct dentry *up = BPF_CORE_READ(d, d_parent);
	/* The root of a bind mount of a directory of the watched root's filesystem (a container's
	 * volume): the entry may lie under the watched root whatever mount it was reached through,
	 * so the walk goes on up that filesystem's own tree. Only an absolute path (the caller's
	 * view) crosses to the mountpoint there. */
	if (d == mnt_root && (w->absolute || up == d || dev != root_dev)) {
		struct mount *parent = NULL;
		struct dentry *mp = NULL;
		bpf_probe_read_kernel(&parent, sizeof(parent), (char *)w->mnt + FX_MOUNT_PARENT_OFF);
		if (!parent || parent == w->mnt) {
			w->ended = 1;
			return 1; /* the namespace root: not under the watched root */
		}
		bpf_probe_read_kernel(&mp, sizeof(mp), (char *)w->mnt + FX_MOUNT_MOUNTPOINT_OFF);
		w->d = mp;
		w->mnt = parent;
		w->vmnt = (struct vfsmount *)((char *)parent + FX_MOUNT_MNT_OFF);
		return 0;
	}
	if (up == d) {
		w->ended = 1;
		return 1;
	}
	__u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	len &= 255;
	if (w->toolong || w->off < len + 1) {
		w->toolong = 1; /* longer than PATH_MAX: keep walking to learn if it is under */
		w->d = up;
		return 0;
	}
	w->off -= len;
	bpf_probe_read_kernel(&w->buf[w->off & (FX_PATH_MAX - 1)], len, name);
	w->off -= 1;
	w->buf[w->off & (FX_PATH_MAX - 1)] = '/';
	w->d = up;
	return 0;
}

/* Resolves the path of (dentry, vfsmount) below the watched root into s->walk.
 * Returns the path length (0 for the root itself) and sets *start, -1 if outside, or
 * FX_PATH_UNKNOWN (under the root but longer than PATH_MAX, or deeper than the walk goes). */
static __always_inline int fx_path(struct fx_scratch *s, struct dentry *d, struct vfsmount *vmnt, __u32 *start)
{
	struct fx_walk w = {
		.d = d,
		.vmnt = vmnt,
		.mnt = (struct mount *)((char *)vmnt - FX_MOUNT_MNT_OFF),
		.off = FX_PATH_MAX - 1,
		.found = 0,
		.absolute = 0,
		.ended = 0,
		.toolong = 0,
		.buf = s->walk,
	};
	bpf_loop(FX_WALK_LEVELS_MAX, fx_walk_step, &w, 0);
	if (!w.ended || (w.found && w.toolong))
		return FX_PATH_UNKNOWN;
	if (!w.found)
		return -1;
	if (w.off >= FX_PATH_MAX - 1) {
		*start = 0;
		return 0;
	}
	/* Skip the leading '/'. */
	*start = (w.off + 1) & (FX_PATH_MAX - 1);
	return (FX_PATH_MAX - 1) - (w.off + 1);
}

/* The absolute path of (dentry, vfsmount) in the caller's mount namespace, written to
 * dst[0..]; returns its length ("/" for the root), or FX_PATH_UNKNOWN when it cannot be named
 * (longer than PATH_MAX, deeper than the walk goes). *under is set when the watched root is the
 * entry or one of its ancestors (always, when the walk gave up before its end). */
static __always_inline int fx_abs_path(struct fx_scratch *s, struct dentry *d, struct vfsmount *vmnt, char *dst, __u32 *under)
{
	struct fx_walk w = {
		.d = d,
		.vmnt = vmnt,
		.mnt = (struct mount *)((char *)vmnt - FX_MOUNT_MNT_OFF),
		.off = FX_PATH_MAX - 1,
		.found = 0,
		.absolute = 1,
		.ended = 0,
		.toolong = 0,
		.buf = s->walk,
	};
	bpf_loop(FX_WALK_LEVELS_MAX, fx_walk_step, &w, 0);
	*under = w.found || !w.ended;
	if (!w.ended || w.toolong)
		return FX_PATH_UNKNOWN;
	if (w.off >= FX_PATH_MAX - 1) {
		dst[0] = '/';
		return 1;
	}
	__u32 start = w.off & (FX_PATH_MAX - 1);
	__u32 len = ((FX_PATH_MAX - 1) - start) & (FX_PATH_MAX - 1);
	bpf_probe_read_kernel(dst, len, &s->walk[start]);
	return len;
}

/* A path op's directory (dentry, vfsmount) written to dst: FX_DIR_ROOTED and its path below
 * the watched root when it lies under it, through whatever mount; else its absolute path in
 * the caller's mount namespace (fx_abs_path). Returns the length, or FX_PATH_UNKNOWN. */
static __always_inline int fx_dir_path(struct fx_scratch *s, struct dentry *d, struct vfsmount *m, char *dst, __u32 *under)
{
	__u32 start = 0;
	int r = fx_path(s, d, m, &start);
	if (r == FX_PATH_UNKNOWN || r + 2 >= FX_PATH_MAX) {
		*under = 1;
		return FX_PATH_UNKNOWN;
	}
	if (r < 0)
		return fx_abs_path(s, d, m, dst, under);
	*under = 1;
	dst[0] = FX_DIR_ROOTED;
	if (r == 0)
		return 1;
	dst[1] = '/';
	bpf_probe_read_kernel(&dst[2], r & (FX_PATH_MAX - 1), &s->walk[start & (FX_PATH_MAX - 1)]);
	return r + 2;
}

static __always_inline struct fx_scratch *fx_scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&scratch, &cpu);
}

/* The slot for programs that may run in interrupt context. */
static __always_inline struct fx_scratch *fx_scratch_irq(void)
{
	__u32 slot = bpf_get_smp_processor_id() + nr_cpus;
	return bpf_map_lookup_elem(&scratch, &slot);
}

/* Fills the common header fields. Writer attribution comes from direct loads through the
 * BTF-typed current task (no helper calls): the same values bpf_get_current_pid_tgid,
 * _uid_gid, _cgroup_id and _comm return. */
static __always_inline void fx_header(struct fx_scratch *s, __u32 op, struct inode *inode)
{
	struct fx_event *ev = &s->ev;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
	const struct cred *c = t->cred;
	ev->time_ns = bpf_ktime_get_boot_ns();
	ev->pid = t->pid;
	ev->tgid = t->tgid;
	ev->uid = c->uid.val;
	ev->gid = c->gid.val;
	ev->cgroup_id = t->cgroups->dfl_cgrp->kn->id;
	*(__u64 *)&ev->comm[0] = *(__u64 *)&t->comm[0];
	*(__u64 *)&ev->comm[8] = *(__u64 *)&t->comm[8];
	ev->op = op;
	ev->flags = 0;
	ev->dev = 0;
	ev->ino = 0;
	ev->offset = 0;
	ev->len = 0;
	ev->arg = 0;
	ev->data_len = 0;
	ev->path_len = 0;
	ev->mode = 0;
	/* A path op has no inode: its owner fields are the caller's fsuid and fsgid, the
	 * owner a creation gets (unless its directory is setgid; the applier applies that). */
	ev->owner_uid = c->fsuid.val;
	ev->owner_gid = c->fsgid.val;
	ev->umask = 0;
	ev->seq_named = 0;
	s->name_check = 0;
	s->own_changes = 0;
	if (!inode)
		return;
	struct fx_head *hi = &s->hi;
	fx_read_head(hi, inode);
	struct super_block *sb = FX_FIELD(hi, inode, i_sb);
	ev->dev = BPF_CORE_READ(sb, s_dev);
	ev->ino = FX_FIELD(hi, inode, i_ino);
	/* The inode's mode: its type tells the recorder a write into a fifo or a device (no file
	 * content) from one into a regular file; journaled for creations, fchmod and fchown. */
	__u16 m = 0;
	/* i_mode is the first field of struct inode (aya 0.14 cannot relocate offset 0). */
	if (hi->ok)
		m = *(__u16 *)&hi->b[0];
	else
		bpf_probe_read_kernel(&m, sizeof(m), (void *)inode);
	ev->mode = m;
	/* A file removed while open (or an O_TMPFILE not linked yet) keeps its old dentry name
	 * ("#ino" for an O_TMPFILE): its changes must not reach whatever has that name now. */
	__u32 nlink = FX_FIELD(hi, inode, i_nlink);
	if (nlink == 0)
		ev->flags |= FX_F_UNLINKED;
	else if (nlink > 1 && (m & 0170000) != 0040000)
		ev->flags |= FX_F_LINKED;
	/* The owner, for creations, fchmod and fchown only. */
	if (op != FX_OP_WRITE && op != FX_OP_DIRTY_MAPPED) {
		ev->owner_uid = FX_FIELD(hi, inode, i_uid.val);
		ev->owner_gid = FX_FIELD(hi, inode, i_gid.val);
	}
}

/* A dropped write marks only the chunks it touched, when it touched few. */
static long fx_mark_chunk(__u64 i, void *arg)
{
	struct fx_chunk_key *k = arg;
	__u64 one = 1;
	/* Under overload the same chunks are marked again and again: a lookup is much cheaper
	 * than an update (bucket lock, element swap). */
	if (!bpf_map_lookup_elem(&dirty_chunks, k) &&
	    bpf_map_update_elem(&dirty_chunks, k, &one, BPF_ANY))
		return 1;
	k->chunk++;
	return 0;
}

static __always_inline void fx_count_drop(struct fx_event *ev)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&drops, &zero);
	if (d)
		__sync_fetch_and_add(d, 1);
	__u32 two = 2;
	__u64 *end = bpf_map_lookup_elem(&drops, &two);
	if (end && *end < ev->seq + 1)
		*end = ev->seq + 1;
	if ((ev->op == FX_OP_WRITE || ev->op == FX_OP_DIRTY_MAPPED) && ev->ino && ev->len) {
		__u64 first = ev->offset >> FX_CHUNK_SHIFT;
		__u64 last = (ev->offset + ev->len - 1) >> FX_CHUNK_SHIFT;
		if (last >= first && last - first < FX_CHUNKS_PER_DROP) {
			struct fx_chunk_key ck = { .dev = ev->dev, .ino = ev->ino, .chunk = first };
			__u32 n = last - first + 1;
			if (bpf_loop(n, fx_mark_chunk, &ck, 0) == n)
				return;
			/* The chunk map is full: fall back to marking the whole inode. */
		}
	}
	struct fx_inode_key k = { .dev = ev->dev, .ino = ev->ino };
	__u64 one = 1;
	if (!bpf_map_lookup_elem(&dirty, &k) && bpf_map_update_elem(&dirty, &k, &one, BPF_ANY)) {
		__u32 full = 1;
		__u64 *o = bpf_map_lookup_elem(&drops, &full);
		if (o)
			__sync_fetch_and_add(o, 1);
	}
}

/* An event that cannot be described: it takes a seq and counts as a drop, so the recorder sees
 * a loss (a gap) and resyncs the inode marked dirty (the whole tree when the event has none). */
static __always_inline void fx_lose(struct fx_scratch *s)
{
	s->ev.seq = __sync_fetch_and_add(&fx_seq, 1);
	fx_count_drop(&s->ev);
}

/* Resolves the path of the file whose dentry, mount and inode are given; copies it after the
 * header; returns 0 if the file is under the watched root (and not the root itself). Paths come
 * from the path cache when it holds a valid entry for the dentry (docs/capture.md, "Path
 * cache"), else from a dentry walk. */
static __always_inline int fx_event_path_of(struct fx_scratch *s, struct dentry *d, struct vfsmount *m,
					    struct inode *fi)
{
	__u32 start = 0;
	/* busy before gen: a change that begins after the busy read bumps gen before ours. */
	__u64 busy = *(volatile __u64 *)&fx_ns_busy;
	__u64 gen = *(volatile __u64 *)&fx_ns_gen;
	s->named_gen = gen;
	s->name_check = 1;
	s->ev.seq_named = *(volatile __u64 *)&fx_seq;
	struct fx_head *hd = &s->hd;
	fx_read_head(hd, d);
	struct fx_path_entry *pe = &s->pe;
	pe->gen = gen;
	pe->mnt = (__u64)m;
	pe->parent = (__u64)FX_FIELD(hd, d, d_parent);
	pe->hash_len = FX_FIELD(hd, d, d_name.hash_len);
	/* d_unlinked(): unhashed and not a root. Its name (and a cached path) is stale. */
	if (!FX_FIELD(hd, d, d_hash.pprev) && pe->parent != (__u64)d)
		s->ev.flags |= FX_F_NAME_GONE;
	pe->inode = (__u64)fi; /* the file's: the dentry's, but for stacked filesystems */
	pe->dev = s->ev.dev;
	pe->ino = s->ev.ino;
	__u64 key = (__u64)d;
	struct fx_path_entry *e = busy ? NULL : bpf_map_lookup_elem(&path_cache, &key);
	if (e && e->gen == gen && e->mnt == pe->mnt && e->parent == pe->parent &&
	    e->hash_len == pe->hash_len && e->inode == pe->inode && e->dev == pe->dev &&
	    e->ino == pe->ino) {
		__s32 cl = e->len;
		if (cl <= 0 || cl >= FX_PATH_CACHE_BYTES)
			return -1;
		__u32 len = cl & (FX_PATH_CACHE_BYTES - 1);
		bpf_probe_read_kernel(s->body, len, e->path);
		s->ev.path_len = len;
		return 0;
	}
	int n = fx_path(s, d, m, &start);
	if (n == FX_PATH_UNKNOWN) {
		/* Too deep to tell: a loss of this inode (a seq, a drop, the inode marked dirty),
		 * which the recorder heals by a resync (docs/capture.md, "Limits"). Not cached. */
		fx_lose(s);
		return -1;
	}
	if (n >= FX_PATH_CACHE_BYTES && !busy) {
		/* Too long to cache: walked every time. */
	} else if (!busy) {
		pe->len = n <= 0 ? -1 : n;
		if (n > 0)
			bpf_probe_read_kernel(pe->path, n & (FX_PATH_CACHE_BYTES - 1),
					      &s->walk[start & (FX_PATH_MAX - 1)]);
		bpf_map_update_elem(&path_cache, &key, pe, BPF_ANY);
	}
	if (n <= 0)
		return -1;
	__u32 len = n & (FX_PATH_MAX - 1);
	bpf_probe_read_kernel(s->body, len, &s->walk[start & (FX_PATH_MAX - 1)]);
	s->ev.path_len = len;
	return 0;
}

/* A file's path named while a rename or mount change was in flight anywhere: the rename may
 * have moved the file already (its path is the new one) and still take its seq after this
 * event's, so this event would be journaled, under the new name, before the rename that made
 * it (log rotation by rename while the program writes). fx_racy_check covers the renames that
 * begin later. The recorder then re-states what the event named once the renames that ran
 * meanwhile are journaled. */
static __always_inline void fx_mark_racy_path(struct fx_scratch *s)
{
	if (*(volatile __u64 *)&fx_ns_busy)
		s->ev.flags |= FX_F_PATH_RACY;
}

/* A path op at syscall enter (a rename after its own fx_ns_change_begin): the renames in
 * flight besides its own, fx_ns_gen and fx_seq, for fx_names_since_enter. */
static __always_inline void fx_names_enter(struct fx_args *a)
{
	a->ns_busy = *(volatile __u64 *)&fx_ns_busy - (a->ns_change ? 1 : 0);
	a->ns_gen = *(volatile __u64 *)&fx_ns_gen;
	a->seq_enter = *(volatile __u64 *)&fx_seq;
}

/* A path op's event (after fx_header): the kernel looked its names up since the syscall
 * entered, so that is the window fx_racy_check covers. */
static __always_inline void fx_names_since_enter(struct fx_scratch *s, const struct fx_args *a)
{
	s->named_gen = a->ns_gen;
	s->name_check = 1;
	s->own_changes = a->ns_change ? 1 : 0;
	s->ev.seq_named = a->seq_enter;
	if (a->ns_busy)
		s->ev.flags |= FX_F_PATH_RACY;
}

/* Called right after the event's seq is taken: a rename or mount change still in flight now
 * (other than the event's own), or one that began or ended since the names were taken
 * (fx_ns_gen moved), may be journaled in the other order than it happened relative to this
 * event: a rename that began after a file's path was named (the old name) and took its seq
 * first, or one in flight now. Flagged FX_F_PATH_RACY. The seq's atomic add orders the reads
 * after it. */
static __always_inline __u32 fx_racy_check(const struct fx_scratch *s)
{
	if (!s->name_check)
		return 0;
	if (*(volatile __u64 *)&fx_ns_busy > s->own_changes ||
	    *(volatile __u64 *)&fx_ns_gen != s->named_gen)
		return FX_F_PATH_RACY;
	return 0;
}

static __always_inline int fx_event_path(struct fx_scratch *s, struct file *f)
{
	struct fx_head *hf = &s->hf;
	fx_read_head(hf, f);
	int r = fx_event_path_of(s, FX_FIELD(hf, f, f_path.dentry), FX_FIELD(hf, f, f_path.mnt),
				 FX_FIELD(hf, f, f_inode));
	fx_mark_racy_path(s);
	return r;
}

/* Starts the event of an fd-based op: the scratch with header and path filled (and the file's
 * head in s->hf), and the file in *fp. NULL when the descriptor is gone, no scratch slot is
 * free, or the file is outside the root. */
static __always_inline struct fx_scratch *fx_file_event(__u64 fd, __u32 op, struct file **fp)
{
	struct file *f = fx_fd_file(fd);
	if (!f)
		return NULL;
	struct fx_scratch *s = fx_scratch();
	if (!s)
		return NULL;
	struct fx_head *hf = &s->hf;
	fx_read_head(hf, f);
	struct inode *inode = FX_FIELD(hf, f, f_inode);
	fx_header(s, op, inode);
	if (fx_event_path_of(s, FX_FIELD(hf, f, f_path.dentry), FX_FIELD(hf, f, f_path.mnt), inode))
		return NULL;
	fx_mark_racy_path(s);
	*fp = f;
	return s;
}

static __always_inline void fx_output(struct fx_scratch *s);

/* Sends header + path + data_len bytes of payload (already in body after the path). */
static __always_inline void fx_submit(struct fx_scratch *s)
{
	s->ev.seq = __sync_fetch_and_add(&fx_seq, 1);
	s->ev.flags |= fx_racy_check(s);
	fx_output(s);
}

/* fx_submit for a data write counted by fx_save_write_args: the seq is taken first, then the
 * overlap check, so a write entering after the check is ordered after this one's seq. */
static __always_inline void fx_submit_write(struct fx_scratch *s, const struct fx_args *a)
{
	s->ev.seq = __sync_fetch_and_add(&fx_seq, 1);
	s->ev.flags |= fx_racy_check(s);
	if (fx_writer_overlapped(a)) {
		s->ev.flags |= FX_F_CONCURRENT | FX_F_INEXACT;
		s->ev.data_len = 0;
	}
	fx_output(s);
}

static __always_inline void fx_output(struct fx_scratch *s)
{
	__u64 size = sizeof(struct fx_event) + (s->ev.path_len & (FX_PATH_MAX * 2 - 1)) +
		     (s->ev.data_len & (FX_PAYLOAD_MAX * 2 - 1));
	if (size > sizeof(struct fx_scratch) - FX_PATH_BUF) {
		fx_count_drop(&s->ev); /* the seq is taken: a loss, never a silent one */
		return;
	}
	if (bpf_ringbuf_output(&events, &s->ev, size, 0))
		fx_count_drop(&s->ev);
}

/* Writes at the file position (write, writev, pwritev2 at -1, sendfile, copy_file_range and
 * splice without an offset) learn their offset from f_pos after the call, minus the bytes
 * written. f_pos belongs to the open file, which forked children and threads share: another
 * write or an lseek through it between this call's write and its exit moves f_pos, and the
 * offset would be wrong (the bytes journaled at the wrong place, silently: found with
 * `(a & b) >> log` and stress-ng iomix). So f_pos (and O_APPEND, and then i_size) is saved at
 * entry, and fx_pos_range decides at exit. */
#define FX_O_APPEND 02000

static __always_inline void fx_pos_enter(struct fx_args *a, struct file *f)
{
	if (!f)
		return;
	struct fx_head hf;
	fx_read_head(&hf, f);
	a->pos_enter = FX_FIELD(&hf, f, f_pos);
	a->append = FX_FIELD(&hf, f, f_flags) & FX_O_APPEND;
	if (a->append) {
		struct inode *inode = FX_FIELD(&hf, f, f_inode);
		a->size_enter = BPF_CORE_READ(inode, i_size);
	}
}

/* Where a write at the file position put its `len` bytes, f_pos being `pos_exit` now: sets
 * *offset and *rlen; returns 0 when exact, else the flags to send (a re-read range, or the
 * position unknown).
 * - f_pos moved by exactly len from entry: the write was at the entry position.
 * - O_APPEND: it wrote at the end; unless another write to the inode overlapped it in time
 *   (only a write through this same open file can move f_pos past it), f_pos - len is where;
 *   if one did, its bytes are among those appended since entry: re-read them.
 * - Else another user of the open file moved f_pos (lseek, or a write): unknown. */
static __always_inline __u32 fx_pos_range(const struct fx_args *a, struct file *f, __u64 pos_exit,
					  __u64 len, __u64 *offset, __u64 *rlen)
{
	*offset = pos_exit - len;
	*rlen = len;
	if (pos_exit == a->pos_enter + len)
		return 0;
	if (a->append) {
		if (!fx_writer_overlapped(a))
			return 0;
		__u64 size = BPF_CORE_READ(f, f_inode, i_size);
		*offset = a->size_enter;
		*rlen = size > a->size_enter + len ? size - a->size_enter : len;
		return FX_F_INEXACT;
	}
	*offset = 0;
	*rlen = 0;
	return FX_F_INEXACT | FX_F_POS_UNKNOWN;
}

/* pwrite and pwritev on an O_APPEND file, and pwritev2 with RWF_APPEND, write at the end of
 * the file whatever offset they name (pwrite(2), BUGS): after the call, the end is the file's
 * size, unless another write to the inode overlapped this one (then: unknown). */
#define FX_RWF_APPEND 0x10

static __always_inline __u32 fx_append_range(const struct fx_args *a, struct file *f, __u64 len,
					     __u64 *offset, __u64 *rlen)
{
	__u64 size = BPF_CORE_READ(f, f_inode, i_size);
	*offset = size >= len ? size - len : 0;
	*rlen = len;
	if (!fx_writer_overlapped(a))
		return 0;
	*offset = 0;
	*rlen = 0;
	return FX_F_INEXACT | FX_F_POS_UNKNOWN;
}

/* A successful fallocate(2), or a preallocation ioctl that the kernel turns into one
 * (FS_IOC_RESVSP, _UNRESVSP, _ZERO_RANGE): arg = mode, offset, len. */
/* A failed fallocate is sent too (FX_F_FAILED): ext4 and xfs update mtime before they validate
 * a collapse or insert range, and ext4 keeps the size a preallocation reached before ENOSPC.
 * EBADF and the like name no file: fx_file_event finds none. */
static __always_inline void fx_fallocate_event(const struct fx_args *a, long ret)
{
	struct file *f;
	struct fx_scratch *s = fx_file_event(a->fd, FX_OP_FALLOCATE, &f);
	if (!s)
		return;
	if (ret != 0)
		s->ev.flags |= FX_F_FAILED;
	s->ev.arg = a->flags;
	s->ev.offset = a->pos;
	s->ev.len = a->count;
	fx_submit_write(s, a);
}

/* AT_FDCWD, and a marker for "no directory" (symlink targets). */
#define FX_AT_FDCWD ((__u64)(__s64)-100)
#define FX_NO_DIR ((__u64)(__s64)-1000)

struct fx_slash_scan {
	char *buf;
	__u32 start;
	__u32 len;
	__u32 slash;
};

static long fx_slash_step(__u64 i, void *arg)
{
	struct fx_slash_scan *c = arg;
	if (i >= c->len)
		return 1;
	if (c->buf[(c->start + i) & (FX_PATH_MAX * 2 - 1)] == '/') {
		c->slash = 1;
		return 1;
	}
	return 0;
}

/* "/proc/self/fd/N[/rest]" (also thread-self and the caller's own pid): the magic link names
 * descriptor N's file, whatever path it was opened by. glibc before 2.39 implements
 * fchmodat(AT_SYMLINK_NOFOLLOW) as open(O_PATH) + chmod("/proc/self/fd/N") (GNU tar sets every
 * directory's mode that way), and libselinux and others do the same for xattrs. */
#define FX_PROCFD_BUF 64

static __always_inline __u32 fx_digits(const char *b, __u32 k, __u64 *v)
{
	__u64 x = 0;
	__u32 n = 0;
#pragma unroll
	for (int i = 0; i < 10; i++) {
		char c = b[(k + i) & (FX_PROCFD_BUF - 1)];
		if (c < '0' || c > '9')
			break;
		x = x * 10 + (c - '0');
		n++;
	}
	*v = x;
	return n;
}

/* Returns N and sets *rest to the offset of what follows it (after its '/', or at the NUL),
 * or -1 when the name is not such a path. */
static __always_inline long fx_proc_fd(__u64 name, bool kname, __u32 *rest)
{
	char b[FX_PROCFD_BUF] = {};
	long l = kname ? bpf_probe_read_kernel_str(b, sizeof(b), (void *)name)
		       : bpf_probe_read_user_str(b, sizeof(b), (void *)name);
	if (l < 16 || b[0] != '/' || b[1] != 'p' || b[2] != 'r' || b[3] != 'o' || b[4] != 'c' || b[5] != '/')
		return -1;
	__u32 k;
	__u64 v = 0;
	if (b[6] == 's' && b[7] == 'e' && b[8] == 'l' && b[9] == 'f' && b[10] == '/') {
		k = 11;
	} else if (b[6] == 't' && b[7] == 'h' && b[8] == 'r' && b[9] == 'e' && b[10] == 'a' && b[11] == 'd' &&
		   b[12] == '-' && b[13] == 's' && b[14] == 'e' && b[15] == 'l' && b[16] == 'f' && b[17] == '/') {
		k = 18;
	} else {
		__u32 n = fx_digits(b, 6, &v);
		if (n == 0 || v != (bpf_get_current_pid_tgid() >> 32) || b[(6 + n) & (FX_PROCFD_BUF - 1)] != '/')
			return -1;
		k = 6 + n + 1;
	}
	if (b[k & (FX_PROCFD_BUF - 1)] != 'f' || b[(k + 1) & (FX_PROCFD_BUF - 1)] != 'd' ||
	    b[(k + 2) & (FX_PROCFD_BUF - 1)] != '/')
		return -1;
	k += 3;
	__u32 n = fx_digits(b, k, &v);
	if (n == 0)
		return -1;
	k += n;
	char end = b[k & (FX_PROCFD_BUF - 1)];
	if (end == '/')
		k++;
	else if (end != 0)
		return -1;
	*rest = k;
	return (long)v;
}

/* Learns the watched root's superblock from the recorder's descriptor on the root. Called from
 * the recorder's own fsync calls (skipped otherwise): the loader fdatasyncs the root once right
 * after attaching. */
static __always_inline void fx_learn_root_sb(void)
{
	if (fx_root_sb || self_root_fd < 0)
		return;
	struct file *f = fx_fd_file((__u64)self_root_fd);
	if (!f)
		return;
	struct super_block *sb = BPF_CORE_READ(f, f_inode, i_sb);
	if (BPF_CORE_READ(sb, s_dev) == root_dev)
		fx_root_sb = (__u64)sb;
}

/* More fields of struct mount (6.18; checked against the kernel's BTF in probes/tests/layout.rs):
 * the superblock's mounts are a list through mnt_next_for_sb, from super_block.s_mounts. */
#define FX_MOUNT_NEXT_FOR_SB_OFF 128
#define FX_MOUNT_NS_OFF 232
/* Mounts of the root's filesystem looked at; past it, any namespace may reach the root. */
#define FX_SB_MOUNTS_MAX 64

/* Whether an absolute name looked up in mount namespace ns can reach the watched root: only
 * through a mount of the root's filesystem in ns whose root is a directory (a file bind mount,
 * such as a container's /etc/hosts, leads nowhere else). True while the root's superblock is
 * not yet known or when it has more mounts than we look at. Keeps the absolute names of other
 * containers (and of systemd services with private mounts) out of the ring and the recorder. */
struct fx_reach_walk {
	char *m;       /* the next struct mount of the root's filesystem, NULL at the end */
	void *ns;      /* the caller's struct mnt_namespace */
	__u32 reaches; /* 1: a directory mount in ns; 2: the list ended without one */
};

static long fx_reach_step(__u64 i, void *ctx)
{
	struct fx_reach_walk *w = ctx;
	char *m = w->m;
	if (!m) {
		w->reaches = 2;
		return 1;
	}
	void *mns = NULL;
	bpf_probe_read_kernel(&mns, sizeof(mns), m + FX_MOUNT_NS_OFF);
	if (mns == w->ns) {
		struct dentry *r = NULL;
		/* struct vfsmount's first field is mnt_root. */
		bpf_probe_read_kernel(&r, sizeof(r), m + FX_MOUNT_MNT_OFF);
		struct inode *ri = BPF_CORE_READ(r, d_inode);
		__u16 mode = 0;
		bpf_probe_read_kernel(&mode, sizeof(mode), (void *)ri); /* i_mode: offset 0 */
		if ((mode & 0170000) == 0040000) {
			w->reaches = 1;
			return 1;
		}
	}
	char *next = NULL;
	bpf_probe_read_kernel(&next, sizeof(next), m + FX_MOUNT_NEXT_FOR_SB_OFF);
	w->m = next;
	return 0;
}

/* Whether an absolute name looked up in mount namespace ns can reach the watched root: only
 * through a mount of the root's filesystem in ns whose root is a directory (a file bind mount,
 * such as a container's /etc/hosts, leads nowhere else). True while the root's superblock is
 * not yet known or when it has more mounts than we look at. Keeps the absolute names of other
 * containers out of the ring and the recorder. (A bpf_loop: verified once, not per mount.) */
static __always_inline bool fx_ns_reaches_root(struct mnt_namespace *ns)
{
	struct super_block *sb = (struct super_block *)fx_root_sb;
	if (!sb)
		return true;
	struct fx_reach_walk w = { .m = (char *)BPF_CORE_READ(sb, s_mounts), .ns = ns, .reaches = 0 };
	bpf_loop(FX_SB_MOUNTS_MAX, fx_reach_step, &w, 0);
	return w.reaches != 2;
}

/* Writes "dir\0name" at dst (dst has room for 2 * FX_PATH_MAX): dir is dirfd's directory as
 * fx_dir_path gives it (FX_DIR_ROOTED + its path below the watched root, or its absolute path),
 * "/" when name is absolute, "" for FX_NO_DIR; returns the bytes written (without a
 * final NUL), or -1. The name is in user memory, or in kernel memory when `kname` (io_uring's
 * copies). *maybe_under is cleared only when the pair certainly names nothing under the watched
 * root: the directory is outside it and the name is one component (no '/' to cross a symlink
 * or climb); the caller then drops the event (system-wide path noise never fills the ring). */
static __always_inline int fx_dir_name_from(struct fx_scratch *s, __u64 dirfd, __u64 name, bool kname, char *dst, __u32 *maybe_under)
{
	__u32 under = 0;
	bool abs_out = false; /* an absolute name in a namespace with no way to the root */
	char c = 0;
	int n = 0;
	/* A dirfd is an int: the syscall tracepoint hands over the whole register, and glibc loads
	 * AT_FDCWD with a 32-bit move (0x00000000ffffff9c). The kernel looks at the low half only;
	 * so must we, or every *at() call relative to the cwd is dropped as "no such fd". */
	dirfd = (__u64)(__s64)(__s32)dirfd;
	if (kname)
		bpf_probe_read_kernel(&c, 1, (void *)name);
	else
		bpf_probe_read_user(&c, 1, (void *)name);
	if (c == '/' && dirfd != FX_NO_DIR) {
		__u32 rest = 0;
		long pfd = fx_proc_fd(name, kname, &rest);
		if (pfd >= 0) {
			dirfd = (__u64)pfd;
			name += rest;
			c = 0; /* not absolute now: the rest ("" or "a/b") is relative to the fd */
		}
	}
	if (dirfd == FX_NO_DIR) {
		n = 0;
	} else if (c == '/') {
		dst[0] = '/';
		n = 1;
		/* An absolute name is looked up from the caller's root in its mount namespace: say
		 * which, for the recorder to resolve it there (a container's volume, a chroot). */
		struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
		struct mnt_namespace *mns = BPF_CORE_READ(t, nsproxy, mnt_ns);
		if (!fx_ns_reaches_root(mns))
			abs_out = true;
		s->ev.flags |= FX_F_ABS_VIEW;
		/* The namespace's 64-bit id, never reused (its inode number is, at once). */
		s->ev.dev = BPF_CORE_READ(mns, ns.ns_id);
		s->ev.ino = BPF_CORE_READ(t, fs, root.dentry, d_inode, i_ino);
	} else if (dirfd == FX_AT_FDCWD) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
		struct dentry *d = BPF_CORE_READ(task, fs, pwd.dentry);
		struct vfsmount *m = BPF_CORE_READ(task, fs, pwd.mnt);
		n = fx_dir_path(s, d, m, dst, &under);
	} else {
		struct file *f = fx_fd_file(dirfd);
		if (!f)
			return -1;
		struct dentry *fd_d = BPF_CORE_READ(f, f_path.dentry);
		/* An unlinked dentry (d_unlinked): linkat naming an O_TMPFILE ("#ino") or a file
		 * removed while open by its descriptor (AT_EMPTY_PATH, /proc/self/fd/N). Its name
		 * is no entry of the tree. */
		if (!BPF_CORE_READ(fd_d, d_hash.pprev) && BPF_CORE_READ(fd_d, d_parent) != fd_d)
			s->ev.flags |= FX_F_NAME_GONE;
		n = fx_dir_path(s, fd_d, BPF_CORE_READ(f, f_path.mnt), dst, &under);
	}
	bool unnamed = n == FX_PATH_UNKNOWN;
	if (unnamed && under) {
		/* A directory under the root too deep to name: a loss without an inode (healed by a
		 * whole-tree resync). */
		fx_lose(s);
		return -1;
	}
	if (unnamed)
		n = 0; /* outside the root: only a name with a '/' could lead back in (below) */
	n &= FX_PATH_MAX - 1;
	dst[n] = 0;
	long l;
	if (kname)
		l = bpf_probe_read_kernel_str(&dst[(n + 1) & (FX_PATH_MAX - 1)], FX_PATH_MAX, (void *)name);
	else
		l = bpf_probe_read_user_str(&dst[(n + 1) & (FX_PATH_MAX - 1)], FX_PATH_MAX, (void *)name);
	if (l <= 0)
		return -1;
	if (abs_out) {
		*maybe_under = 0;
		return n + l;
	}
	if (!under) {
		/* dst is inside the scratch body: scan the name there for a '/'. */
		struct fx_slash_scan c = {
			.buf = s->body,
			.start = (__u32)(dst - s->body) + n + 1,
			.len = (__u32)l,
			.slash = 0,
		};
		bpf_loop(FX_PATH_MAX, fx_slash_step, &c, 0);
		under = c.slash;
	}
	if (unnamed) {
		if (under)
			fx_lose(s); /* it might climb back in: a loss, never a wrong path */
		return -1;
	}
	*maybe_under = under;
	return n + l; /* dir, NUL, name (l counts the name's NUL, which we drop) */
}

static __always_inline int fx_dir_name(struct fx_scratch *s, __u64 dirfd, __u64 uname, char *dst, __u32 *maybe_under)
{
	return fx_dir_name_from(s, dirfd, uname, false, dst, maybe_under);
}

#endif
