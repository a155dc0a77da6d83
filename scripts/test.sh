#!/usr/bin/env bash
# Runs the whole Foxing test suite. Installs what it needs on Debian (as root).
#   FOXING_REQUIRE_BPF=1  tests that need BPF or root fail instead of skipping (CI sets it).
#   FOXING_FUZZ_SECONDS=N also run each cargo-fuzz target for N seconds (needs nightly).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# eBPF toolchain: without it the committed probes/bpf/foxing.bpf.o is used instead.
command -v clang >/dev/null || need_apt+=(clang llvm)
command -v bpftool >/dev/null || need_apt+=(bpftool)
[ -e /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
# Capture tests: fio (io_uring, libaio), loop-mounted ext4 and xfs (reflinks) images.
command -v fio >/dev/null || need_apt+=(fio)
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
command -v mkfs.xfs >/dev/null || need_apt+=(xfsprogs)
# A filesystem torture run with ring losses (heal_e2e).
command -v stress-ng >/dev/null || need_apt+=(stress-ng)
# Real tools in the capture tests: POSIX ACLs and file capabilities.
command -v setfacl >/dev/null || need_apt+=(acl)
command -v setcap >/dev/null || [ -x /usr/sbin/setcap ] || need_apt+=(libcap2-bin)
ls /usr/lib/postgresql/*/bin/pg_amcheck >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (install them, or run as root)" >&2
    exit 2
  fi
fi

# The end-to-end tests run the real binaries of every crate (recorder, shipper, applier).
cargo build --workspace --bins --locked
echo "== cargo test ($(date -u +%T))"
cargo test --workspace --locked

if [ "${FOXING_FUZZ_SECONDS:-0}" -gt 0 ]; then
  if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "FOXING_FUZZ_SECONDS is set but no nightly toolchain is installed (rustup toolchain install nightly)" >&2
    exit 1
  fi
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  cd fuzz
  for t in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$t"
    echo "== fuzz $t for ${FOXING_FUZZ_SECONDS}s ($(date -u +%T))"
    # No sanitizer: the fuzzed crates (proto, journal without the recorder) have no unsafe
    # code, so ASan finds nothing libFuzzer does not (panics, OOM, hangs); with 16 codegen
    # units the build takes 2m38 instead of 3m49 here.
    cargo +nightly fuzz run -s none --codegen-units 16 "$t" "corpus/$t" -- -max_total_time="${FOXING_FUZZ_SECONDS}" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
      | grep -Ev '^#[0-9]+\s+(NEW|REDUCE|pulse)' || { echo "fuzz target $t failed" >&2; exit 1; }
  done
fi
