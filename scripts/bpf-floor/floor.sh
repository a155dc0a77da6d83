#!/bin/bash
# fio 4 KiB random pwrite on tmpfs without and with empty BPF program pairs (see README.md).
source "$(dirname "$0")/common.sh"
for p in tp raw btf; do bpfcc "$here/$p.bpf.c" "$work/$p.o"; done
d=/dev/shm/bpf-floor; mkdir -p $d
fio --name=pre --directory=$d --rw=write --bs=1M --size=256M --output-format=terse >/dev/null 2>&1
for round in 1 2 3; do
  for m in none tp raw btf; do
    pid=
    if [ $m != none ]; then "$work/load" "$work/$m.o" 2>/dev/null & pid=$!; sleep 1; fi
    bw=$(fio --name=pre --directory=$d --ioengine=psync --rw=randwrite --bs=4k --size=256M --runtime=5 \
      --time_based --output-format=json 2>/dev/null |
      python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024))')
    if [ -n "$pid" ]; then kill $pid; wait $pid 2>/dev/null || true; fi
    echo "$m MB/s=$bw"
  done
done
rm -rf $d
