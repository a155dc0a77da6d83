#!/usr/bin/env bash
# The test workload's namespace mode (renames, links, symlinks, whiteouts, moves into and out of
# the root, xattrs and times through symlinks) recorded by the recorder binary, applied, and
# compared with tree-diff; repeated over seeds. The run that found the re-statement holes of
# 2026-11-30 (docs/capture.md, "Removed names" and the arrivals paragraph).
#
#   sudo scripts/ns-torture.sh [RUNS] [SEED...]     default: 3 runs of seeds 20 21 22
#
# Exit 1 at the first difference (the work directory is kept and named). Uses the debug
# binaries: run `cargo build --workspace --bins` first.
set -u
runs=${1:-3}; shift || true
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(20 21 22)
B="$(cd "$(dirname "$0")/.." && pwd)/target/debug"
for r in $(seq 1 "$runs"); do
  for s in "${seeds[@]}"; do
    W=$(mktemp -d /tmp/foxing-ns.XXXXXX)
    mkdir -p "$W/src" "$W/out"
    "$B/foxing-journal" record --root "$W/src" --journal "$W/j" 2>"$W/rec.log" &
    rp=$!
    until "$B/foxing-journal" stat --journal "$W/j" 2>/dev/null | grep -q '^bases  *[1-9]'; do sleep 0.2; done
    "$B/workload" "$W/src" "$s" 4000 ns "$W/out" || { echo "workload failed"; exit 2; }
    sleep 1; kill -INT $rp; wait $rp
    "$B/foxing-applier" --root "$W/dst" --state "$W/st" --journal "$W/j" >/dev/null 2>&1
    if res=$("$B/tree-diff" "$W/src" "$W/dst" 2>&1); then
      echo "run $r seed $s: $(echo "$res" | tail -1)"
      rm -rf "$W"
    else
      echo "run $r seed $s: DIFFERENT (kept in $W)"; echo "$res" | tail -5; exit 1
    fi
  done
done
