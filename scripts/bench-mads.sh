#!/usr/bin/env bash
# Whole-process MADS benchmark: a release control plane with N proxies (default 10,000) loaded
# from a file; times full MADS answers (empty version_info, so each request gets the whole
# response) and HTTP SD answers with curl, and reports the control plane's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
P=${2:-200}   # MeshMetric policies
OUT=.run/bench-mads; mkdir -p "$OUT"
python3 - "$N" "$P" > "$OUT/resources.yaml" <<'PY'
import sys
n, p = int(sys.argv[1]), int(sys.argv[2])
kinds = ["Dataplane", "MeshService", "MeshSubset", "MeshServiceSubset"]
for j in range(max(0, p - 2)):
    k = kinds[j % 4]
    tr = {"Dataplane": f"{{kind: Dataplane, labels: {{kuma.io/workload: svc-{j % 100}}}}}",
          "MeshService": f"{{kind: MeshService, name: svc-{j % 100}}}",
          "MeshSubset": f"{{kind: MeshSubset, tags: {{kuma.io/service: svc-{j % 100}}}}}",
          "MeshServiceSubset": f"{{kind: MeshServiceSubset, name: svc-{j % 100}, tags: {{kuma.io/service: svc-{j % 100}}}}}"}[k]
    print(f"type: MeshMetric\nname: p-{j:03d}\nspec: {{targetRef: {tr}, default: {{sidecar: {{profiles: {{appendProfiles: [{{name: Basic}}], exclude: [{{type: Prefix, match: envoy_x_{j}}}]}}}}, applications: [{{name: app, port: {8000 + j % 50}}}]}}}}\n---")
print("type: MeshMetric\nname: all\nspec: {default: {backends: [{type: Prometheus, prometheus: {clientId: main, port: 5670}}]}}")
print("---\ntype: MeshMetric\nname: team-b\nspec: {targetRef: {kind: Dataplane, labels: {team: b}}, default: {backends: [{type: Prometheus, prometheus: {clientId: ops, port: 5671}}, {type: Prometheus, prometheus: {port: 5672}}]}}")
for i in range(n):
    team = "b" if i % 4 == 0 else "a"
    print(f"---\ntype: Dataplane\nname: dp-{i}\nlabels: {{kuma.io/workload: svc-{i%100}, kuma.io/zone: zone-{i%3}, team: {team}}}\n"
          f"networking: {{address: 10.{(i>>16)&255}.{(i>>8)&255}.{i&255}, inbound: [{{port: 10001, servicePort: 8080, tags: {{kuma.io/service: svc-{i%100}}}}}]}}")
PY
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
