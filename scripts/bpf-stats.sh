#!/bin/bash
# Per-call run time of hot eBPF programs (kernel.bpf_stats_enabled) under a fixed workload on a
# tmpfs root, to compare two recorder builds in one session (docs/benchmarks.md):
#   sudo scripts/bpf-stats.sh target/debug/foxing-journal LABEL
BIN=$1; L=$2
W=/dev/shm/bm; rm -rf $W; mkdir -p $W/src
sysctl -qw kernel.bpf_stats_enabled=1
$BIN record --root $W/src --journal $W/j 2>$W/rec.log & rp=$!
until $BIN stat --journal $W/j 2>/dev/null | grep -q '^bases  *[1-9]'; do sleep 0.2; done
sleep 1
get() { bpftool prog show name $1 --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); d=d if isinstance(d,list) else [d]; print(sum(x.get('run_time_ns',0) for x in d), sum(x.get('run_cnt',0) for x in d))"; }
read t0w c0w <<< "$(get fx_exit_write)"; read t0e c0e <<< "$(get fx_enter_write)"; read t0m c0m <<< "$(get fx_exit_mkdir)"
dd if=/dev/zero of=$W/src/f bs=4k count=100000 status=none
for i in $(seq 1 3000); do mkdir $W/src/d$i; done
read t1w c1w <<< "$(get fx_exit_write)"; read t1e c1e <<< "$(get fx_enter_write)"; read t1m c1m <<< "$(get fx_exit_mkdir)"
echo "$L exit_write $(( (t1w-t0w)/(c1w-c0w) )) ns ($((c1w-c0w)) runs)  enter_write $(( (t1e-t0e)/(c1e-c0e) )) ns  exit_mkdir $(( (t1m-t0m)/(c1m-c0m) )) ns ($((c1m-c0m)))"
kill -INT $rp; wait $rp 2>/dev/null
rm -rf $W
