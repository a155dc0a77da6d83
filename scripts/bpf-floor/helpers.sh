#!/bin/bash
# Average run time of a sys_exit_pwrite64 program doing one thing ten times (see README.md).
source "$(dirname "$0")/common.sh"
gen() { # name, globals, statement run ten times
  cat > "$work/h_$1.bpf.c" <<C
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
__u64 sink;
$2
SEC("tracepoint/syscalls/sys_exit_pwrite64") int x(void *ctx) { __u64 s = 0;
	struct task_struct *t = bpf_get_current_task_btf();
#pragma unroll
	for (int i = 0; i < 10; i++) { asm volatile("" ::: "memory"); $3 }
	sink = s; return 0; }
char LICENSE[] SEC("license") = "GPL";
C
  bpfcc "$work/h_$1.bpf.c" "$work/h_$1.o"
}
gen empty "" ""
gen ktime_boot "" "s += bpf_ktime_get_boot_ns();"
gen comm_helper "" "char c[16]; bpf_get_current_comm(c, 16); s += c[i & 15];"
gen comm_loads "" "s += *(__u64 *)&t->comm[0] + *(__u64 *)&t->comm[8];"
gen uid_gid_helper "" "s += bpf_get_current_uid_gid();"
gen uid_load "" "s += t->cred->uid.val;"
gen cgroup_helper "" "s += bpf_get_current_cgroup_id();"
gen cgroup_loads "" "s += t->cgroups->dfl_cgrp->kn->id;"
gen probe_read_kernel "" "__u64 v = 0; bpf_probe_read_kernel(&v, 8, &t->pid); s += v;"
gen core_read_2 "" "s += BPF_CORE_READ(t, mm, mmap_base);"
gen lru_lookup "struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 16384); __type(key, __u64); __type(value, __u64[40]); } m SEC(\".maps\");" \
  "__u64 k = i; __u64 *v = bpf_map_lookup_elem(&m, &k); if (v) s += v[0]; else { __u64 z[40] = {}; bpf_map_update_elem(&m, &k, z, 0); }"
gen task_storage "struct { __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, int); __type(value, __u64[10]); } m SEC(\".maps\");" \
  "__u64 *v = bpf_task_storage_get(&m, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE); if (v) s += v[0]++;"
gen ringbuf_reserve_discard "struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } r SEC(\".maps\");" \
  "__u64 *v = bpf_ringbuf_reserve(&r, 256, 0); if (v) { v[0] = s; bpf_ringbuf_discard(v, BPF_RB_NO_WAKEUP); }"
old=$(sysctl -n kernel.bpf_stats_enabled); sysctl -qw kernel.bpf_stats_enabled=1
d=/dev/shm/bpf-floor; mkdir -p $d
fio --name=pre --directory=$d --rw=write --bs=1M --size=64M --output-format=terse >/dev/null 2>&1
empty=
for h in empty ktime_boot comm_helper comm_loads uid_gid_helper uid_load cgroup_helper cgroup_loads \
         probe_read_kernel core_read_2 lru_lookup task_storage ringbuf_reserve_discard; do
  "$work/load" "$work/h_$h.o" 2>/dev/null & pid=$!; sleep 0.5
  fio --name=pre --directory=$d --ioengine=psync --rw=randwrite --bs=4k --size=64M --runtime=2 \
    --time_based --output-format=terse >/dev/null 2>&1
  ns=$(bpftool prog show name x | grep -o "run_time_ns [0-9]* run_cnt [0-9]*" | awk '{printf "%.0f", $2/$4}')
  kill $pid; wait $pid 2>/dev/null || true
  [ -z "$empty" ] && empty=$ns
  echo "$h: $(( (ns - empty) / 10 )) ns per call (program $ns ns, empty $empty ns)"
done
rm -rf $d; sysctl -qw kernel.bpf_stats_enabled=$old
