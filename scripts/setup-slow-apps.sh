#!/usr/bin/env bash
# The apps of the opt-in slower test group (scripts/test.sh --slow), each tried in docs/apps.md:
# Datasette, Shiny for Python, TensorBoard and MLflow, in their own environment .cache/slow-apps
# (rproxy starts them as commands, so they need not share .venv's packages; MLflow alone pulls
# ~150 packages). Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .cache/slow-apps/bin/python ] || "$python" -m venv .cache/slow-apps
.cache/slow-apps/bin/python -m pip install --quiet --disable-pip-version-check \
  "datasette>=0.65,<1" "shiny>=1.8,<2" "tensorboard>=2.21,<3" "mlflow>=3.18,<4"
