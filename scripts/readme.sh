#!/usr/bin/env bash
# Runs the README's recipes as written, in order, from the repository root,
# so that what a new user copies works. A recipe is a fenced block preceded
# by a marker line:
#
#   <!-- recipe -->                          run the ```sh block; it must exit 0
#   <!-- recipe: go -->                      go run the ```go block (a main package) in
#                                            this module
#   <!-- recipe: python -->                  run the ```python block with /usr/bin/python3
#   <!-- recipe: bg NAME until "TEXT" -->    start the block in the background and
#                                            wait until its output shows TEXT
#   <!-- recipe: stop NAME -->               stop that background block (SIGINT to
#                                            its process group), wait for it to exit
#
# Background blocks still running at the end are stopped. Blocks without a
# marker are not run (the ones that cannot run here, such as docker compose).
# It needs a checkout without a passerelle-data folder (the recipes make it)
# and Go; it puts Go's bin folder on PATH, as the README tells a user to.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"

if [[ -e passerelle-data ]]; then
  echo "readme.sh: ./passerelle-data exists; move it aside (the recipes make their own)" >&2
  exit 1
fi
work=$(mktemp -d)
declare -A pids logs
cleanup() {
  local name
  for name in "${!pids[@]}"; do stop_bg "$name" || true; done
  rm -rf "$work" passerelle-data bridge-data config_log.csv .readme
}
trap cleanup EXIT

stop_bg() { # name
  local pid=${pids[$1]:-}
  [[ -n "$pid" ]] || return 0
  kill -INT -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "readme.sh: $1 did not stop within 20 s of SIGINT; its processes, then its output:" >&2
    dump_bg "$1"
    kill -KILL -- "-$pid" 2>/dev/null || true
    unset "pids[$1]"
    return 1
  fi
  wait "$pid" 2>/dev/null || true
  unset "pids[$1]"
}

# dump_bg shows what a background block that never got ready is doing: its
# processes, then its output after SIGQUIT, on which a Go program prints
# every goroutine's stack before it exits.
dump_bg() { # name
  local pid=${pids[$1]:-}
  [[ -n "$pid" ]] || return 0
  ps -o pid,stat,etime,time,args --forest --sid "$pid" >&2 || true
  kill -QUIT -- "-$pid" 2>/dev/null || true
  sleep 2
  cat "${logs[$1]}" >&2
}

# Split the README into numbered recipe files: NN.kind[.name], with the
# wait text in NN.until.
awk -v dir="$work" '
  /^<!-- recipe/ {
    spec = $0; sub(/^<!-- recipe:? ?/, "", spec); sub(/ ?-->$/, "", spec)
    pending = 1; next
  }
  pending && /^```(sh|go|python)$/ {
    n++; file = sprintf("%s/%02d", dir, n); print spec > (file ".spec"); close(file ".spec")
    inblock = 1; pending = 0; next
  }
  pending && /^<!-- recipe/ { next }
  inblock && /^```$/ { inblock = 0; close(file ".txt"); next }
  inblock { print > (file ".txt"); next }
  pending && spec ~ /^stop / { n++; file = sprintf("%s/%02d", dir, n); print spec > (file ".spec"); close(file ".spec"); pending = 0 }
' README.md

count=0
for spec in "$work"/*.spec; do
  n=${spec%.spec}
  read -r kind name rest < "$spec" || true
  count=$((count + 1))
  case "$kind" in
    "")
      echo "== recipe $(basename "$n"):"; sed 's/^/   /' "$n.txt"
      bash -euo pipefail "$n.txt" || { echo "readme.sh: recipe $(basename "$n") failed" >&2; exit 1; }
      ;;
    go)
      echo "== recipe $(basename "$n") (Go program)"
      rm -rf .readme && mkdir .readme && cp "$n.txt" .readme/main.go # a dot folder: ./... skips it
      go run ./.readme || { echo "readme.sh: the Go program of recipe $(basename "$n") failed" >&2; exit 1; }
      ;;
    python)
      echo "== recipe $(basename "$n") (Python)"
      /usr/bin/python3 "$n.txt" || { echo "readme.sh: the Python of recipe $(basename "$n") failed" >&2; exit 1; }
      ;;
    bg)
      until_text=$(sed -E 's/^bg [^ ]+ until "(.*)"$/\1/' "$spec")
      echo "== recipe $(basename "$n") ($name, in the background, until \"$until_text\"):"; sed 's/^/   /' "$n.txt"
      logs[$name]="$work/$name.log"
      setsid bash -euo pipefail "$n.txt" > "${logs[$name]}" 2>&1 &
      pids[$name]=$!
      for i in $(seq 1 1800); do # compiles may take minutes on a cold cache
        grep -qF -- "$until_text" "${logs[$name]}" && break
        if ! kill -0 "${pids[$name]}" 2>/dev/null; then
          echo "readme.sh: $name exited before \"$until_text\":" >&2; cat "${logs[$name]}" >&2; exit 1
        fi
        sleep 0.2
      done
      grep -qF -- "$until_text" "${logs[$name]}" || { echo "readme.sh: no \"$until_text\" from $name; its processes, then its output (a Go program's goroutines on SIGQUIT):" >&2; dump_bg "$name"; exit 1; }
      ;;
    stop)
      echo "== stop $name"
      stop_bg "$name" || exit 1
      ;;
    *)
      echo "readme.sh: unknown recipe marker \"$kind\" in $spec" >&2; exit 1
      ;;
  esac
done
echo "readme.sh: $count recipes ran"
