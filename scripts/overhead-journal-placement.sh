#!/bin/bash
# Where the 1 MiB sequential overhead goes: fio psync 1 MiB writes for 6 s into a 256 MiB file on
# tmpfs, fio pinned to vCPU 0, without the recorder (none), with it journaling to the VM disk
# under /var/tmp (rec), the same with the recorder pinned to vCPU 1 (recpin), and journaling to
# tmpfs (recshm). Prints "MODE MB/s". usage: scripts/overhead-journal-placement.sh MODE (root;
# the release binary: cargo build --release -p foxing-journal)
set -u
mode=$1; bin="$(cd "$(dirname "$0")/.." && pwd)/target/release/foxing-journal"
d=/dev/shm/pin; rm -rf $d /var/tmp/pinj; mkdir -p $d
fio --name=pre --directory=$d --rw=write --bs=1M --size=256M --output-format=terse >/dev/null 2>&1; sync
pid=
case $mode in
 rec) $bin record --root $d --journal /var/tmp/pinj >/dev/null 2>/tmp/pin-rec.log & pid=$! ;;
 recpin) taskset -c 1 $bin record --root $d --journal /var/tmp/pinj >/dev/null 2>/tmp/pin-rec.log & pid=$! ;;
 recshm) $bin record --root $d --journal /dev/shm/pinj >/dev/null 2>/tmp/pin-rec.log & pid=$! ;;
esac
if [ -n "$pid" ]; then for _ in $(seq 100); do [ -e /var/tmp/pinj/recorder.pid ] || [ -e /dev/shm/pinj/recorder.pid ] && break; sleep 0.1; done; sleep 2; fi
bw=$(taskset -c 0 fio --name=m --directory=$d --ioengine=psync --rw=write --bs=1M --size=256M --runtime=6 --time_based --output-format=json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024))')
[ -n "$pid" ] && { kill -KILL $pid; wait $pid 2>/dev/null; }
rm -rf $d /var/tmp/pinj /dev/shm/pinj
echo "$mode $bw"
