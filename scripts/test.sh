#!/usr/bin/env bash
# Set up everything the tests need, then lint, type-check and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k prefix
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's chromium for the browser tests (tests/test_browser.py), only when it is missing
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing; install it (apt-get install chromium) for the browser tests" >&2
    exit 1
  fi
fi

scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
