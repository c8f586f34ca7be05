#!/usr/bin/env bash
# Whole-process ADS benchmark: a release control plane with N Dataplanes (default 10,000) and P
# MeshMetric policies (default 200), N connected ADS streams (control-plane/examples/ads_load.rs,
# behaving like Envoy: CDS+LDS, ACKs), then one policy change that alters the listeners of the
# quarter of the proxies labelled team=b. Reports the time until every affected stream has the
# new version, how many streams got a push, and the control plane's CPU and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
P=${2:-200}
OUT=.run/bench-ads; mkdir -p "$OUT"
python3 scripts/gen-mesh.py "$N" "$P" > "$OUT/resources.yaml"
printf 'type: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5681}}, {type: Prometheus, prometheus: {port: 5672}}]}}\n' > "$OUT/change.yaml"
cargo build --release -q -p meshmetric-control-plane --bin meshmetric-cp --example ads_load
ulimit -n 65536 2>/dev/null || true
PORT_API=25881 PORT_XDS=25878 PORT_MADS=25876
rm -rf "$OUT/cp-data"
target/release/meshmetric-cp -f "$OUT/resources.yaml" --data-dir "$OUT/cp-data" --api-address 127.0.0.1:$PORT_API \
  --xds-address 127.0.0.1:$PORT_XDS --mads-address 127.0.0.1:$PORT_MADS > "$OUT/cp.log" 2>&1 &
CP=$!
trap 'kill $CP 2>/dev/null || true' EXIT
until curl -fs http://127.0.0.1:$PORT_API/ready >/dev/null 2>&1; do sleep 0.05; done
cpu() { awk '{print $14 + $15}' /proc/$CP/stat; }
rss_before=$(awk '/VmRSS/ {print $2}' /proc/$CP/status)
echo "proxies: $N, policies: $P"
target/release/examples/ads_load 127.0.0.1:$PORT_XDS 127.0.0.1:$PORT_API "$OUT/cp-data/admin-token" "$N" "$OUT/change.yaml" > "$OUT/load.txt" &
LOAD=$!
c0=$(cpu)
# the change happens 2 s after all streams are configured; sample the CPU around it
until grep -q configured "$OUT/load.txt" 2>/dev/null; do sleep 0.1; done
rss_connected=$(awk '/VmRSS/ {print $2}' /proc/$CP/status)
c1=$(cpu)
wait $LOAD
c2=$(cpu)
cat "$OUT/load.txt"
hz=$(getconf CLK_TCK)
echo "control plane CPU: $(awk -v a="$c0" -v b="$c1" -v h="$hz" 'BEGIN {printf "%.2f s", (b-a)/h}') to configure the streams, $(awk -v a="$c1" -v b="$c2" -v h="$hz" 'BEGIN {printf "%.2f s", (b-a)/h}') for the change (incl. 5 s idle)"
echo "control plane RSS: $((rss_before / 1024)) MiB loaded, $((rss_connected / 1024)) MiB with $N streams, peak $(( $(awk '/VmHWM/ {print $2}' /proc/$CP/status) / 1024 )) MiB"
