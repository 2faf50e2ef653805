#!/usr/bin/env bash
# bench-cluster.sh measures QoS 1 telemetry through two bridges against one,
# on the same load (D devices, 100 B events, PUBACK after the JetStream
# write), with cmd/passerelle-bench: msg/s and each bridge's CPU per message.
# The bridges share a NATS server with JetStream and a SQLite-free store
# (PostgreSQL, PASSERELLE_TEST_POSTGRES_URL or the local default), as a
# cluster does. Everything runs in a temporary folder on free ports.
# Tunables: D (devices, 1000), T (seconds, 10s), WINDOW (QoS 1 in flight per
# device, 4), KEEP=1 keeps the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

D=${D:-1000}
T=${T:-10s}
WINDOW=${WINDOW:-4}
PG=${PASSERELLE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

work=$(mktemp -d /tmp/passerelle-bench-cluster.XXXXXX)
pids=()
schema="bench_$$"
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	psql -q "$PG" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
	if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "nothing listens on port $1; logs in $work" >&2
	KEEP=1
	return 1
}

echo "building into $work/bin" >&2
mkdir -p "$work/bin"
go build -o "$work/bin/" ./cmd/manager ./cmd/bridge ./cmd/passerelle-bench github.com/nats-io/nats-server/v2
psql -q "$PG" -c "CREATE SCHEMA $schema" >/dev/null
db="${PG}&search_path=$schema"
[[ $PG == *\?* ]] || db="${PG}?search_path=$schema"

nats=$(free_port)
"$work/bin/nats-server" -a 127.0.0.1 -p "$nats" -js -sd "$work/nats" 2>"$work/nats.log" &
pids+=("$!")
wait_port "$nats"
mgr=$(free_port)
"$work/bin/manager" --listen "127.0.0.1:$mgr" --database-url "$db" --insecure-no-auth \
	--nats-url "nats://127.0.0.1:$nats" --log-level warn 2>"$work/manager.log" &
pids+=("$!")
wait_port "$mgr"
bridge() { # name port
	"$work/bin/bridge" --mqtt-addr "" --mqtt-plain-addr "127.0.0.1:$2" --database-url "$db" \
		--nats-url "nats://127.0.0.1:$nats" --data-dir "$work/$1" --instance-id "$1" \
		--message-rate 0 --byte-rate 0 --max-pending-per-address 0 --log-level warn 2>"$work/$1.log" &
	pids+=("$!")
	eval "${1//-/_}_pid=$!"
	wait_port "$2"
}
p1=$(free_port); p2=$(free_port)
bridge bridge-1 "$p1"
bridge bridge-2 "$p2"

run() { # registry devices port pid
	"$work/bin/passerelle-bench" telemetry --manager "127.0.0.1:$mgr" --key "$work/device.key" --registry "$1" \
		--mqtt "127.0.0.1:$3" -d "$2" -t "$T" --window "$WINDOW" --target-pid "$4" --name "$5"
}

echo "== one bridge, $D devices" | tee -a "$work/results.txt"
run one "$D" "$p1" "$bridge_1_pid" "1 bridge" | tee -a "$work/results.txt"
half=$((D / 2))
echo "== two bridges, $half devices each, at once" | tee -a "$work/results.txt"
run two-a "$half" "$p1" "$bridge_1_pid" "bridge-1 of 2" >"$work/a.txt" &
a=$!
run two-b "$half" "$p2" "$bridge_2_pid" "bridge-2 of 2" >"$work/b.txt" &
b=$!
wait "$a" "$b"
cat "$work/a.txt" "$work/b.txt" | tee -a "$work/results.txt"
echo
echo "== results"
cat "$work/results.txt"
