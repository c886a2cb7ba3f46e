#!/usr/bin/env bash
# Strict checks, run by CI before the tests: ruff over the repo, mypy --strict over the
# installed package and the CLI. Installs the project and the pinned checkers into ./.venv.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv "[test,check]"
.venv/bin/ruff check .
.venv/bin/mypy --strict coco_actors cli.py
