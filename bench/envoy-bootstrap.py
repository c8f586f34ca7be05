#!/usr/bin/env python3
"""Prints the bootstrap of the benchmarks' Envoy: N static clusters `service_<i>`, all pointing at
the sample app, behind one listener routing `/c<i>` to cluster i, admin on loopback.

  bench/envoy-bootstrap.py N APP_PORT ADMIN_PORT LISTEN_PORT [otel|ms|otel-admin SINK_PORT]

With a sink kind, stats are flushed every second to a gRPC receiver on SINK_PORT through
envoy.stat_sinks.open_telemetry (otel) or envoy.stat_sinks.metrics_service (ms); otel-admin
flushes to the OpenTelemetry sink only when a /stats request reaches the admin interface
(`stats_flush_on_admin`), instead of on a timer.
"""
import json
import sys

n, app, admin, listen = (int(x) for x in sys.argv[1:5])
kind = sys.argv[5] if len(sys.argv) > 5 else "none"


def static(name, port, **extra):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", **extra,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


clusters = [static(f"service_{i}", app) for i in range(n)]
routes = [{"match": {"path": f"/c{i}"}, "route": {"cluster": f"service_{i}", "prefix_rewrite": "/"}} for i in range(n)]
bootstrap = {
    "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
    "static_resources": {"clusters": clusters, "listeners": [{
        "name": "ingress", "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress", "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]}}
if kind != "none":
    sink = int(sys.argv[6])
    clusters.append(static("sink", sink, typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}))
    grpc = {"envoy_grpc": {"cluster_name": "sink"}}
    if kind in ("otel", "otel-admin"):
        cfg = {"name": "envoy.stat_sinks.open_telemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig", "grpc_service": grpc}}
    elif kind == "ms":
        cfg = {"name": "envoy.stat_sinks.metrics_service", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig", "grpc_service": grpc,
            "transport_api_version": "V3", "emit_tags_as_labels": True}}
    else:
        sys.exit(f"unknown sink kind {kind!r}; accepted: otel, ms")
    if kind == "otel-admin":
        bootstrap["stats_flush_on_admin"] = True
    else:
        bootstrap["stats_flush_interval"] = "1s"
    bootstrap["stats_sinks"] = [cfg]
print(json.dumps(bootstrap))
