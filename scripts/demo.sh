#!/usr/bin/env bash
# Foxing demo (as root): make certificates, record a live tree with eBPF, ship the journal over
# QUIC with mutual TLS on loopback to a replica, run a mixed workload while showing the live lag,
# check the replica is identical, restore a point in time from the replica's own archive, verify
# the journal, and show that damage is caught. Ends with a short report.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the demo needs root (it loads eBPF probes)"; exit 2; }
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v clang >/dev/null || need+=(clang llvm)
command -v bpftool >/dev/null || need+=(bpftool)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; fi
# FOXING_DEMO_PROFILE=dev reuses the test build (CI); the default is an optimized build.
if [ "${FOXING_DEMO_PROFILE:-release}" = dev ]; then
  cargo build --locked -q -p foxing-journal -p foxing-shipper -p foxing-applier -p foxing-tests
  bin=target/debug
else
  cargo build --release --locked -q -p foxing-journal -p foxing-shipper -p foxing-applier -p foxing-tests
  bin=target/release
fi
work=$(mktemp -d /tmp/foxing-demo.XXXXXX)
rec=; ship=; app=
trap 'kill $rec $ship $app 2>/dev/null || true; rm -rf "$work"' EXIT
src=$work/src; J=$work/journal
mkdir -p "$src/db" "$work/outside"
head -c 3000000 /dev/urandom > "$src/db/table.dat"
printf 'hello\n' > "$src/README"

port=$((20000 + RANDOM % 20000)); mport=$((port + 1))
echo "== 1. certificates: a private CA, one cert per node"
"$bin/foxing-shipper" certs --out "$work/certs" --name source --name replica1 | sed 's/^/   /'
C=$work/certs

echo "== 2. record $src (base, then live changes)"
"$bin/foxing-journal" record --root "$src" --journal "$J" > "$work/record.out" 2> "$work/record.log" &
rec=$!
until "$bin/foxing-journal" stat --journal "$J" --json 2>/dev/null | grep -q '"complete": true'; do sleep 0.2; done

echo "== 3. ship over QUIC + mutual TLS (127.0.0.1:$port) to a replica that archives and applies"
"$bin/foxing-shipper" serve --journal "$J" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
  --cert "$C/source.pem" --key "$C/source.key" --ca "$C/ca.pem" 2> "$work/shipper.log" &
ship=$!
sleep 0.5
"$bin/foxing-applier" --root "$work/replica" --state "$work/state" --connect "127.0.0.1:$port" --server-name source \
  --cert "$C/replica1.pem" --key "$C/replica1.key" --ca "$C/ca.pem" --follow --json > "$work/applier.json" 2> "$work/applier.log" &
app=$!

lag() {
  python3 - "$mport" <<'PY'
import sys, urllib.request
m = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
v = {l.rsplit(" ", 1)[0]: l.rsplit(" ", 1)[1] for l in m.splitlines() if l and not l.startswith("#")}
r = '{replica="replica1"}'
seq, acked = v.get("foxing_shipper_journal_durable_seq", "?"), v.get("foxing_shipper_replica_acked_seq" + r, "?")
lag_n, lag_s = v.get("foxing_shipper_replica_lag_seq" + r, "?"), v.get("foxing_shipper_replica_lag_seconds" + r, "?")
print(f"   journal seq {seq}, replica1 acked {acked}, lag {lag_n} records / {lag_s} s")
PY
}

echo "== 4. a mixed workload: writes, fsyncs, creates, renames, links, chmod... (live lag below)"
"$bin/workload" "$src" 1 2000 &
w1=$!
while kill -0 $w1 2>/dev/null; do lag; sleep 0.5; done
"$bin/workload" "$src" 2 2000 ns "$work/outside"
lag
sleep 0.5
kill -TERM "$rec"; wait "$rec" || true; rec=
cat "$work/record.out"
durable=$("$bin/foxing-journal" stat --journal "$J" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["durable_seq"])')
until python3 -c 'import sys,urllib.request; m=urllib.request.urlopen("http://127.0.0.1:'"$mport"'/metrics").read().decode(); sys.exit(0 if "foxing_shipper_replica_lag_seq{replica=\"replica1\"} 0" in m else 1)'; do sleep 0.2; done
lag
kill -TERM "$app"; wait "$app" || true; app=
# Apply anything archived but not yet applied when the follow run stopped, then compare.
"$bin/foxing-applier" --root "$work/replica" --state "$work/state" --connect "127.0.0.1:$port" --server-name source \
  --cert "$C/replica1.pem" --key "$C/replica1.key" --ca "$C/ca.pem"

echo "== 5. the journal and its replicas"
"$bin/foxing-journal" stat --journal "$J"
"$bin/foxing-journal" dump --journal "$J" | tail -n 3

echo "== 6. compare the replica with the source"
if "$bin/tree-diff" "$src" "$work/replica" > "$work/diff.txt"; then
  identical=yes; echo "   replica is identical to the source: $(cat "$work/diff.txt") (content, holes, types, modes, owners, symlinks, hard links, xattrs, mtimes)"
else
  echo "   REPLICA DIFFERS:"; head "$work/diff.txt"; exit 1
fi
kill -TERM "$ship"; wait "$ship" || true; ship=

echo "== 7. point-in-time restore to the middle of the run, from the replica's own archive"
A=$work/state/archive
mid=$("$bin/foxing-journal" stat --journal "$A" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print((s["first_time_ns"]+s["last_time_ns"])//2/1e9)')
"$bin/foxing-applier" --root "$work/restore" --state "$work/restore-state" --journal "$A" --until "$mid" --json > "$work/restore.json"
python3 - "$work/restore.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["restore"]
p = lambda x: f"seq {x['seq']} at {x['time']} ({x['kind']})" if x else "none"
print(f"   restored to {p(r['reached'])}\n   nearest before: {p(r['nearest_before'])}\n   nearest after:  {p(r['nearest_after'])}")
print(f"   the restored tree is a state the source had: {'yes' if j['consistent'] else 'no'}")
PY

echo "== 8. verify the journal, then flip one byte in a copy"
"$bin/foxing-journal" verify --journal "$J"
cp -r "$J" "$work/damaged"
seg=$(ls "$work/damaged/segments" | head -n1)
printf '\xff' | dd of="$work/damaged/segments/$seg" bs=1 seek=5000 conv=notrunc status=none
set +e
"$bin/foxing-journal" verify --journal "$work/damaged" > "$work/verify.txt"
rc=$?
grep -m1 DAMAGE "$work/verify.txt"
echo "   verify exit code: $rc"
set -e
echo "== report"
python3 - "$J" "$A" "$work/restore.json" "$work/shipper.log" <<PY
import json, subprocess, sys
st = lambda j: json.loads(subprocess.check_output(["$bin/foxing-journal", "stat", "--journal", j, "--json"]))
s, a = st(sys.argv[1]), st(sys.argv[2])
r = json.load(open(sys.argv[3]))["restore"]["reached"]
print(f"   source journal: seqs {s['first_seq']}..{s['durable_seq']}, {s.get('sync_points', '?')} sync points")
print(f"   replica archive: seqs {a['first_seq']}..{a['durable_seq']} (same journal id: {s.get('journal_id') == a.get('journal_id')})")
print(f"   replica identical to source: $identical")
print(f"   point-in-time restore reached seq {r['seq']} at {r['time']}")
PY
echo "== demo done"
