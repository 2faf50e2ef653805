#!/usr/bin/env bash
# End-to-end check of a fresh install: builds the binaries, starts
# `passerelle serve` on free ports in a temporary data folder, runs the gateway
# demo unattended against it, checks the demo's output, runs Google's Node
# client libraries for Cloud IoT and Pub/Sub against it (clients/node/check.mjs,
# clients/node/pubsub.mjs; needs node and npm), then
# stops the server with SIGINT and checks that it exits cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/passerelle ./cmd/hubdemo
admin=127.0.0.1:$(free_port); mqtt=127.0.0.1:$(free_port); hub=127.0.0.1:$(free_port); ops=127.0.0.1:$(free_port); pubsub=127.0.0.1:$(free_port)

start=$(date +%s%N)
"$work/bin/passerelle" serve --data-dir "$work/data" --admin-addr "$admin" --mqtt-addr "$mqtt" --hub-addr "$hub" \
  --pubsub-addr "$pubsub" --pubsub-allow-unauthenticated --http-bridge-addr "" --ops-addr "$ops" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "Passerelle is ready" "$work/serve.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; echo "e2e: passerelle serve exited at start" >&2; exit 1; }
  sleep 0.1
done
grep -q "Passerelle is ready" "$work/serve.log" || { cat "$work/serve.log"; echo "e2e: not ready after 10 s" >&2; exit 1; }
echo "e2e: passerelle serve ready in $(( ($(date +%s%N) - start) / 1000000 )) ms, RSS $(awk '/VmRSS/ {print $2, $3}' /proc/$server_pid/status)"
for _ in $(seq 1 50); do curl -fsS "http://$ops/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$ops/readyz" || { cat "$work/serve.log"; echo "e2e: /readyz is not 200" >&2; exit 1; }

(cd "$work" && timeout 180 "$work/bin/hubdemo" --admin-addr "$admin" --hub-addr "$hub" --pubsub-addr "$pubsub" --data-dir "$work/data" \
  --yes --set-config device-config --listen 5s) | tee "$work/demo.out"

expect() {
  grep -qF -- "$1" "$work/demo.out" || { echo "e2e: the demo did not print: $1" >&2; cat "$work/serve.log" >&2; exit 1; }
}
expect "Created registry"
expect "Device Bound!"
expect "Received message 'device-config' on topic '/devices/test-device-noauthbind/config' with Qos 1"
expect "Publishing message 15/15"
expect "ListDeviceStates: 10 states kept, the newest"
expect "payload-15'"
expect "Topic policy: 1 binding(s), serviceAccount:cloud-iot@system.gserviceaccount.com may publish"
expect "Read 15 states from subscription projects/passerelle-demo/subscriptions/test-registry-"
expect "Device unbound: {}"
expect "Delete registry"
grep -q "device-config" "$work/data/config_log.csv" || { echo "e2e: <data-dir>/config_log.csv lacks the config" >&2; exit 1; }
# The demo deleted its gateway through the admin API: the hub drops the
# connection and the key at once, without trying to reconnect.
for _ in $(seq 1 50); do [[ -z "$(ls -A "$work/data/hub-keys")" ]] && break; sleep 0.1; done
[[ -z "$(ls -A "$work/data/hub-keys")" ]] || { ls -l "$work/data/hub-keys" >&2; echo "e2e: the deleted gateway's key is still in hub-keys/" >&2; exit 1; }
if grep -q "not Authorized" "$work/serve.log"; then grep "not Authorized" "$work/serve.log" >&2; echo "e2e: the hub reconnected the deleted gateway" >&2; exit 1; fi

# Google's Node client library (@google-cloud/iot) against the same server,
# over gRPC and REST: clients/node/check.mjs.
if command -v node >/dev/null && command -v npm >/dev/null; then
  start=$(date +%s%N)
  npm ci --prefix clients/node --no-audit --no-fund --ignore-scripts
  PASSERELLE_ADMIN_ADDR="$admin" PASSERELLE_TOKEN="$(cat "$work/data/admin.token")" \
    timeout 120 node clients/node/check.mjs || { tail -20 "$work/serve.log" >&2; echo "e2e: the Node client check failed" >&2; exit 1; }
  # Google's Node Pub/Sub client (@google-cloud/pubsub), the emulator way.
  PUBSUB_EMULATOR_HOST="$pubsub" timeout 120 node clients/node/pubsub.mjs ||
    { tail -20 "$work/serve.log" >&2; echo "e2e: the Node Pub/Sub client check failed" >&2; exit 1; }
  echo "e2e: Node client check (npm ci + check) took $(( ($(date +%s%N) - start) / 1000000 )) ms"
elif [[ "${CI:-}" == true ]]; then
  echo "e2e: node and npm are needed for the Node client check (clients/node) under CI=true" >&2
  exit 1
else
  echo "e2e: node or npm not found: skipping the Node client check (clients/node)"
fi

kill -INT "$server_pid"
for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server_pid" 2>/dev/null; then echo "e2e: passerelle serve still running 15 s after SIGINT" >&2; exit 1; fi
wait "$server_pid" && status=0 || status=$?
server_pid=""
[[ $status -eq 0 ]] || { tail -20 "$work/serve.log"; echo "e2e: passerelle serve exited with $status" >&2; exit 1; }
echo "e2e: ok"
