#!/usr/bin/env bash
# Set up, start the bundled demo app on 127.0.0.1 and rproxy on port 8080 in front of it.
# Extra arguments go to rproxy, e.g. scripts/demo.sh --prefix /user/me/
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
log=$(mktemp)
.venv/bin/python -m examples.demo.app --host 127.0.0.1 --port 0 >"$log" &
demo=$!
trap 'kill "$demo" 2>/dev/null; rm -f "$log"' EXIT

for _ in $(seq 100); do
  port=$(sed -n 's|^demo listening on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
  [ -n "$port" ] && break
  kill -0 "$demo" 2>/dev/null || { echo "demo: the demo app failed to start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "demo: the demo app did not start within 10 s" >&2; exit 1; }

echo "demo app on 127.0.0.1:$port; open http://localhost:8080/ (Ctrl-C stops both)"
.venv/bin/rproxy --destport "$port" --port 8080 "$@"
