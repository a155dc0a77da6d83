#!/usr/bin/env bash
# A stress-ng storm recorded and replayed: the tool that found this project's deep-tree,
# heal-ordering and 2^60-offset bugs (2026-11-30, docs/capture.md).
#
#   sudo scripts/stress-torture.sh FS SECONDS STRESSOR...     FS: tmpfs, ext4 or xfs (loop images)
#   e.g. sudo scripts/stress-torture.sh ext4 10 link symlink rename dir utime chmod xattr hdd
#   REC_ARGS="--ring-size-bytes 1048576" forces ring losses (and their heals).
#
# Records the storm into a journal (source and replica on fresh filesystems of the given type),
# applies the journal to the replica and compares the trees with tree-diff (exit 1 on a
# difference). Uses the debug binaries: run `cargo build --workspace --bins` first.
set -u
fs=$1; secs=$2; shift 2
B="$(cd "$(dirname "$0")/.." && pwd)/target/debug"
W=$(mktemp -d /tmp/foxing-torture.XXXXXX)
mkfs_mount() { # FS IMAGE DIR
  case $1 in
    tmpfs) mount -t tmpfs -o size=2G tmpfs "$3" ;;
    ext4) truncate -s 2G "$2"; mkfs.ext4 -q "$2"; mount -o loop "$2" "$3" ;;
    xfs) truncate -s 2G "$2"; mkfs.xfs -q "$2"; mount -o loop "$2" "$3" ;;
    *) echo "FS must be tmpfs, ext4 or xfs" >&2; exit 2 ;;
  esac
}
mkdir -p "$W/src" "$W/dst" "$W/state"
mkfs_mount "$fs" "$W/src.img" "$W/src"
mkfs_mount "$fs" "$W/dst.img" "$W/dst"
trap 'umount "$W/src" "$W/dst" 2>/dev/null; rm -rf "$W"' EXIT
mkdir "$W/src/t"
# shellcheck disable=SC2086
"$B/foxing-journal" record --root "$W/src" --journal "$W/j" ${REC_ARGS:-} 2>"$W/rec.log" &
rp=$!
until "$B/foxing-journal" stat --journal "$W/j" 2>/dev/null | grep -q '^bases  *[1-9]'; do sleep 0.2; done
args=()
for s in "$@"; do args+=("--$s" 1); done
# stress-ng's open stressor works in the current directory: run inside the root.
(cd "$W/src/t" && timeout $((secs + 60)) stress-ng "${args[@]}" -t "${secs}s" --keep-files \
  --temp-path "$W/src/t" --hdd-bytes 16M >"$W/sng.log" 2>&1)
echo "stress-ng exit $?"
kill -TERM $rp; wait $rp
grep -v "events were lost" "$W/rec.log" | tail -3
"$B/foxing-journal" stat --journal "$W/j" | grep -E '^(seqs|bases|gaps)'
"$B/foxing-applier" --root "$W/dst" --state "$W/state" --journal "$W/j" --json >"$W/apply.json" 2>"$W/apply.log" \
  || { echo "apply failed:"; tail -3 "$W/apply.log"; exit 1; }
"$B/tree-diff" "$W/src" "$W/dst" | tail -15
exit "${PIPESTATUS[0]}"
