#!/usr/bin/env bash
# Rebuilds the eBPF object with clang and commits-to-be: bpf/foxing.bpf.o and its sources' hash.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p foxing-probes
obj=$(ls -t target/debug/build/foxing-probes-*/out/foxing.bpf.o | head -n1)
cp "$obj" probes/bpf/foxing.bpf.o
cargo test -q -p foxing-probes --test object -- --ignored print_sources_hash --nocapture | grep -E '^[0-9a-f]{64}$' > probes/bpf/foxing.bpf.o.sha256
echo "updated probes/bpf/foxing.bpf.o ($(cat probes/bpf/foxing.bpf.o.sha256))"
