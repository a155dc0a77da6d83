#!/usr/bin/env bash
# Foxing demo (as root): record a live tree with eBPF, apply the journal to a replica, check
# the replica is identical, restore a point in time, verify the journal, and show that damage
# is caught. Shipping over QUIC with mutual TLS joins this demo with the transport (not built
# yet: the applier reads the journal directly here).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the demo needs root (it loads eBPF probes)"; exit 2; }
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v clang >/dev/null || need+=(clang llvm)
command -v bpftool >/dev/null || need+=(bpftool)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; fi
cargo build --release --locked -q -p foxing-journal -p foxing-applier -p foxing-tests
bin=target/release
work=$(mktemp -d /tmp/foxing-demo.XXXXXX)
trap 'kill "$rec" 2>/dev/null || true; rm -rf "$work"' EXIT
src=$work/src; J=$work/journal
mkdir -p "$src/db" "$work/outside"
head -c 3000000 /dev/urandom > "$src/db/table.dat"
printf 'hello\n' > "$src/README"

echo "== 1. record $src (base, then live changes)"
"$bin/foxing-journal" record --root "$src" --journal "$J" > "$work/record.out" 2> "$work/record.log" &
rec=$!
until "$bin/foxing-journal" stat --journal "$J" --json 2>/dev/null | grep -q '"complete": true'; do sleep 0.2; done
echo "== 2. a mixed workload: writes, fsyncs, creates, renames, links, chmod..."
"$bin/workload" "$src" 1 2000
"$bin/workload" "$src" 2 2000 ns "$work/outside"
sleep 0.5
kill -TERM "$rec"; wait "$rec" || true
cat "$work/record.out"

echo "== 3. the journal"
"$bin/foxing-journal" stat --journal "$J"
"$bin/foxing-journal" dump --journal "$J" | tail -n 3

echo "== 4. apply to a replica and compare"
"$bin/foxing-applier" --root "$work/replica" --state "$work/state" --journal "$J"
if diff -r --no-dereference "$src" "$work/replica" > "$work/diff.txt"; then
  echo "   replica is identical to the source (content, links, symlinks: diff -r)"
else
  echo "   REPLICA DIFFERS:"; head "$work/diff.txt"; exit 1
fi

echo "== 5. point-in-time restore to the middle of the run"
mid=$("$bin/foxing-journal" stat --journal "$J" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print((s["first_time_ns"]+s["last_time_ns"])//2/1e9)')
"$bin/foxing-applier" --root "$work/restore" --state "$work/restore-state" --journal "$J" --until "$mid"

echo "== 6. verify the journal, then flip one byte in a copy"
"$bin/foxing-journal" verify --journal "$J"
cp -r "$J" "$work/damaged"
seg=$(ls "$work/damaged/segments" | head -n1)
printf '\xff' | dd of="$work/damaged/segments/$seg" bs=1 seek=5000 conv=notrunc status=none
set +e
"$bin/foxing-journal" verify --journal "$work/damaged" | grep -m1 DAMAGE
echo "   verify exit code: ${PIPESTATUS[0]}"
set -e
echo "== demo done"
