#!/usr/bin/env bash
# Quick start: the whole product on this machine, on loopback addresses: the control plane with
# the examples/ resources, a proxy (real Envoy run by meshmetric-dp) beside the sample app, a
# local OTLP receiver that prints what it gets, and a real Prometheus discovering the proxy
# through HTTP SD. Prints what each of the three outputs received.
#   scripts/quickstart.sh                       start (stopping a previous run first)
#   scripts/quickstart.sh stop [--keep-store]   stop everything, remove its files (keep the store)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.run/quickstart"
WORK=/tmp/meshmetric-quickstart      # short: unix socket paths must fit in 104 bytes
API=127.0.0.1:5681 XDS=127.0.0.1:5678 MADS=127.0.0.1:5676 ADMIN=127.0.0.1:19901 APP=127.0.0.1:18080
OTLP_GRPC=127.0.0.1:14317 OTLP_HTTP=127.0.0.1:14318 PROMETHEUS=127.0.0.1:9090
# the plugin's OTLP receiver (otlpReceiver in examples/meshmetric.yaml), where the sample app pushes
PUSH_GRPC=127.0.0.1:4317 PUSH_HTTP=127.0.0.1:4318
PROM="127.0.0.2:5670" INBOUND="127.0.0.2:10001"
NAMES=(dp app otlp prometheus cp)

