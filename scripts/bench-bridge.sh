#!/usr/bin/env bash
# bench-bridge.sh measures Passerelle's MQTT bridge against Mosquitto (which
# stores nothing) and against the MQTT listener of nats-server (the durable
# peer: its QoS 1 PUBACK follows a JetStream write, like Passerelle's),
# on the same machine and the same load, with cmd/passerelle-bench. Each
# figure is measured on the three brokers one after the other, and the
# table at the end gives every figure and Passerelle's ratios:
#   - memory per idle connection, plain and TLS, on a fresh process and
#     again after 4 rounds of connecting and disconnecting (N connections);
#   - CPU per plain connect (RS256 JWT on Passerelle, anonymous elsewhere)
#     and the TLS connect rate;
#   - QoS 1 100 B events from D devices and from 10 devices (msg/s and
#     broker CPU per message), QoS 1 16 KiB, QoS 0 100 B;
#   - config delivery p99 at RATE updates/s and the admin call's own p99
#     (Passerelle only).
#
# Everything runs in a temporary folder on free ports and is stopped at
# the end. Tunables (environment): N (connections, 19000: the file limit
# is 20,000), D (devices for telemetry/config, 1000), T (seconds of each
# timed run, 10s), C (concurrent connects, 128), WINDOW (QoS 1 in flight
# per device, 4), WINDOW0 (QoS 0 messages between pings, 32), ROUNDS
# (connect/disconnect rounds before the churn figure, 4), RATE (config
# updates/s, 500), RUNS (how many times the whole set runs, 1; the table
# shows medians and ranges), PARTS (which parts run, "idle tls connect
# telemetry config"; e.g. PARTS=telemetry for the QoS figures alone),
# KEEP=1 keeps the folder (logs, key, certificates, results.txt),
# PGURL (a PostgreSQL URL: the bridge and the manager then share a schema
# of their own there, made and dropped by the script; without it they
# share one SQLite file, whose cross-process write lock holds the admin
# calls up, as the README says),
# PROFILE=1 takes a 5 s CPU profile of the bridge in each of its
# telemetry runs (profile-<label>-run<N>.pb.gz in the folder, which is
# kept: go tool pprof -top bin/bridge profile-....pb.gz).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-19000}
D=${D:-1000}
T=${T:-10s}
C=${C:-128}
WINDOW=${WINDOW:-4}
WINDOW0=${WINDOW0:-32}
ROUNDS=${ROUNDS:-4}
RATE=${RATE:-500}
RUNS=${RUNS:-1}
PARTS=" ${PARTS:-idle tls connect telemetry config} "
PROFILE=${PROFILE:-}
if [[ -n $PROFILE ]]; then KEEP=1; fi
part() { [[ $PARTS == *" $1 "* ]]; }

work=$(mktemp -d /tmp/passerelle-bench.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			# A Go process prints every goroutine's stack on SIGQUIT: the
			# dump lands in its log, kept for whoever owns that binary.
			echo "process $p did not stop within 10 s of SIGTERM: SIGQUIT (goroutine dump in its log)" >&2
			kill -QUIT "$p" 2>/dev/null || true
			sleep 1
			kill -KILL "$p" 2>/dev/null || true
			KEEP=1
		fi
		wait "$p" 2>/dev/null || true
	done
	if declare -F drop_schema >/dev/null; then drop_schema; fi
	if [[ -z ${KEEP:-} ]]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "nothing listens on port $1; logs in $work" >&2
	KEEP=1
	return 1
}
# stop_pid ends one process this script started: SIGTERM, and after 10 s
# SIGQUIT (a Go process prints its goroutines' stacks into its log).
stop_pid() {
	local p=$1
	kill -TERM "$p" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$p" 2>/dev/null; then
		echo "process $p did not stop within 10 s of SIGTERM: SIGQUIT (goroutine dump in its log)" >&2
		kill -QUIT "$p" 2>/dev/null || true
		sleep 1
		kill -KILL "$p" 2>/dev/null || true
		KEEP=1
	fi
	wait "$p" 2>/dev/null || true
	local q=()
	for x in "${pids[@]}"; do [[ $x == "$p" ]] || q+=("$x"); done
	pids=("${q[@]}")
}
# busy prints the percentage of CPU time used over the next second, by
# anything (/proc/stat).
busy() {
	local a b
	read -r _ a1 a2 a3 a4 a5 a6 a7 _ </proc/stat
	sleep 1
	read -r _ b1 b2 b3 b4 b5 b6 b7 _ </proc/stat
	a=$((b1 + b2 + b3 + b5 + b6 + b7 - a1 - a2 - a3 - a5 - a6 - a7))
	b=$((a + b4 - a4))
	echo $((100 * a / (b > 0 ? b : 1)))
}
# quiet waits (up to two minutes) until the machine is idle (under 15% CPU
# over a second) before a run: other engineers may be compiling on the
# same 2 cores. The load average is printed with each result.
quiet() {
	local pct
	for _ in $(seq 120); do
		pct=$(busy)
		if ((pct < 15)); then break; fi
	done
	echo "# cpu busy ${pct}% before the run, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$work/results.txt" >&2
}

