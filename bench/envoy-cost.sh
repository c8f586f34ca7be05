#!/usr/bin/env bash
# What Envoy itself spends to hand over its stats, per way of getting them, on ONE Envoy build
# with N clusters (every cluster used once): Envoy's CPU (utime+stime from /proc) per second
# while idle, while its admin endpoint is scraped once a second in each variant (text
# exposition with and without unused stats, Envoy-side `filter=` with the Basic profile's
# regex, a narrow filter), and while a stats sink pushes every stat once a second over gRPC
# (envoy.stat_sinks.open_telemetry: OTLP; envoy.stat_sinks.metrics_service: Prometheus
# MetricFamily protobuf) to a receiver that reads and discards the bytes; then the OpenTelemetry
# sink flushed only when a /stats request comes (stats_flush_on_admin), triggered once a second by
# the cheapest one (/stats?type=TextReadouts) and by the text scrapes. Each sink runs in its own
# Envoy with the same clusters (sinks are bootstrap config). Prints a Markdown table: Envoy CPU
# per second above idle, bytes per scrape or push. bench/otel-sink-compare.py compares what the
# OpenTelemetry sink sends with the text, series by series.
#   bench/envoy-cost.sh [N clusters, default 1000] [seconds per phase, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}; SECS=${2:-20}
ENVOY=$(scripts/install-peers.sh envoy | tail -1)
scripts/install-peers.sh otlp >/dev/null
cargo build -q -p meshmetric-tests --bin meshmetric-sample-app
OUT=.run/envoy-cost; rm -rf "$OUT"; mkdir -p "$OUT"
APP=28280 ADMIN=29961 LISTEN=29962 SINK=29963
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

target/debug/meshmetric-sample-app --address 127.0.0.1:$APP > "$OUT/app.log" 2>&1 & PIDS+=($!)
# a gRPC server that accepts any method (client streams and unary) and counts what it reads
cat > "$OUT/sink.py" <<'PY'
import sys, threading, grpc
from concurrent import futures
port, out = int(sys.argv[1]), sys.argv[2]
total = {"bytes": 0, "messages": 0}
lock = threading.Lock()
def count(b):
    with lock:
        total["bytes"] += len(b); total["messages"] += 1
        open(out, "w").write(f'{total["bytes"]} {total["messages"]}\n')
class Any(grpc.GenericRpcHandler):
    def service(self, details):
        def stream(it, ctx):
            for m in it: count(m)
            return b""
        return grpc.stream_unary_rpc_method_handler(stream)
server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[Any()],
                     options=[("grpc.max_receive_message_length", 1 << 30)])
server.add_insecure_port(f"127.0.0.1:{port}")
server.start(); server.wait_for_termination()
PY
.venv/otlp/bin/python "$OUT/sink.py" $SINK "$OUT/sink.count" > "$OUT/sink.log" 2>&1 & PIDS+=($!)

# Envoy's bootstrap; $1 = sink kind (none, otel, ms)
bootstrap() { bench/envoy-bootstrap.py "$N" "$APP" "$ADMIN" "$LISTEN" "$1" "$SINK"; }

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
cpu_ms_per_s() { # pid seconds -> ms of CPU per second over the window
  local a b; a=$(ticks "$1"); sleep "$2"; b=$(ticks "$1")
  awk -v a="$a" -v b="$b" -v hz="$HZ" -v s="$2" 'BEGIN {printf "%.1f", (b-a)/hz/s*1000}'
}
start_envoy() { # kind
  bootstrap "$1" > "$OUT/envoy-$1.json"
  "$ENVOY" -c "$OUT/envoy-$1.json" --disable-hot-restart --concurrency 1 -l error --base-id "$RANDOM" > "$OUT/envoy-$1.log" 2>&1 &
  EPID=$!; PIDS+=("$EPID")
  until curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; do sleep 0.2; done
  curl -s -o /dev/null "http://127.0.0.1:$LISTEN/c[0-$((N-1))]"; sleep 6
}
stop_envoy() { kill "$EPID"; wait "$EPID" 2>/dev/null || true; }
# requests admin path $1 once a second for the phase (and a little longer) in the background;
# LOOP is its PID
every_second() {
  ( end=$((SECONDS + SECS + 2)); while [ $SECONDS -lt $end ]; do curl -s -o /dev/null "http://127.0.0.1:$ADMIN$1"; sleep 1; done ) &
  LOOP=$!
  sleep 1
}

