#!/usr/bin/env bash
# Records real Envoy admin output for benchmarks: starts Envoy with N static clusters (all
# pointing at the sample app), sends one request through each so every cluster has used
# stats, waits for a stats flush (histograms), and saves
#   .run/bench/envoy-N.prom   GET /stats?format=prometheus&text_readouts   (every stat)
# Usage: bench/record-envoy.sh N [N ...]     (default: 1 200 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY=$(scripts/install-peers.sh envoy | tail -1)
cargo build -q -p meshmetric-tests --bin meshmetric-sample-app
OUT=.run/bench; mkdir -p "$OUT"
APP_PORT=28080 ADMIN=29911 LISTEN=29912
target/debug/meshmetric-sample-app --address 127.0.0.1:$APP_PORT > "$OUT/app.log" 2>&1 &
APP=$!
trap 'kill $APP 2>/dev/null || true; [ -n "${EP:-}" ] && kill $EP 2>/dev/null || true' EXIT
for N in "${@:-1 200 1000}"; do
  for n in $N; do
    bench/envoy-bootstrap.py "$n" "$APP_PORT" "$ADMIN" "$LISTEN" > "$OUT/envoy-$n.json"
    "$ENVOY" -c "$OUT/envoy-$n.json" --disable-hot-restart --concurrency 1 -l error > "$OUT/envoy-$n.log" 2>&1 &
    EP=$!
    until curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; do sleep 0.1; done
    curl -s -o /dev/null "http://127.0.0.1:$LISTEN/c[0-$((n-1))]"
    sleep 6   # one stats flush (5 s) fills the histograms
    curl -s "http://127.0.0.1:$ADMIN/stats?format=prometheus&text_readouts" > "$OUT/envoy-$n.prom"
    kill $EP; wait $EP 2>/dev/null || true; EP=
    echo "$OUT/envoy-$n.prom: $(wc -c < "$OUT/envoy-$n.prom") bytes, $(grep -vc '^#' "$OUT/envoy-$n.prom") samples"
  done
done
