#!/usr/bin/env bash
# Side-by-side cost of collecting a real Envoy's stats every second: meshmetric-dp (profile All
# and Basic, with and without includeUnused, and with ten relabel rules), vmagent and Prometheus
# in agent mode (Debian's), each with the equivalent filter, all against ONE Envoy with N
# clusters in ONE run. Each agent gets its own phase (so they do not compete for the 2 cores);
# CPU per cycle comes from /proc/<pid>/stat (utime+stime over the measured window / scrapes) for
# the agent AND for Envoy (rendering its stats is part of what a scrape costs), peak RSS from
# VmHWM. Prints a Markdown table: agent, Envoy and whole cost per cycle, and the whole cost
# against vmagent's whole cost with the same filter.
#   bench/compare.sh [N clusters, default 1000] [seconds per phase, default 20]
# AGENTS=dp runs only the plugin's phases (for the growth table over cluster counts); PROFILES
# (All Basic Rules AllUsed) and FILTERS (none Basic rules usedonly) pick phases.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}; SECS=${2:-20}
ENVOY=$(scripts/install-peers.sh envoy | tail -1)
command -v vmagent >/dev/null || { apt-get install -y -qq victoria-metrics >/dev/null; }
scripts/install-peers.sh prometheus >/dev/null
cargo build --release -q -p meshmetric-dp --bin meshmetric-dp
cargo build -q -p meshmetric-tests --bin meshmetric-sample-app
OUT=.run/compare; rm -rf "$OUT"; mkdir -p "$OUT"
APP=28180 ADMIN=29921 LISTEN=29922 SINK=29940
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start() { local name=$1; shift; "$@" > "$OUT/$name.log" 2>&1 & PIDS+=($!); echo $!; }

start app target/debug/meshmetric-sample-app --address 127.0.0.1:$APP >/dev/null
bench/envoy-bootstrap.py "$N" "$APP" "$ADMIN" "$LISTEN" > "$OUT/envoy.json"
EPID=$(start envoy "$ENVOY" -c "$OUT/envoy.json" --disable-hot-restart --concurrency 1 -l error); PIDS+=("$EPID")
until curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; do sleep 0.2; done
curl -s -o /dev/null "http://127.0.0.1:$LISTEN/c[0-$((N-1))]"; sleep 6
BYTES=$(curl -s "http://127.0.0.1:$ADMIN/stats?format=prometheus&text_readouts" | wc -c)
SAMPLES=$(curl -s "http://127.0.0.1:$ADMIN/stats?format=prometheus&text_readouts" | grep -vc '^#')
# remote-write sink for the agents (they must send somewhere): vmagent/Prometheus agent -> victoria-metrics
start sink victoria-metrics -httpListenAddr=127.0.0.1:$SINK -storageDataPath="$OUT/vm-data" -retentionPeriod=1d >/dev/null

# Basic's family selectors as one regex (what a Prometheus user would write in metric_relabel_configs)
BASIC='.*(rq_time|cx_length_ms|cx_count|_rq|bytes|timeout|health_check|lb_healthy_panic|cx_destroy|error|fail|reset|eject|overflow|cancelled|max_duration_reached|no_cluster|no_route|no_filter_chain|reject|denied|days_until_first_cert_expiring|rbac|cx_active|cx_connect|circuit_breakers|cx_total|ssl_handshake|ssl_context_update_by_sds).*|envoy_cluster_membership_(degraded|healthy|total)|envoy_cluster_ssl_handshake|envoy_(server|control_plane|dns_filter|dns_cares).*'

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)
ROWS=()
measure() { # label pid
  sleep 5   # warm-up
  local t0 e0; t0=$(ticks "$2"); e0=$(ticks "$EPID"); sleep "$SECS"; local t1 e1; t1=$(ticks "$2"); e1=$(ticks "$EPID")
  local ms; ms=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v s="$SECS" 'BEGIN {printf "%.1f", (b-a)/hz/s*1000}')
  local ems; ems=$(awk -v a="$e0" -v b="$e1" -v hz="$HZ" -v s="$SECS" 'BEGIN {printf "%.1f", (b-a)/hz/s*1000}')
  local note=""
  if grep -qiE "cannot scrape|scrape failed|error" "$OUT/$3.log"; then note=" (scrape errors: see $OUT/$3.log)"; fi
  ROWS+=("$1$note|$ms|$(hwm "$2")|$ems")
  kill "$2"; wait "$2" 2>/dev/null || true
  while kill -0 "$2" 2>/dev/null; do sleep 0.1; done   # not our child when started via $(start ...)
}