BASIC='.*(rq_time|cx_length_ms|cx_count|_rq|bytes|timeout|health_check|lb_healthy_panic|cx_destroy|error|fail|reset|eject|overflow|cancelled|max_duration_reached|no_cluster|no_route|no_filter_chain|reject|denied|days_until_first_cert_expiring|rbac|cx_active|cx_connect|circuit_breakers|cx_total|ssl_handshake|ssl_context_update_by_sds).*|envoy_cluster_membership_(degraded|healthy|total)|envoy_cluster_ssl_handshake|envoy_(server|control_plane|dns_filter|dns_cares).*'
ROWS=()
start_envoy none
IDLE=$(cpu_ms_per_s "$EPID" "$SECS")
ROWS+=("idle (no scrape, no sink)|$IDLE|—|0")
for v in all usedonly basic narrow; do
  q="/stats?format=prometheus&text_readouts"
  case $v in
    usedonly) q="$q&usedonly";;
    basic) q="$q&filter=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))' "$BASIC")";;
    narrow) q="$q&filter=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("upstream_rq_total|upstream_cx_active"))')";;
  esac
  bytes=$(curl -s "http://127.0.0.1:$ADMIN$q" | wc -c)
  every_second "$q"
  ms=$(cpu_ms_per_s "$EPID" "$SECS"); wait "$LOOP"
  ROWS+=("text scrape, $v|$ms|$bytes|1")
done
stop_envoy
sink_phase() { # label [admin query requested once a second]
  rm -f "$OUT/sink.count"
  LOOP=""
  [ -n "${2:-}" ] && every_second "$2"
  local c0 c1 ms per
  c0=$(cat "$OUT/sink.count" 2>/dev/null || echo "0 0")
  ms=$(cpu_ms_per_s "$EPID" "$SECS")
  c1=$(cat "$OUT/sink.count" 2>/dev/null || echo "0 0")
  [ -n "$LOOP" ] && wait "$LOOP"
  per=$(awk -v a="$c0" -v b="$c1" 'BEGIN {split(a,x," "); split(b,y," "); m=y[2]-x[2]; if (m>0) printf "%d", (y[1]-x[1])/m; else print "no push"}')
  ROWS+=("$1|$ms|$per|1")
}
for kind in otel ms; do
  start_envoy "$kind"
  label="OpenTelemetry stat sink (OTLP/gRPC), 1 s flush"; [ "$kind" = ms ] && label="metrics_service stat sink (gRPC), 1 s flush"
  sink_phase "$label"
  stop_envoy
done
# flushed only when a /stats request comes (stats_flush_on_admin): by the cheapest request (text
# readouts only), and by the text scrapes, which then pay for a push too
start_envoy otel-admin
sink_phase "OpenTelemetry stat sink, flushed by /stats?type=TextReadouts once a second" "/stats?type=TextReadouts"
sink_phase "OpenTelemetry stat sink flushed on admin + text scrape, usedonly" "/stats?format=prometheus&text_readouts&usedonly"
sink_phase "OpenTelemetry stat sink flushed on admin + text scrape, all" "/stats?format=prometheus&text_readouts"
stop_envoy
echo "Envoy $("$ENVOY" --version | grep -o 'version: [^ ]*' | head -1 | cut -d/ -f2), $N clusters, $SECS s per phase, $(nproc) cores"
echo
echo "| how the stats leave Envoy | Envoy CPU per second | above idle, per scrape or push | bytes per scrape or push |"
echo "|---|---|---|---|"
for r in "${ROWS[@]}"; do
  IFS='|' read -r name ms bytes per <<< "$r"
  above=$(awk -v a="$ms" -v i="$IDLE" -v p="$per" 'BEGIN {if (p==0) print "—"; else printf "%.1f ms", a-i}')
  echo "| $name | $ms ms | $above | $bytes |"
done
