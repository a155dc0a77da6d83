#!/usr/bin/env bash
# Foxing demo. Today it shows the journal, the part that has landed: a writer appending with
# group commit is killed with SIGKILL, recovery runs, the journal is inspected and verified, and
# a flipped byte is caught. Capture, shipping and apply join this demo as they land (docs/design.md).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential; }
cargo build --release --locked -q -p foxing-journal -p foxing-tests
bin=target/release
work=$(mktemp -d /tmp/foxing-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
J="$work/journal"

echo "== 1. a writer appends records (5 ms group commit) for 1 s, then: kill -9"
"$bin/crash-writer" "$J" 5 1 > "$work/writer.out" &
pid=$!
sleep 1
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
echo "   last durable point the writer reported: $(grep durable "$work/writer.out" | tail -n1 | cut -d' ' -f2)"

echo "== 2. recovery (what the next recorder start does)"
"$bin/foxing-journal" recover --journal "$J"

echo "== 3. stat"
"$bin/foxing-journal" stat --journal "$J"

echo "== 4. dump, first 5 records (add --json for JSON lines)"
"$bin/foxing-journal" dump --journal "$J" | head -n 5

echo "== 5. verify"
"$bin/foxing-journal" verify --journal "$J"

echo "== 6. flip one byte in a copy: verify names the segment and offset, exits 1"
cp -r "$J" "$work/damaged"
seg=$(ls "$work/damaged/segments" | head -n1)
printf '\xff' | dd of="$work/damaged/segments/$seg" bs=1 seek=5000 conv=notrunc status=none
set +e
"$bin/foxing-journal" verify --journal "$work/damaged" | grep -m1 DAMAGE
echo "   verify exit code: ${PIPESTATUS[0]}"
set -e
echo "== demo done"
