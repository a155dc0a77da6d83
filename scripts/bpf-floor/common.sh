# Shared by floor.sh and helpers.sh: builds vmlinux.h and the loader in a work directory.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-/tmp/bpf-floor}
mkdir -p "$work"
[ -s "$work/vmlinux.h" ] || bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$work/vmlinux.h"
[ -x "$work/load" ] || gcc -O2 "$here/load.c" -o "$work/load" -lbpf
bpfcc() { clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -I"$work" -c "$1" -o "$2"; }
