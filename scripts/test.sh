#!/usr/bin/env bash
# Set up everything the tests need, then lint, type-check and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k prefix
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