stop() {
  for name in "${NAMES[@]}"; do
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

step() { echo "==> $*"; }

if [[ "${1:-}" == "stop" ]]; then
  stop
  rm -rf "$WORK"
  if [[ "${2:-}" == "--keep-store" ]]; then
    find "$RUN" -mindepth 1 -maxdepth 1 ! -name cp-data -exec rm -rf {} + 2>/dev/null || true
    echo "quick start stopped; the store is kept in $RUN/cp-data"
  else
    rm -rf "$RUN"
    echo "quick start stopped and its files removed"
  fi
  exit 0
fi

start_ts=$(date +%s)
stop
mkdir -p "$RUN"; rm -rf "$WORK"; mkdir -p "$WORK"
for hp in $API $XDS $MADS $ADMIN $APP $OTLP_GRPC $OTLP_HTTP $PUSH_GRPC $PUSH_HTTP $PROMETHEUS $PROM $INBOUND; do
  if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then
    echo "error: $hp is already in use; stop what listens there and run again" >&2; exit 1
  fi
done

step "installing Envoy, the OTLP receiver and Prometheus (once; later runs skip this)"
ENVOY=$(scripts/install-peers.sh envoy otlp prometheus | tail -1)
# (the test suite, which has built everything already, sets MESHMETRIC_QUICKSTART_PREBUILT=1)
if [[ -z "${MESHMETRIC_QUICKSTART_PREBUILT:-}" ]]; then
  step "building meshmetric (debug; the first build takes a few minutes)"
  cargo build --workspace --bins
fi
BIN="$ROOT/target/debug"

launch() { # name, command...
  local name=$1; shift
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}
step "starting the control plane, the sample app and the OTLP receiver"
launch cp   "$BIN/meshmetric-cp" -f examples --data-dir "$RUN/cp-data" --api-address $API --xds-address $XDS --mads-address $MADS
# the sample app is scraped (/metrics) and also pushes OTLP with the OpenTelemetry SDK (--push)
launch app  "$BIN/meshmetric-sample-app" --address $APP --push
launch otlp .venv/otlp/bin/python tests/py/otlp_receiver.py --grpc-port ${OTLP_GRPC#*:} --http-port ${OTLP_HTTP#*:} --out "$RUN/otlp.jsonl"
for _ in $(seq 100); do curl -fsS "http://$API/ready" >/dev/null 2>&1 && break; sleep 0.1; done
step "starting the proxy: meshmetric-dp with Envoy as its child"
launch dp   "$BIN/meshmetric-dp" run --mesh default --name web-01 --workdir "$WORK/dp" \
  --cp-address $XDS --admin-address $ADMIN --envoy-binary "$ENVOY"
cat > "$RUN/prometheus.yml" <<PROMCONF
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ["$ROOT/dashboards/alerts.yaml"]
scrape_configs:
  - job_name: meshmetric-proxies
    honor_labels: true
    http_sd_configs:
      - {url: "http://$MADS/v1/http-sd", refresh_interval: 5s}
    relabel_configs:
      - {source_labels: [__meta_kuma_mesh], target_label: mesh}
      - {source_labels: [__meta_kuma_service], target_label: service}
      - {source_labels: [__meta_kuma_dataplane], target_label: dataplane}
  - job_name: meshmetric-cp
    static_configs: [{targets: ["$API"]}]
PROMCONF
step "starting Prometheus (HTTP SD from the control plane)"
launch prometheus prometheus --config.file="$RUN/prometheus.yml" --storage.tsdb.path="$RUN/prom-data" \
  --web.listen-address=$PROMETHEUS --log.level=warn

step "waiting for Envoy to get its config and serve merged metrics on $PROM"
ok=""
for _ in $(seq 150); do
  curl -fsS "http://$INBOUND/" >/dev/null 2>&1 || true
  if curl -fsS "http://$PROM/metrics" 2>/dev/null | grep -c '^sample_app_\(requests\|pushed_orders\)_total' | grep -qx 2; then ok=1; break; fi
  sleep 0.2
done
if [[ -z "$ok" ]]; then
  echo "error: no merged metrics after 30 s; logs are in $RUN/*.log" >&2; tail -n 20 "$RUN"/*.log >&2; exit 1
fi
for _ in $(seq 20); do curl -fsS "http://$INBOUND/" >/dev/null; done
sleep 1.2   # one plugin poll
curl -fsS "http://$PROM/metrics" > "$RUN/metrics.txt"

step "waiting for the first OTLP export and the first Prometheus scrape (up to 30 s)"
q() { curl -fsS "http://$PROMETHEUS/api/v1/query" --data-urlencode "query=$1" 2>/dev/null || true; }
for _ in $(seq 60); do
  grep -q '"envoy_server_live"' "$RUN/otlp.jsonl" 2>/dev/null && q 'sample_app_requests_total' | grep -q '"result":\[{' && break
  sleep 0.5
done

echo
echo "=== 1. Prometheus text on Envoy's listener http://$PROM/metrics (excerpt) ==="
grep -E '^(sample_app_requests_total|sample_app_pushed_orders_total|sample_app_request_duration_seconds_count|envoy_cluster_upstream_rq_total|envoy_http_downstream_rq_total|envoy_server_live|meshmetric_dp_scrape_up)' "$RUN/metrics.txt" | head -n 11
echo "... $(grep -vc '^#' "$RUN/metrics.txt") series in all (full output: $RUN/metrics.txt)"
echo
echo "=== 2. what the OTLP receiver on $OTLP_GRPC got (every 10 s) ==="
.venv/otlp/bin/python - "$RUN/otlp.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not recs:
    print("nothing yet (the first export comes within 10 s)")
# one line per resource: the proxy's merged metrics (service.name = its workload), and the
# sample app's pushed metrics, forwarded as sent
seen = {}
for rec in recs:
    for r in rec["request"]["resourceMetrics"]:
        attrs = {a["key"]: list(a["value"].values())[0] for a in r["resource"]["attributes"]}
        key = attrs.get("service.name")
        n, names = seen.get(key, (0, set()))
        names |= {m["name"] for s in r["scopeMetrics"] for m in s["metrics"]}
        seen[key] = (n + 1, names)
        seen[key + "/attrs"] = attrs
for key in [k for k in seen if not k.endswith("/attrs")]:
    n, names = seen[key]
    attrs = seen[key + "/attrs"]
    print(f"{n} export(s); resource: service.name={key}, mesh={attrs.get('mesh')}, dataplane={attrs.get('dataplane')}")
    print(f"  {len(names)} metrics, e.g. " + ", ".join(sorted(n for n in names if n.startswith(("sample_app", "envoy_server_live"))))[:200])
PY
echo
echo "=== 3. Prometheus at http://$PROMETHEUS (UI and API), discovering the proxy through HTTP SD ==="
q 'sum by (dataplane, mesh) (sample_app_requests_total)' | .venv/otlp/bin/python -c '
import json, sys
try:
    res = json.load(sys.stdin)["data"]["result"]
except Exception:
    res = []
print("sum by (dataplane, mesh) (sample_app_requests_total):", [(r["metric"], r["value"][1]) for r in res] or "no sample yet (scrapes every 5 s)")'
cat <<NOTE

The path: examples/*.yaml -> control plane (ADS) -> Envoy config listener on $WORK/dp/config.sock
  -> meshmetric-dp -> (1) Envoy listener $PROM, scraped by (3) Prometheus; (2) OTLP push.

Try:
  export PATH=$BIN:\$PATH MESHMETRIC_TOKEN_FILE=$RUN/cp-data/admin-token
  meshmetricctl get dataplanes                        # online, config in force
  meshmetricctl inspect dataplane web-01              # effective config and the policies that made it
  sed 's/name: Basic/name: All/' examples/meshmetric.yaml | meshmetricctl apply -f -   # live change
  open http://$PROMETHEUS/targets                       # Prometheus's view
Logs: $RUN/*.log      Stop and clean up: scripts/quickstart.sh stop [--keep-store]
(quick start took $(( $(date +%s) - start_ts )) s)
NOTE