echo "building into $work/bin" >&2
mkdir -p "$work/bin" "$work/data" "$work/certs"
go build -o "$work/bin/" ./cmd/manager ./cmd/bridge ./cmd/passerelle-bench
bench="$work/bin/passerelle-bench"
"$bench" certs --out "$work/certs"

plain=$(free_port); tlsport=$(free_port); natsport=$(free_port); mgr=$(free_port)
mq=$(free_port); mqtls=$(free_port); nm=$(free_port); ops=$(free_port)
db="$work/data/passerelle.db"
if [[ -n ${PGURL:-} ]]; then
	schema="bench_$$"
	psql -q "$PGURL" -c "CREATE SCHEMA $schema"
	drop_schema() { psql -q "$PGURL" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE" || true; }
	sep='?'
	[[ $PGURL == *\?* ]] && sep='&'
	db="$PGURL${sep}search_path=$schema"
fi
: >"$work/results.txt"

# Passerelle: the bridge, with plain and TLS listeners, its embedded NATS
# exposed for the manager, the per-connection rate limits off (the
# telemetry run sends more than 100 messages/s per device), the
# per-address limit on handshakes off (the load comes from one address, C
# connects at a time), and room for N connections; then the manager.
start_passerelle() {
	"$work/bin/bridge" --mqtt-addr "127.0.0.1:$tlsport" --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key" \
		--mqtt-plain-addr "127.0.0.1:$plain" --data-dir "$work/data" --database-url "$db" \
		--nats-listen "127.0.0.1:$natsport" --message-rate 0 --byte-rate 0 --max-pending-per-address 0 \
		--max-connections $((N + 16)) --log-level warn ${PROFILE:+--ops-addr "127.0.0.1:$ops" --pprof} 2>>"$work/bridge.log" &
	bridge_pid=$!
	pids+=("$bridge_pid")
	wait_port "$natsport"
	wait_port "$plain"
	"$work/bin/manager" --listen "127.0.0.1:$mgr" --data-dir "$work/data" --database-url "$db" \
		--insecure-no-auth --nats-url "nats://127.0.0.1:$natsport" --log-level warn 2>>"$work/manager.log" &
	manager_pid=$!
	pids+=("$manager_pid")
	wait_port "$mgr"
}

cat >"$work/mosquitto.conf" <<CONF
# The fair comparison of design.md: Nagle off, a deep QoS 1 queue.
per_listener_settings false
# Run as root it would switch to the mosquitto user, which cannot read the
# certificates in our private temp folder.
user $(id -un)
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 10000
listener $mq 127.0.0.1
listener $mqtls 127.0.0.1
certfile $work/certs/server.pem
keyfile $work/certs/server.key
CONF
start_mosquitto() {
	mosquitto -c "$work/mosquitto.conf" 2>>"$work/mosquitto.log" &
	mq_pid=$!
	pids+=("$mq_pid")
	wait_port "$mq"
}

# nats-server (go.mod's version, inside passerelle-bench): one MQTT
# listener, plain or (with "tls") over TLS, JetStream in its own folder.
start_nats() {
	local tls=()
	if [[ ${1:-} == tls ]]; then tls=(--tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key"); fi
	"$bench" nats-mqtt --mqtt "127.0.0.1:$nm" --store "$work/nats-peer" "${tls[@]}" >>"$work/nats.log" 2>&1 &
	nats_pid=$!
	pids+=("$nats_pid")
	wait_port "$nm"
}

start_all() {
	start_passerelle
	start_mosquitto
	start_nats "${1:-}"
	echo "# brokers: passerelle bridge $bridge_pid (manager $manager_pid), mosquitto $mq_pid, nats-server $nats_pid ${1:-plain}" | tee -a "$work/results.txt" >&2
}
stop_all() {
	stop_pid "$nats_pid"
	stop_pid "$mq_pid"
	stop_pid "$manager_pid"
	stop_pid "$bridge_pid"
}

# measure runs one scenario, after waiting for a quiet machine, and runs
# it again (up to 3 times) when other processes used more than 3 CPU-seconds
# during it (other_cpu_s): such a figure measures the neighbours, and is
# kept in results.txt only as a comment. (Passerelle's telemetry run itself
# shows ~2 s there: kernel threads writing back the JetStream file store
# and the SQLite WAL.)
profile_to="" # set by pb: where measure puts the bridge's CPU profile
measure() {
	local out other prof
	for try in 1 2 3; do
		quiet
		prof=""
		if [[ -n $profile_to ]]; then
			# Two seconds in, when the devices are connected and sending;
			# a try run again overwrites it.
			(sleep 2 && curl -fsS -o "$profile_to" "http://127.0.0.1:$ops/debug/pprof/profile?seconds=5") &
			prof=$!
		fi
		if ! out=$("$bench" "$@" 2>>"$work/bench.log"); then
			if [[ -n $prof ]]; then wait "$prof" || true; fi
			echo "# failed: passerelle-bench $1 ${*:2} (see $work/bench.log)" | tee -a "$work/results.txt" >&2
			tail -3 "$work/bench.log" >&2
			KEEP=1
			last=""
			return 0
		fi
		if [[ -n $prof ]]; then wait "$prof" || echo "# no profile for $2 $3 (curl failed)" >&2; fi
		other=$(grep -o 'other_cpu_s=[0-9.]*' <<<"$out" | cut -d= -f2 || true)
		if [[ -z $other ]] || awk "BEGIN{exit !($other <= 3)}" || ((try == 3)); then
			echo "$out" | tee -a "$work/results.txt"
			last=$out
			return 0
		fi
		echo "# disturbed (other_cpu_s=$other), try $try of 3: $out" | tee -a "$work/results.txt" >&2
	done
}
# pb, pm and pn run a scenario on Passerelle, Mosquitto and nats-server;
# their first argument is "plain" or "tls".
pb() {
	local mode=$1
	shift
	if [[ $mode == tls ]]; then
		measure "$@" --mqtt "127.0.0.1:$tlsport" --tls --ca "$work/certs/ca.pem" --target-pid "$bridge_pid" --manager "127.0.0.1:$mgr" --key "$work/device.key"
	else
		if [[ -n $PROFILE && $1 == telemetry ]]; then profile_to="$work/profile-$3-run$run.pb.gz"; fi
		measure "$@" --mqtt "127.0.0.1:$plain" --target-pid "$bridge_pid" --manager "127.0.0.1:$mgr" --key "$work/device.key"
		profile_to=""
	fi
}
pm() {
	local mode=$1
	shift
	if [[ $mode == tls ]]; then
		measure "$@" --plain --mqtt "127.0.0.1:$mqtls" --tls --ca "$work/certs/ca.pem" --target-pid "$mq_pid"
	else
		measure "$@" --plain --mqtt "127.0.0.1:$mq" --target-pid "$mq_pid"
	fi
}
pn() {
	local mode=$1
	shift
	if [[ $mode == tls ]]; then
		measure "$@" --plain --name nats --mqtt "127.0.0.1:$nm" --tls --ca "$work/certs/ca.pem" --target-pid "$nats_pid"
	else
		measure "$@" --plain --name nats --mqtt "127.0.0.1:$nm" --target-pid "$nats_pid"
	fi
}
# all3 runs one figure on the three brokers, alternating.
all3() {
	pb "$@"
	pm "$@"
	pn "$@"
}
# idle3 measures memory per idle connection on fresh processes (after
# connection churn a Go process keeps freed heap, and new connections
# would reuse it without growing RSS, flattering the figure), then again
# after ROUNDS rounds of connect/disconnect, counted from the fresh
# process's RSS.
idle3() {
	local mode=$1 f b
	for f in pb pm pn; do
		"$f" "$mode" idle --label "idle-$mode-$N" -n "$N" -c "$C"
		b=$(grep -o 'rss_before_kib=[0-9]*' <<<"$last" | cut -d= -f2 || true)
		eval "base_$f=$b"
	done
	for f in pb pm pn; do
		b="base_$f"
		"$f" "$mode" idle --label "idle-$mode-$N-churn$ROUNDS" -n "$N" -c "$C" --rounds "$ROUNDS" --baseline-kib "${!b:-0}"
	done
}

for run in $(seq "$RUNS"); do
	echo "# run $run of $RUNS" | tee -a "$work/results.txt" >&2
	# 1. Plain: idle memory on fresh processes. The first Passerelle run
	# also provisions the N devices (the others reuse them).
	if part idle; then
		start_all plain
		idle3 plain
		stop_all
	fi
	# 2. TLS: idle memory on fresh processes, then the TLS connect rate.
	if part tls; then
		start_all tls
		idle3 tls
		all3 tls connect --label connect-tls -n "$N" -c "$C"
		stop_all
	fi
	# 3. Plain connects and telemetry, then config delivery.
	if part connect || part telemetry || part config; then
		start_all plain
		if part connect; then
			all3 plain connect --label connect-plain -n "$N" -c "$C"
		fi
		if part telemetry; then
			all3 plain telemetry --label "qos1-100B-$D" -d "$D" -t "$T" --window "$WINDOW"
			all3 plain telemetry --label qos1-100B-10 -d 10 -t "$T" --window "$WINDOW"
			all3 plain telemetry --label "qos1-16KiB-$D" -d "$D" -t "$T" --window "$WINDOW" --size 16384
			all3 plain telemetry --label "qos0-100B-$D" -d "$D" -t "$T" --window "$WINDOW0" --qos 0
		fi
		if part config; then
			# At most one update per device per second (the manager's rule).
			pb plain config --label "config-$RATE" -d $((D > ${RATE%.*} ? D : ${RATE%.*})) -t "$T" --rate "$RATE"
		fi
		stop_all
	fi
done

echo
echo "== results (N=$N D=$D T=$T C=$C RUNS=$RUNS; load $(cut -d' ' -f1-3 /proc/loadavg)) =="
grep -v '^# cpu busy' "$work/results.txt"
echo
"$bench" report "$work/results.txt"
