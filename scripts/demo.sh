#!/usr/bin/env bash
# The main job on a fresh machine: installs the project into ./.venv, then runs the
# wallet *service* end to end: a local development mint (Nutshell with FakeWallet on
# 127.0.0.1, installed once into ~/.cache/coco-actors) and a second one as the payee of
# a lightning invoice, two `coco serve` daemons in the background, and the `coco` CLI
# driving them through invoice -> send -> receive -> rollback -> pay -> transfer ->
# locked send -> payment request -> a backend over TCP (token, idempotency key, events,
# webhooks, audit) -> usd at the same mint -> consolidation -> history, every balance
# checked to the sat. The
# driver (devtools/demo.py) prints each command it runs and stops the daemons and the
# mints on any exit (error, Ctrl-C, SIGTERM). Extra
# arguments go to it: ./scripts/demo.sh --fee 0
set -euo pipefail
source "$(dirname "$0")/venv.sh"
ensure_venv ""
exec .venv/bin/python -m devtools.demo "$@"
