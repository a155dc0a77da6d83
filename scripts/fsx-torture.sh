#!/usr/bin/env bash
# fsx-style random file operations (tests/fsx.py) in a recorded root, replayed and compared with
# tree-diff (content, holes, modes, xattrs, mtimes). Found four shared-mapping bugs and a failed
# fallocate that moved mtime (2026-12-01, docs/capture.md).
#
#   sudo scripts/fsx-torture.sh FS [SEEDS] [OPS]   FS: tmpfs, ext4, xfs (fresh loop images) or dir
#                                                 (a directory on /var/tmp); SEEDS "1 2 3"; OPS 2000
# EXCL=op,op leaves operations out (see tests/fsx.py). Exit 1 at the first difference.
# TOOL=fsstress runs tests/fsstress.py instead: PROCS (default 4) processes of OPS operations
# each on one shared tree (namespace operations colliding across processes).
# Uses the debug binaries: run `cargo build --workspace --bins` first.
set -u
fs=${1:-ext4}
seeds=${2:-"1 2 3"}
ops=${3:-2000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/target/debug
tool=${TOOL:-fsx}
fsx=$here/tests/$tool.py
t=$(mktemp -d /var/tmp/fsx-torture.XXXXXX)
cleanup() { umount -q "$t/src" 2>/dev/null; rm -rf "$t"; }
trap cleanup EXIT
for seed in $seeds; do
    umount -q "$t/src" 2>/dev/null
    rm -rf "$t/src" "$t/j" "$t/dst" "$t/st" "$t/img"
    mkdir -p "$t/src"
    case $fs in
        tmpfs) mount -t tmpfs tmpfs "$t/src" ;;
        ext4|xfs) truncate -s 512M "$t/img" && mkfs."$fs" -q "$t/img" >/dev/null && mount -o loop "$t/img" "$t/src" ;;
        dir) ;;
        *) echo "unknown FS $fs" >&2; exit 2 ;;
    esac
    "$bin/foxing-journal" record --root "$t/src" --journal "$t/j" >"$t/rec.log" 2>&1 &
    rec=$!
    for _ in $(seq 100); do grep -q recording "$t/rec.log" && break; sleep 0.1; done
    # shellcheck disable=SC2086 # PROCS: no argument when unset
    (cd "$t/src" && python3 "$fsx" "$seed" "$ops" ${PROCS:-} >/dev/null 2>"$t/fsx.err")
    sleep 1.5
    kill -INT $rec; wait $rec
    "$bin/foxing-applier" --root "$t/dst" --state "$t/st" --journal "$t/j" >/dev/null || exit 1
    if ! "$bin/tree-diff" "$t/src" "$t/dst"; then
        echo "fsx-torture: $tool $fs seed $seed ops $ops DIVERGED (recorder log: $t/rec.log)" >&2
        trap - EXIT
        exit 1
    fi
    echo "fsx-torture: $tool $fs seed $seed ops $ops: converged"
done
