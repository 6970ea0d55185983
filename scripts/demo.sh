#!/usr/bin/env bash
# Set up, then run the bundled demo app behind rproxy on port 8080 (rproxy starts and supervises it).
# Extra arguments go to rproxy, e.g. scripts/demo.sh --prefix /user/me/
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "open http://localhost:8080/ (Ctrl-C stops rproxy and the demo app)"
exec .venv/bin/rproxy --port 8080 "$@" -- .venv/bin/python -m examples.demo.app --host 127.0.0.1 --port {port}
