/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/* Record layouts shared by the eBPF programs and the Rust loader (probes/src/layout.rs).
 * Every field's offset is checked against the Rust side in a test (layout_matches_c). */
#ifndef FOXING_H
#define FOXING_H

#define FX_COMM_LEN 16
/* Path bytes carried by an event (PATH_MAX). */
#define FX_PATH_MAX 4096
/* Largest payload copied into one event; longer writes are sent as inexact ranges. */
#define FX_PAYLOAD_MAX (256 * 1024)

enum fx_op {
	FX_OP_WRITE = 1,     /* offset, len; payload follows unless FX_F_INEXACT */
	FX_OP_TRUNCATE = 2,  /* len = new size */
	FX_OP_FSYNC = 3,
	FX_OP_FDATASYNC = 4,
	FX_OP_CREATE = 5,    /* open with O_CREAT (mode in arg) or O_TRUNC (FX_F_TRUNC) */
};

enum fx_flags {
	FX_F_INEXACT = 1,    /* payload not captured: re-read offset..offset+len */
	FX_F_TRUNC = 2,      /* open truncated the file */
	FX_F_CREATED = 4,    /* open created the file (O_CREAT and it did not exist before) */
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
};

#endif
