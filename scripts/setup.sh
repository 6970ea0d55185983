#!/usr/bin/env bash
# Set up a development environment in .venv: rproxy (editable) and its test tools.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: rproxy needs Python 3.11 or newer ($python is $("$python" --version))" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
# the example third-party rewriter (examples/example-rewriter): the tests check that it is found
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e examples/example-rewriter
# JupyterHub 5.x beside .venv's newest hub, for the end-to-end hub test on both
# (tests/test_jupyterhub_e2e.py): the hub and the rproxy it spawns run from this environment
[ -x .cache/hub5/bin/python ] || "$python" -m venv .cache/hub5
.cache/hub5/bin/python -m pip install --quiet --disable-pip-version-check -e . "jupyterhub>=5,<6" \
  "jupyterhub-idle-culler>=1.4" "jupyterlab>=4" "notebook>=7" "ipykernel>=6"
# configurable-http-proxy (npm), JupyterHub's proxy, for the end-to-end hub test
# (tests/test_jupyterhub_e2e.py); needs node and npm
if [ ! -x .cache/node/node_modules/.bin/configurable-http-proxy ]; then
  if command -v npm >/dev/null 2>&1; then
    npm install --silent --no-audit --no-fund --prefix .cache/node configurable-http-proxy@5 >/dev/null
  else
    echo "setup: npm is missing; install nodejs and npm for the JupyterHub test" >&2
    exit 1
  fi
fi
