#!/usr/bin/env bash
# Runs the benchmarks (issue 7) on a fresh machine: installs the project into ./.venv,
# then bench/run.py, which installs the dev mint (cached in ${COCO_CACHE_DIR:-~/.cache/coco-actors}),
# starts it on 127.0.0.1, runs every scenario and writes bench-results.json.
# Extra arguments go to bench/run.py, e.g. ./scripts/bench.sh --quick --only swaps
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv ""
# bench/ imports the dev mint harness from devtools/ (not part of the installed package)
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python bench/run.py "$@"
