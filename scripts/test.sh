#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the project into ./.venv,
# then pytest. The suite itself installs a real Nutshell mint (cached outside the
# repo, in ${COCO_CACHE_DIR:-~/.cache/coco-actors}) and starts it on 127.0.0.1.
# Extra arguments go to pytest, e.g. ./scripts/test.sh tests/crypto -q
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv "[test]"
exec .venv/bin/python -m pytest "$@"
