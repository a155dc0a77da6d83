#!/bin/bash
# Source overhead of the recorder alone (issue 4's benchmark): fio psync for 8 s into a 256 MiB
# file on tmpfs and on a loop-mounted ext4 image, 4 KiB random writes and 1 MiB sequential
# writes, each run without and with `BIN record` watching the directory, alternating, REPS times.
# usage: scripts/overhead-matrix.sh BIN [REPS]   (root; fio, e2fsprogs)
# Prints one line per run and the median ratio per cell (docs/benchmarks.md). The journal goes
# to the disk under /var/tmp (on tmpfs, 1 MiB rewrites journal ~20 GB in 8 s: RAM), and is
# deleted after each run.
set -u
bin=$(realpath "$1"); reps=${2:-3}
work=$(mktemp -d /var/tmp/ovh.XXXXXX)
img=$work/ext4.img
truncate -s 2G "$img" && mkfs.ext4 -q -F "$img"
mkdir -p "$work/ext4" /dev/shm/ovh-matrix
mount -o loop "$img" "$work/ext4"
trap 'umount "$work/ext4" 2>/dev/null; rm -rf "$work" /dev/shm/ovh-matrix' EXIT
run() { # fs-dir bs rw with-recorder -> "MB/s cpu_s"
  local dir=$1 bs=$2 rw=$3 rec=$4 pid= cpu=-
  rm -rf "$dir/src" "$work/j"; mkdir -p "$dir/src"
  fio --name=pre --directory="$dir/src" --rw=write --bs=1M --size=256M --output-format=terse >/dev/null 2>&1
  sync
  if [ "$rec" = 1 ]; then
    "$bin" record --root "$dir/src" --journal "$work/j" >/dev/null 2>"$work/rec.log" & pid=$!
    for _ in $(seq 100); do [ -e "$work/j/recorder.pid" ] && break; sleep 0.1; done
    sleep 2
    cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
  fi
  bw=$(fio --name=m --directory="$dir/src" --ioengine=psync --rw="$rw" --bs="$bs" --size=256M \
        --runtime=8 --time_based --output-format=json 2>/dev/null |
       python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw"]/1024))')
  if [ -n "$pid" ]; then
    cpu=$(awk -v c0="$cpu0" '{print ($14+$15-c0)/100}' /proc/$pid/stat)
    # The journal is not needed: a clean stop would first drain what the recorder is behind.
    kill -KILL $pid; wait $pid 2>/dev/null
  fi
  rm -rf "$dir/src" "$work/j"
  echo "$bw $cpu"
}
for fs in tmpfs ext4; do
  dir=/dev/shm/ovh-matrix; [ $fs = ext4 ] && dir=$work/ext4
  for wl in "4k randwrite" "1M write"; do
    set -- $wl
    ratios=()
    for r in $(seq "$reps"); do
      read -r b0 _ < <(run "$dir" "$1" "$2" 0)
      read -r b1 c1 < <(run "$dir" "$1" "$2" 1)
      ratio=$(python3 -c "print(round($b1/$b0, 2))")
      ratios+=("$ratio")
      echo "$fs $1 $2 rep=$r none=${b0}MB/s recorder=${b1}MB/s ratio=$ratio recorder_cpu_s=$c1"
    done
    echo "$fs $1 $2 median_ratio=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (reps + 1) / 2 ))p")"
  done
done
