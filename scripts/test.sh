#!/usr/bin/env bash
# Set up everything the tests need, then lint, type-check and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k prefix
# --slow (first argument) also runs the opt-in slower group (tests marked slow: apps that take
# minutes to install or start, docs/apps.md), after installing its apps (scripts/setup-slow-apps.sh,
# scripts/setup-code-server.sh);
# without it those tests are reported as skipped. Only that group: scripts/test.sh --slow -m slow
set -euo pipefail
cd "$(dirname "$0")/.."

slow=0
if [ "${1:-}" = "--slow" ]; then
  slow=1
  shift
fi

# Debian packages the tests use, installed only when missing: chromium (tests/test_browser.py),
# noVNC and TigerVNC's Xvnc (tests/plugins/test_vnc.py, the desktop test), curl and nginx (the
# docs' commands, tests/test_docs.py)
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/novnc/vnc.html ] || missing+=(novnc)
command -v Xvnc >/dev/null 2>&1 || missing+=(tigervnc-standalone-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)  # the documentation's commands (tests/test_docs.py)
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)  # docs/deploy.md's nginx in front of rproxy
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install them (apt-get install ${missing[*]}) for the tests" >&2
    exit 1
  fi
fi

scripts/setup.sh
if [ "$slow" = 1 ]; then
  scripts/setup-slow-apps.sh
  scripts/setup-code-server.sh  # ~5 min the first time: it builds native modules
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
RPROXY_SLOW_TESTS=$slow .venv/bin/python -m pytest "$@"
