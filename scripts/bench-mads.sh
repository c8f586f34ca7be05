#!/usr/bin/env bash
# Whole-process MADS benchmark: a release control plane with N proxies (default 10,000) loaded
# from a file; times full MADS answers (empty version_info, so each request gets the whole
# response) and HTTP SD answers with curl, and reports the control plane's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
P=${2:-200}   # MeshMetric policies
OUT=.run/bench-mads; mkdir -p "$OUT"
python3 scripts/gen-mesh.py "$N" "$P" > "$OUT/resources.yaml"
cargo build --release -q -p meshmetric-control-plane --bin meshmetric-cp
PORT_API=25781 PORT_XDS=25778 PORT_MADS=25776
start=$(date +%s.%N)
rm -rf "$OUT/cp-data"
target/release/meshmetric-cp -f "$OUT/resources.yaml" --data-dir "$OUT/cp-data" --api-address 127.0.0.1:$PORT_API --xds-address 127.0.0.1:$PORT_XDS --mads-address 127.0.0.1:$PORT_MADS > "$OUT/cp.log" 2>&1 &
CP=$!
trap 'kill $CP 2>/dev/null || true' EXIT
until curl -fs http://127.0.0.1:$PORT_API/ready >/dev/null 2>&1; do sleep 0.05; done
ready=$(date +%s.%N)
REQ='{"node":{"id":"main"},"type_url":"type.googleapis.com/kuma.observability.v1.MonitoringAssignment"}'
for i in $(seq 50); do
  curl -s -o /dev/null -w '%{time_total}\n' -X POST -H 'content-type: application/json' --data "$REQ" "http://127.0.0.1:$PORT_MADS/v3/discovery:monitoringassignments"
done | sort -n > "$OUT/mads-times.txt"
for i in $(seq 50); do
  curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT_MADS/v1/http-sd?client_id=main"
done | sort -n > "$OUT/sd-times.txt"
size=$(curl -s -X POST -H 'content-type: application/json' --data "$REQ" "http://127.0.0.1:$PORT_MADS/v3/discovery:monitoringassignments" | wc -c)
rss=$(awk '/VmHWM/ {print $2}' /proc/$CP/status)
pct() { awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p); if (i<1) i=1; printf "%.1f ms", a[i]*1000}' "$1"; }
echo "proxies: $N"
echo "control plane start + load + first assignments: $(awk -v a="$start" -v b="$ready" 'BEGIN {printf "%.2f s", b-a}')"
echo "MADS full answer (clientId main, $size bytes): p50 $(pct "$OUT/mads-times.txt" 0.5), p99 $(pct "$OUT/mads-times.txt" 0.99)"
echo "HTTP SD answer: p50 $(pct "$OUT/sd-times.txt" 0.5), p99 $(pct "$OUT/sd-times.txt" 0.99)"
# one policy change: time until the MADS answer for clientId ops changes
V0=$(curl -s -X POST -H 'content-type: application/json' --data '{"node":{"id":"ops"}}' "http://127.0.0.1:$PORT_MADS/v3/discovery:monitoringassignments" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version_info"])')
t0=$(date +%s.%N)
printf 'type: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5681}}, {type: Prometheus, prometheus: {port: 5672}}]}}\n' \
  | curl -s -o /dev/null -X PUT -H "Authorization: Bearer $(cat "$OUT/cp-data/admin-token")" --data-binary @- "http://127.0.0.1:$PORT_API/meshes/default/meshmetrics/team-b"
curl -s -o /dev/null -X POST -H 'content-type: application/json' --data "{\"node\":{\"id\":\"ops\"},\"version_info\":\"$V0\"}" "http://127.0.0.1:$PORT_MADS/v3/discovery:monitoringassignments?fetch-timeout=30s"
t1=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' /proc/$CP/status)
echo "policies: $P"
echo "one policy change -> new MADS answer delivered to a waiting long-poll: $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f ms", (b-a)*1000}')"
echo "control plane peak RSS: $((rss / 1024)) MiB"
