#!/bin/bash
# Source overhead of the recorder alone: fio 4 KiB psync random writes for 8 s into a 256 MiB
# file under DIR, without (BIN = none) or with `BIN record` watching DIR/src.
# usage: scripts/overhead-recorder.sh BIN|none DIR   -> fio MB/s and the recorder's CPU seconds
# (docs/benchmarks.md, "Recorder alone under overload"). Needs root and fio.
set -u
bin=$1; base=$2
rm -rf $base; mkdir -p $base/src
fio --name=pre --directory=$base/src --rw=write --bs=1M --size=256M --output-format=terse >/dev/null 2>&1
pid=
if [ "$bin" != none ]; then
  $bin record --root $base/src --journal $base/j >/dev/null 2>$base/rec.log &
  pid=$!
  for i in $(seq 100); do [ -e $base/j/recorder.pid ] && break; sleep 0.1; done
  sleep 2
fi
bw=$(fio --name=pre --directory=$base/src --ioengine=psync --rw=randwrite --bs=4k --size=256M --runtime=8 --time_based --output-format=json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024))')
cpu=-
if [ -n "$pid" ]; then
  cpu=$(awk '{print ($14+$15)/100}' /proc/$pid/stat)
  kill -INT $pid; wait $pid
fi
echo "$bin MB/s=$bw recorder_cpu_s=$cpu"
rm -rf $base
