#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("raw_tracepoint/sys_enter") int e(struct bpf_raw_tracepoint_args *ctx) { return ctx->args[1] == 18 ? 1 : 0; }
SEC("raw_tracepoint/sys_exit") int x(struct bpf_raw_tracepoint_args *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
