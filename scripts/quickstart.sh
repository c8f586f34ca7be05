#!/usr/bin/env bash
# Quick start: control plane + real Envoy + meshmetric-dp + a sample app, end to end.
#   scripts/quickstart.sh         start everything (stopping a previous run first) and print the merged metrics
#   scripts/quickstart.sh stop    stop everything it started
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.run/quickstart"
WORK=/tmp/meshmetric-quickstart      # short: unix socket paths must fit in 104 bytes
API=127.0.0.1:5681 XDS=127.0.0.1:5678 MADS=127.0.0.1:5676 ADMIN=127.0.0.1:19901 APP=127.0.0.1:18080
DP_IP=127.0.0.2 PROM="127.0.0.2:5670" INBOUND="127.0.0.2:10001"

stop() {
  for name in dp app cp; do
    if [[ -f "$RUN/$name.pid" ]]; then
      pid=$(cat "$RUN/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$RUN/$name.pid"
    fi
  done
  # an Envoy left behind by a plugin that was killed hard
  pkill -f "$WORK/dp/envoy-bootstrap.json" 2>/dev/null || true
}

if [[ "${1:-}" == "stop" ]]; then stop; echo "quick start stopped"; exit 0; fi

start_ts=$(date +%s)
stop
mkdir -p "$RUN"; rm -rf "$WORK"; mkdir -p "$WORK"
for hp in $API $XDS $MADS $ADMIN $APP $PROM $INBOUND; do
  if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then
    echo "error: $hp is already in use; stop what listens there and run again" >&2; exit 1
  fi
done

ENVOY=$(scripts/install-peers.sh | tail -1)
echo "building (debug) ..."
cargo build --workspace --bins --quiet
BIN="$ROOT/target/debug"

launch() { # name, command...
  local name=$1; shift
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}
launch cp  "$BIN/meshmetric-cp" -f examples --data-dir "$RUN/cp-data" --api-address $API --xds-address $XDS --mads-address $MADS
launch app "$BIN/meshmetric-sample-app" --address $APP
for _ in $(seq 100); do curl -fsS "http://$API/ready" >/dev/null 2>&1 && break; sleep 0.1; done
launch dp  "$BIN/meshmetric-dp" run --mesh default --name web-01 --workdir "$WORK/dp" \
  --cp-address $XDS --admin-address $ADMIN --envoy-binary "$ENVOY"

echo "waiting for Envoy to get its config and serve merged metrics on $PROM ..."
ok=""
for _ in $(seq 150); do
  curl -fsS "http://$INBOUND/" >/dev/null 2>&1 || true
  if curl -fsS "http://$PROM/metrics" 2>/dev/null | grep -q '^sample_app_requests_total'; then ok=1; break; fi
  sleep 0.2
done
if [[ -z "$ok" ]]; then
  echo "error: no merged metrics after 30 s; logs are in $RUN/*.log" >&2; tail -n 20 "$RUN"/*.log >&2; exit 1
fi
for _ in $(seq 20); do curl -fsS "http://$INBOUND/" >/dev/null; done
sleep 1.2   # one plugin poll
curl -fsS "http://$PROM/metrics" > "$RUN/metrics.txt"

echo
echo "=== merged metrics from Envoy's Prometheus listener http://$PROM/metrics (excerpt) ==="
grep -E '^(# TYPE )?(sample_app_requests_total|sample_app_request_duration_seconds_count|envoy_cluster_upstream_rq_total|envoy_http_downstream_rq_total|envoy_server_live|meshmetric_dp_scrape_up)' "$RUN/metrics.txt" | grep -v '^# TYPE' | head -n 12
echo "... $(grep -vc '^#' "$RUN/metrics.txt") series in all (full output: $RUN/metrics.txt)"
cat <<NOTE

What you are looking at:
  - envoy_*: Envoy's own stats, kept by the Basic profile of examples/meshmetric.yaml
    (internal clusters such as ads_cluster and the admin listener are dropped),
  - sample_app_*: the sample application's /metrics, scraped by meshmetric-dp and merged in,
  - meshmetric_dp_*: the plugin's own health (scrape up/duration, drops),
  - every series carries the Dataplane's extra labels (mesh, dataplane, kuma_workload, zone).
  The path: MeshMetric -> control plane (ADS) -> Envoy config listener on $WORK/dp/config.sock
  -> meshmetric-dp -> Envoy listener $PROM -> Prometheus.

Try:
  curl -s http://$PROM/metrics | less                                   # what Prometheus scrapes
  TOKEN=\$(cat $RUN/cp-data/admin-token)                                 # the API token (generated at first start)
  curl -s -H "Authorization: Bearer \$TOKEN" http://$API/meshes/default/dataplanes/web-01/meshmetric   # effective config
  sed 's/name: Basic/name: All/' examples/meshmetric.yaml | \\
    target/debug/meshmetricctl --cp http://$API --token-file $RUN/cp-data/admin-token apply -f -   # live change
Logs: $RUN/{cp,dp,app}.log      Stop everything: scripts/quickstart.sh stop
(quick start took $(( $(date +%s) - start_ts )) s)
NOTE
