#!/usr/bin/env bash
# The main job on a fresh machine: installs the project into ./.venv, then runs the
# wallet end to end against a local development mint (installed and started on
# 127.0.0.1 by the demo itself, stopped when it ends). Extra arguments go to
# `coco demo`, e.g. ./scripts/demo.sh --fee 0
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/coco demo "$@"
