#!/usr/bin/env bash
# Whole-process cost of push input: one meshmetric-dp (release) beside a real Envoy with its
# OTLP receiver on, fed by examples/push_load.rs (OTLP/gRPC, a 10,000-series SDK-shaped request
# sent back to back) while its Prometheus endpoint is fetched once a second. Prints the added
# memory for 10,000 pushed series and the data points accepted per second of the plugin's CPU
# (utime+stime from /proc, so the load generator's own CPU is not counted).
#   bench/push.sh [seconds, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
ENVOY=$(scripts/install-peers.sh envoy | tail -1)
cargo build --release -q -p meshmetric-dp --bin meshmetric-dp --example push_load
OUT=.run/push-bench; rm -rf "$OUT"; mkdir -p "$OUT"
ADMIN=29961 METRICS=29962 GRPC=29963 HTTP=29964
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
cat > "$OUT/envoy.json" <<JSON
{"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": $ADMIN}}}}
JSON
"$ENVOY" -c "$OUT/envoy.json" --disable-hot-restart --concurrency 1 -l error > "$OUT/envoy.log" 2>&1 & PIDS+=($!)
until curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; do sleep 0.2; done
printf '{"observability":{"metrics":{"applications":[],"backends":[],"extraLabels":{"mesh":"default","dataplane":"bench"},"otlpReceiver":{"grpcPort":%s,"httpPort":%s}}}}' "$GRPC" "$HTTP" > "$OUT/dp.json"
target/release/meshmetric-dp run --name bench --workdir "$OUT/dp" --admin-address 127.0.0.1:$ADMIN \
  --config-file "$OUT/dp.json" --metrics-address 127.0.0.1:$METRICS --reuse-within 0s > "$OUT/dp.log" 2>&1 & DP=$!; PIDS+=($DP)
until curl -fs -o /dev/null "http://127.0.0.1:$METRICS/metrics" && grep -q "OTLP/gRPC receiver listening" "$OUT/dp.log"; do
  kill -0 "$DP" 2>/dev/null || { echo "meshmetric-dp exited; see $OUT/dp.log" >&2; exit 1; }
  sleep 0.2
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
curl -s -o /dev/null "http://127.0.0.1:$METRICS/metrics"; sleep 1
R0=$(rss $DP)
target/release/examples/push_load "http://127.0.0.1:$GRPC" 0 > /dev/null
curl -s -o "$OUT/after-one.txt" "http://127.0.0.1:$METRICS/metrics"; sleep 1
R1=$(rss $DP)
SERIES=$(grep -c '^app_' "$OUT/after-one.txt" || true)
( while kill -0 "$DP" 2>/dev/null; do curl -s -o /dev/null "http://127.0.0.1:$METRICS/metrics"; sleep 1; done ) &
T0=$(ticks $DP)
read -r REQS POINTS REJECTED ELAPSED < <(target/release/examples/push_load "http://127.0.0.1:$GRPC" "$SECS")
T1=$(ticks $DP)
HWM=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$DP/status")
awk -v r0="$R0" -v r1="$R1" -v s="$SERIES" -v reqs="$REQS" -v pts="$POINTS" -v rej="$REJECTED" -v el="$ELAPSED" \
    -v t0="$T0" -v t1="$T1" -v hz="$HZ" -v hwm="$HWM" 'BEGIN {
  cpu = (t1 - t0) / hz
  printf "10,000 pushed series (%d exposition lines): +%.1f MiB RSS (%.0f -> %.0f MiB)\n", s, (r1 - r0) / 1024, r0 / 1024, r1 / 1024
  printf "load: %d requests, %d data points in %.1f s (%.0f points/s wall), %d rejected\n", reqs, pts, el, pts / el, rej
  printf "plugin CPU: %.2f s (%.0f %% of one core); %.2f M points per CPU-second (decode + ingest + one collection per second); peak RSS %d MiB\n", cpu, cpu / el * 100, pts / cpu / 1e6, hwm
}'