# ten typical relabeling rules (bench/relabel-rules.json): as MeshMetric relabel for the plugin
# (profile All), as metric_relabel_configs for the agents
RULES=$(tr -d '\n' < bench/relabel-rules.json)
PROM_RULES=$(python3 -c 'import json,sys; r=json.load(open("bench/relabel-rules.json")); m={"sourceLabels":"source_labels","targetLabel":"target_label"}; print(json.dumps([{m.get(k,k):v for k,v in x.items()} for x in r]))')
for profile in ${PROFILES:-All Basic Rules AllUsed}; do
  relabel='[]'; p=$profile; unused=true
  if [ "$profile" = Rules ]; then relabel=$RULES; p=All; fi
  if [ "$profile" = AllUsed ]; then p=All; unused=false; fi
  printf '{"observability":{"metrics":{"applications":[],"backends":[],"sidecar":{"includeUnused":%s,"profiles":{"appendProfiles":[{"name":"%s"}]}},"extraLabels":{"mesh":"default","dataplane":"bench"},"relabel":%s}}}' "$unused" "$p" "$relabel" > "$OUT/dp-$profile.json"
  pid=$(start "dp-$profile" target/release/meshmetric-dp run --name bench --workdir "$OUT/dp-$profile" --admin-address 127.0.0.1:$ADMIN \
        --config-file "$OUT/dp-$profile.json" --metrics-address 127.0.0.1:29931 --reuse-within 0s)
  until curl -fs -o /dev/null http://127.0.0.1:29931/metrics; do
    kill -0 "$pid" 2>/dev/null || { echo "meshmetric-dp exited; see $OUT/dp-$profile.log" >&2; exit 1; }
    sleep 0.2
  done
  ( while kill -0 "$pid" 2>/dev/null; do curl -s -o /dev/null http://127.0.0.1:29931/metrics; sleep 1; done ) &
  label="profile $profile, includeUnused"; [ "$profile" = Rules ] && label="profile All + 10 relabel rules, includeUnused"
  [ "$profile" = AllUsed ] && label="profile All, used only"
  measure "meshmetric-dp, $label" "$pid" "dp-$profile"
done

for filter in ${FILTERS:-none Basic rules usedonly}; do
  [ "${AGENTS:-all}" = dp ] && break
  # Envoy looks only at whether a parameter is present; vmagent leaves out parameters whose
  # value is empty, so each gets a value
  relabel=""; params="params: {text_readouts: ['true']}"
  if [ "$filter" = usedonly ]; then params="params: {text_readouts: ['true'], usedonly: ['true']}"; fi
  if [ "$filter" = Basic ]; then relabel="    metric_relabel_configs: [{source_labels: [__name__], regex: '$BASIC', action: keep}]"; fi
  if [ "$filter" = rules ]; then relabel="    metric_relabel_configs: $PROM_RULES"; fi
  cat > "$OUT/scrape-$filter.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: envoy
    metrics_path: /stats/prometheus
    $params
    static_configs: [{targets: ['127.0.0.1:$ADMIN']}]
$relabel
YML
  pid=$(start "vmagent-$filter" vmagent -promscrape.config="$OUT/scrape-$filter.yml" -remoteWrite.url=http://127.0.0.1:$SINK/api/v1/write \
        -remoteWrite.tmpDataPath="$OUT/vmagent-$filter" -httpListenAddr=127.0.0.1:29951 -promscrape.maxScrapeSize=512MB)
  measure "vmagent 1.79, filter $filter" "$pid" "vmagent-$filter"
  printf 'remote_write: [{url: "http://127.0.0.1:%s/api/v1/write"}]\n' "$SINK" >> "$OUT/scrape-$filter.yml"
  pid=$(start "prom-$filter" prometheus --enable-feature=agent --config.file="$OUT/scrape-$filter.yml" \
        --storage.agent.path="$OUT/prom-$filter" --web.listen-address=127.0.0.1:29952 --log.level=warn)
  measure "Prometheus 2.42 agent, filter $filter" "$pid" "prom-$filter"
done

whole() { printf '%s\n' "${ROWS[@]}" | awk -F'|' -v pat="$1" '$1 ~ pat {printf "%.1f", $2 + $4; exit}'; }
VM_ALL=$(whole '^vmagent 1.79, filter none')
VM_BASIC=$(whole '^vmagent 1.79, filter Basic')
VM_RULES=$(whole '^vmagent 1.79, filter rules')
VM_USED=$(whole '^vmagent 1.79, filter usedonly')
echo "Envoy $("$ENVOY" --version | grep -o 'version: [^ ]*' | head -1), $N clusters: $BYTES bytes, $SAMPLES samples per scrape; 1 scrape/s, $SECS s per agent; $(nproc) cores"
echo
echo "| agent | agent CPU per scrape | Envoy CPU per scrape | whole cost per scrape | whole vs vmagent+Envoy (same filter) | agent peak RSS |"
echo "|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do
  IFS='|' read -r name ms rss ems <<< "$r"
  base=$VM_ALL
  case "$name" in *Basic*) base=$VM_BASIC;; *rules*) base=$VM_RULES;; *"used only"*|*usedonly*) base=$VM_USED;; esac
  total=$(awk -v a="$ms" -v b="$ems" 'BEGIN {printf "%.1f", a+b}')
  ratio="—"; [ -n "$base" ] && ratio=$(awk -v a="$total" -v b="$base" 'BEGIN {printf "%.2f×", a/b}')
  echo "| $name | $ms ms | $ems ms | $total ms | $ratio | $rss MiB |"
done
