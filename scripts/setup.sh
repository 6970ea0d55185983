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
