#!/usr/bin/env bash
# Runs the benchmarks (issue 7) on a fresh machine: installs the project into ./.venv,
# then bench/run.py, which installs the dev mint (cached in ${COCO_CACHE_DIR:-~/.cache/coco-actors}),
# starts it on 127.0.0.1, runs every scenario and writes bench-results.json.
# Extra arguments go to bench/run.py, e.g. ./scripts/bench.sh --quick --only swaps
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python bench/run.py "$@"
