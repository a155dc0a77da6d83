#!/usr/bin/env bash
# Foxing side by side with lsyncd+rsync and a one-shot rsync, in one run (issue 8).
#   sudo bash scripts/bench.sh            full run (under 20 minutes), results in results/DATE/
#   sudo bash scripts/bench.sh --short    CI mode (under 3 minutes): keeps the harness working
#   FOXING_BENCH_OUT=DIR                  where results go; FOXING_BENCH_WORK=DIR scratch space
#                                         (default /var/tmp: a real disk, not tmpfs)
# Writes results.md (tables), results.json, lag-*.dat / overhead.dat and PNG plots (gnuplot).
# docs/benchmarks.md reads a full run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
[ "$(id -u)" = 0 ] || { echo "run as root: the recorder loads eBPF probes" >&2; exit 2; }

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v fio >/dev/null || need_apt+=(fio)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v lsyncd >/dev/null || need_apt+=(lsyncd)
command -v gnuplot >/dev/null || need_apt+=(gnuplot-nox)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

profile=release
[ "$mode" = --short ] && profile="${FOXING_BENCH_PROFILE:-dev}"
if [ "$profile" = release ]; then
  cargo build --release --locked -p foxing-journal -p foxing-shipper -p foxing-applier -p foxing-tests --bins
  bin=target/release
else
  cargo build --locked -p foxing-journal -p foxing-shipper -p foxing-applier -p foxing-tests --bins
  bin=target/debug
fi

out="${FOXING_BENCH_OUT:-results/$(date -u +%Y-%m-%dT%H%M%SZ)${mode:+-short}}"
work="${FOXING_BENCH_WORK:-/var/tmp}/foxing-bench.$$"
mkdir -p "$out"
trap 'rm -rf "$work"' EXIT
{
  echo "machine: $(uname -sr), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "scratch: $(df -T "${FOXING_BENCH_WORK:-/var/tmp}" | awk 'NR==2 {print $2" on "$1}')"
  echo "lsyncd: $(lsyncd --version 2>&1 | head -1); rsync: $(rsync --version | head -1)"
  echo "foxing: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $profile build"
} > "$out/machine.txt"
"$bin/compare-bench" "$work" "$out" $mode

gnuplot <<GP
set terminal pngcairo size 900,540 noenhanced
set output "$out/lag.png"
set title "Lag of single small writes until the replica has them"
set xlabel "lag (ms)"; set ylabel "fraction of writes"; set logscale x; set key bottom right; set grid
plot "$out/lag-foxing.dat" using (\$2/1000):1 with steps lw 2 title "Foxing", \
     "$out/lag-lsyncd-rsync.dat" using (\$2/1000):1 with steps lw 2 title "lsyncd+rsync (delay 0)"
set output "$out/overhead.png"
unset logscale; set title "Source throughput with replication (1.0 = no replication)"
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
set ylabel "ratio to no replication"; set yrange [0:*]; set xlabel ""; set key top right
plot "$out/overhead.dat" using 2:xtic(1) title "fio 4 KiB randwrite", "" using 3 title "fio 1 MiB write", "" using 4 title "small-file storm"
GP
echo "results: $out (results.md, results.json, lag.png, overhead.png)"
