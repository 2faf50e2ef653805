#!/usr/bin/env bash
# The web console's end-to-end test in headless Chromium (Debian's chromium,
# driven by playwright-core from services/console/web): builds passerelle and
# the test's device helper, seeds a registry of 100,000 devices straight
# into a fresh data folder's SQLite store, adds a viewer token, starts
# `passerelle serve` on free ports (ops and HTTP bridge off), runs
# services/console/web/e2e/console.test.mjs against it, and stops the server.
# Screenshots of every page, light and dark, go to $CONSOLE_ARTIFACTS
# (default services/console/screenshots/).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

chromium=${CONSOLE_CHROMIUM:-/usr/bin/chromium}
[[ -x "$chromium" ]] || { echo "console: $chromium not found (apt-get install chromium)" >&2; exit 1; }
command -v node >/dev/null || { echo "console: node is needed" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/passerelle ./services/console/e2e/helper
npm ci --prefix services/console/web --no-audit --no-fund --ignore-scripts --loglevel=error

data="$work/data"
"$work/bin/passerelle" init --data-dir "$data" 2>/dev/null
# A viewer token, beside the admin token init made.
viewer="psl_viewer_$(python3 -c 'import secrets; print(secrets.token_hex(20))')"
echo "console-viewer viewer sha256:$(printf '%s' "$viewer" | sha256sum | cut -d' ' -f1)" >>"$data/tokens"

devices=${CONSOLE_DEVICES:-100000}
"$work/bin/helper" seed -db "$data/passerelle.db" -registry projects/console-e2e/locations/us-central1/registries/fleet -n "$devices"

admin=127.0.0.1:$(free_port); mqtt=127.0.0.1:$(free_port); hub=127.0.0.1:$(free_port); pubsub=127.0.0.1:$(free_port)
"$work/bin/passerelle" serve --data-dir "$data" --admin-addr "$admin" --mqtt-addr "$mqtt" --hub-addr "$hub" \
  --pubsub-addr "$pubsub" --http-bridge-addr "" --ops-addr "" >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 150); do
  grep -q "Passerelle is ready" "$work/serve.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; echo "console: passerelle serve exited at start" >&2; exit 1; }
  sleep 0.1
done
grep -q "Passerelle is ready" "$work/serve.log" || { cat "$work/serve.log"; echo "console: not ready after 15 s" >&2; exit 1; }

artifacts=${CONSOLE_ARTIFACTS:-$PWD/services/console/screenshots}
mkdir -p "$artifacts"
status=0
CONSOLE_URL="http://$admin/console/" ADMIN_TOKEN="$(cat "$data/admin.token")" VIEWER_TOKEN="$viewer" \
  HELPER="$work/bin/helper" WORK="$work" CA_FILE="$data/ca.pem" MQTT_ADDR="$mqtt" HUB_ADDR="$hub" \
  SEEDED_REGISTRY=projects/console-e2e/locations/us-central1/registries/fleet SEEDED_DEVICES="$devices" \
  CHROMIUM="$chromium" ARTIFACTS="$artifacts" \
  timeout 600 node services/console/web/e2e/console.test.mjs || status=$?
if (( status != 0 )); then
  echo "console: the browser test failed ($status); the server's log ends with:" >&2
  tail -40 "$work/serve.log" >&2
  exit "$status"
fi
# No token in the server's log.
if grep -qF -- "$(cat "$data/admin.token")" "$work/serve.log" || grep -qF -- "$viewer" "$work/serve.log"; then
  echo "console: a token appears in the server's log" >&2
  exit 1
fi

kill -INT "$server_pid"
for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
wait "$server_pid" && status=0 || status=$?
server_pid=""
[[ $status -eq 0 ]] || { tail -20 "$work/serve.log"; echo "console: passerelle serve exited with $status" >&2; exit 1; }
echo "console: ok (screenshots in $artifacts)"
