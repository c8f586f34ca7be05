#!/usr/bin/env bash
# Which series Envoy's OpenTelemetry stat sink sends, against Envoy's own `usedonly` Prometheus
# text: one Envoy with N used clusters (default 5) pushing every second to
# bench/otel-sink-compare.py's receiver; after a push, the text is read and compared with the
# last push series by series (names converted as the text names them).
#   bench/otel-sink-series.sh [N clusters, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
ENVOY=$(scripts/install-peers.sh envoy | tail -1)
scripts/install-peers.sh otlp >/dev/null
cargo build -q -p meshmetric-tests --bin meshmetric-sample-app
OUT=.run/otel-sink-series; rm -rf "$OUT"; mkdir -p "$OUT"
APP=28480 ADMIN=29981 LISTEN=29982 SINK=29983
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
target/debug/meshmetric-sample-app --address 127.0.0.1:$APP > "$OUT/app.log" 2>&1 & PIDS+=($!)
.venv/otlp/bin/python bench/otel-sink-compare.py receive $SINK "$OUT/push.json" > "$OUT/receiver.log" 2>&1 & PIDS+=($!)
bench/envoy-bootstrap.py "$N" $APP $ADMIN $LISTEN otel $SINK > "$OUT/envoy.json"
"$ENVOY" -c "$OUT/envoy.json" --disable-hot-restart --concurrency 1 -l error --base-id "$RANDOM" > "$OUT/envoy.log" 2>&1 & PIDS+=($!)
until curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; do sleep 0.2; done
curl -s -o /dev/null "http://127.0.0.1:$LISTEN/c[0-$((N-1))]"
sleep 6   # histograms merged and at least one push with the traffic
curl -s "http://127.0.0.1:$ADMIN/stats?format=prometheus&text_readouts&usedonly" > "$OUT/usedonly.prom"
sleep 1.5 # the next push
cp "$OUT/push.json" "$OUT/push-compared.json"
python3 bench/otel-sink-compare.py compare "$OUT/usedonly.prom" "$OUT/push-compared.json"
