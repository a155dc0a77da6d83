#!/usr/bin/env bash
# Races between a program's writes and renames, recorded and replayed (the patterns behind this
# project's re-read, shared-position and racy-path fixes of 2026-11-30, docs/capture.md):
#
#   sudo scripts/race-torture.sh MODE [FS]     FS: tmpfs (default) or ext4 (loop image)
#     atomic     large writes to tmp files renamed at once (and a name rewritten and renamed away)
#     shared     forked writers appending / writing through one shared open file
#     rotate     a file renamed back and forth while another process appends to it
#     dirs       files created inside a directory renamed back and forth (path operations
#                and file events racing a rename of their directory: re-stated names)
#
# Exit 1 when tree-diff finds a difference. Uses the debug binaries: `cargo build --workspace --bins`.
set -u
mode=$1; fs=${2:-tmpfs}
B="$(cd "$(dirname "$0")/.." && pwd)/target/debug"
W=$(mktemp -d /tmp/foxing-race.XXXXXX)
mkdir -p "$W/src" "$W/dst" "$W/state"
case $fs in
  tmpfs) mount -t tmpfs tmpfs "$W/src" ;;
  ext4) truncate -s 1G "$W/s.img"; mkfs.ext4 -q "$W/s.img"; mount -o loop "$W/s.img" "$W/src" ;;
  *) echo "FS must be tmpfs or ext4" >&2; exit 2 ;;
esac
trap 'cd /; umount "$W/src"; rm -rf "$W"' EXIT
"$B/foxing-journal" record --root "$W/src" --journal "$W/j" 2>"$W/rec.log" &
rp=$!
until "$B/foxing-journal" stat --journal "$W/j" 2>/dev/null | grep -q '^bases  *[1-9]'; do sleep 0.2; done
cd "$W/src"
case $mode in
  atomic) python3 -c "
import os
os.mkdir('d')
for i in range(50):
    fd = os.open('tmp%d' % i, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, os.urandom(300000)); os.fsync(fd); os.close(fd)
    os.rename('tmp%d' % i, 'final%d' % i)
    if i % 10 == 0: os.rename('final%d' % i, 'd/f%d' % i)
for i in range(20):
    fd = os.open('x', os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644); os.write(fd, os.urandom(200000)); os.close(fd)
    os.rename('x', 'y%d' % i)
" ;;
  shared)
    w() { i=0; while [ $i -lt 3000 ]; do echo "line from $1 $i"; i=$((i+1)); done; }
    ( w A & w B & w C & w D & wait ) >> log
    ( w E & w F & wait ) > trunc ;;
  rotate) python3 -c "
import os, time
fd = os.open('log', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
pid = os.fork()
if pid == 0:
    for i in range(300):
        a, b = ('log', 'log.1') if i % 2 == 0 else ('log.1', 'log')
        os.rename(a, b); time.sleep(0.001)
    os._exit(0)
i = 0
while os.waitpid(pid, os.WNOHANG)[0] == 0:
    os.write(fd, b'line %d\n' % i); i += 1
" ;;
  dirs) python3 -c "
import os, time
os.mkdir('a')
pid = os.fork()
if pid == 0:
    for i in range(300):
        x, y = ('a', 'b') if i % 2 == 0 else ('b', 'a')
        os.rename(x, y); time.sleep(0.001)
    os._exit(0)
i = 0
while os.waitpid(pid, os.WNOHANG)[0] == 0:
    for n in ('a', 'b'):
        try:
            fd = os.open('%s/f%d' % (n, i), os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, b'x%d' % i); os.close(fd); i += 1
        except FileNotFoundError: pass
" ;;
  *) echo "MODE must be atomic, shared, rotate or dirs" >&2; exit 2 ;;
esac
sleep 1
kill -INT $rp; wait $rp
cd /
"$B/foxing-applier" --root "$W/dst" --state "$W/state" --journal "$W/j" --json >"$W/apply.json" 2>"$W/apply.log" \
  || { echo "apply failed:"; tail -3 "$W/apply.log"; exit 1; }
"$B/foxing-journal" stat --journal "$W/j" | grep -E '^(seqs|gaps)'
"$B/tree-diff" "$W/src" "$W/dst" | tail -5 | cut -c1-200
exit "${PIPESTATUS[0]}"
