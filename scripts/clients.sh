#!/usr/bin/env bash
# The hub clients end to end: builds passerelle and the TypeScript and Java
# clients, starts `passerelle serve` on free ports in a temporary data folder,
# runs the gateway demo of each client (clients/{python,ts,java}/examples)
# unattended against it and checks its output as scripts/e2e.sh checks
# cmd/hubdemo's, stops the server, then runs each client's tests (which
# start and restart servers of their own, and a cmd/hub over TLS).
#
#   scripts/clients.sh            (make tools first: it installs clients/ts's packages)
#
# Needs Debian's python3-grpcio and python3-protobuf (PYTHON, default
# /usr/bin/python3), node and npm, javac and the Java jars that
# clients/java/build.sh names. CLIENTS=python,ts,java picks some.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-/usr/bin/python3}"
CLIENTS="${CLIENTS:-python,ts,java}"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf 'clients: %s\n' "$*"; }
fail() { printf 'clients: %s\n' "$*" >&2; exit 1; }
wants() { [[ ",$CLIENTS," == *",$1,"* ]]; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

start=$(date +%s%N)
CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/passerelle ./cmd/hub
export PASSERELLE_BIN="$work/bin/passerelle" PASSERELLE_HUB_BIN="$work/bin/hub"
if wants python; then
  "$PYTHON" -c 'import grpc, google.protobuf' 2>/dev/null ||
    fail "$PYTHON lacks grpc or protobuf: apt-get install python3-grpcio python3-protobuf (or set PYTHON)"
fi
if wants ts; then
  [[ -x clients/ts/node_modules/.bin/tsc ]] || npm ci --prefix clients/ts --no-audit --no-fund --ignore-scripts --loglevel=error
  npm run --prefix clients/ts --silent build
fi
if wants java; then clients/java/build.sh build; fi
say "built passerelle and the clients in $(ms_since "$start") ms"

admin=127.0.0.1:$(free_port); mqtt=127.0.0.1:$(free_port); hub=127.0.0.1:$(free_port); pubsub=127.0.0.1:$(free_port)
"$PASSERELLE_BIN" serve --data-dir "$work/data" --admin-addr "$admin" --mqtt-addr "$mqtt" --hub-addr "$hub" --pubsub-addr "$pubsub" --http-bridge-addr "" \
  >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "Passerelle is ready" "$work/serve.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; fail "passerelle serve exited at start"; }
  sleep 0.1
done
grep -q "Passerelle is ready" "$work/serve.log" || { cat "$work/serve.log"; fail "passerelle serve not ready after 10 s"; }

# demo NAME COMMAND...: run a gateway demo unattended and check its output.
demo() {
  local name=$1; shift
  local out="$work/demo-$name.out" t0
  t0=$(date +%s%N)
  say "gateway demo: $name"
  rm -f "$work/data/config_log.csv"
  (cd "$work" && timeout 180 "$@" --admin-addr "$admin" --hub-addr "$hub" --data-dir "$work/data" \
    --yes --set-config device-config --listen 5s) | tee "$out" ||
    { tail -20 "$work/serve.log" >&2; fail "the $name demo failed"; }
  local want
  for want in "Created registry" "Device Bound!" \
    "Received message 'device-config' on topic '/devices/test-device-noauthbind/config' with Qos 1" \
    "Publishing message 15/15" "ListDeviceStates: 10 states kept, the newest" "payload-15'" \
    "Device unbound: {}" "Delete registry"; do
    grep -qF -- "$want" "$out" || { tail -20 "$work/serve.log" >&2; fail "the $name demo did not print: $want"; }
  done
  grep -q "device-config" "$work/data/config_log.csv" || fail "the $name demo's <data-dir>/config_log.csv lacks the config"
  # The demo deleted its gateway through the admin API: the hub drops the
  # connection and the key at once.
  for _ in $(seq 1 50); do [[ -z "$(ls -A "$work/data/hub-keys")" ]] && break; sleep 0.1; done
  [[ -z "$(ls -A "$work/data/hub-keys")" ]] || { ls -l "$work/data/hub-keys" >&2; fail "the $name demo's gateway key is still in hub-keys/"; }
  say "gateway demo: $name ok in $(ms_since "$t0") ms"
}

if wants python; then demo python "$PYTHON" "$PWD/clients/python/examples/gateway_demo.py"; fi
if wants ts; then demo ts node "$PWD/clients/ts/dist/examples/gateway-demo.js"; fi
if wants java; then demo java "$PWD/clients/java/build.sh" run-demo; fi
if grep -q "not Authorized" "$work/serve.log"; then
  grep "not Authorized" "$work/serve.log" >&2
  fail "the hub reconnected a deleted gateway"
fi

kill -INT "$server_pid"
for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$server_pid" 2>/dev/null && fail "passerelle serve still running 15 s after SIGINT"
wait "$server_pid" && status=0 || status=$?
server_pid=""
[[ $status -eq 0 ]] || { tail -20 "$work/serve.log"; fail "passerelle serve exited with $status"; }

# Each client's tests: an error's status, a cancelled stream, a reconnect
# after the hub restarts, TLS (cmd/hub), against servers they start
# themselves.
if wants python; then
  t0=$(date +%s%N)
  "$PYTHON" -m unittest discover -s clients/python/tests -v
  say "python tests ok in $(ms_since "$t0") ms"
fi
if wants ts; then
  t0=$(date +%s%N)
  npm test --prefix clients/ts --silent
  say "ts tests ok in $(ms_since "$t0") ms"
fi
if wants java; then
  t0=$(date +%s%N)
  clients/java/build.sh run-tests
  say "java tests ok in $(ms_since "$t0") ms"
fi
say "ok in $(ms_since "$start") ms"
