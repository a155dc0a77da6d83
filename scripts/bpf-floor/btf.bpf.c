#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
__u64 sink;
SEC("tp_btf/sys_enter") int BPF_PROG(e, struct pt_regs *regs, long id) { if (id == 18) sink += regs->di; return 0; }
SEC("tp_btf/sys_exit") int BPF_PROG(x, struct pt_regs *regs, long ret) { if (regs->orig_ax == 18) sink += ret; return 0; }
char LICENSE[] SEC("license") = "GPL";
