# Sourced by the scripts in this folder: make ./.venv (with $PYTHON, default python3)
# if it is missing, and install the project into it with the given extras ("" or "[test]").
ensure_venv() {
  local extras=${1:-}
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
}
