#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("tracepoint/syscalls/sys_enter_pwrite64") int e(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_exit_pwrite64") int x(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
