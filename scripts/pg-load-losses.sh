#!/bin/bash
# Ring losses of the recorder during a PostgreSQL bulk load (pgbench -i -s 10), as root.
# usage: scripts/pg-load-losses.sh [BIN_DIR]   (default target/debug; build with
#        `cargo build --workspace --bins` first). Prints the load time, the recorder's loss
#        warnings and lost events, and the journal summary. docs/benchmarks.md cites it.
set -u
B=${1:-target/debug}
PGB=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
T=$(mktemp -d); chmod 755 "$T"; mkdir -p "$T/src" "$T/sock"; chown postgres "$T/src" "$T/sock"
trap 'rm -rf "$T"' EXIT
runuser -u postgres -- "$PGB/initdb" -D "$T/src/pgdata" -A trust --no-sync >/dev/null
"$B/foxing-journal" record --root "$T/src" --journal "$T/journal" 2> "$T/rec.log" &
RP=$!
sleep 2
runuser -u postgres -- "$PGB/pg_ctl" -D "$T/src/pgdata" -o "-k $T/sock -p 5499 -c listen_addresses=''" -l "$T/sock/pg.log" start >/dev/null
sleep 1
start=$(date +%s.%N)
runuser -u postgres -- "$PGB/pgbench" -i -s 10 -h "$T/sock" -p 5499 postgres >/dev/null 2>&1
end=$(date +%s.%N)
runuser -u postgres -- "$PGB/pg_ctl" -D "$T/src/pgdata" -m immediate stop >/dev/null
sleep 1
kill -TERM $RP; wait $RP
echo "pgbench -i: $(echo "$end - $start" | bc) s"
echo "loss warnings: $(grep -c 'ring buffer full' "$T/rec.log")"
grep -o "lost=[0-9]*" "$T/rec.log" | awk -F= '{s+=$2} END {print "lost events:", s+0}'
"$B/foxing-journal" stat --journal "$T/journal" | sed -n 2,5p
