#!/usr/bin/env python3
"""Compares what Envoy's OpenTelemetry stat sink pushes with Envoy's own Prometheus text.

  bench/otel-sink-compare.py receive PORT OUT.json   # OTLP/gRPC receiver: keeps the last push
  bench/otel-sink-compare.py compare TEXT OUT.json   # series of both, and where they differ

`receive` needs grpcio and opentelemetry-proto (`.venv/otlp/bin/python`, made by
`scripts/install-peers.sh otlp`); `compare` only the standard library.
bench/otel-sink-series.sh runs both against a real Envoy.

The sink names a metric by Envoy's tag-extracted stat name (`cluster.upstream_rq_total`) with
the tags as attributes (`envoy.cluster_name`); the text names it `envoy_` + the name with every
character outside [a-zA-Z0-9_] as `_`, tags the same way. Series are compared as label sets;
how many list their labels in another order than the text is counted. Histograms: the sink sends disjoint
bucket counts with explicit bounds, the text cumulative `_bucket{le=...}` lines, `_sum`, `_count`.
"""
import json
import os
import re
import sys


def receive(port, out):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as msg

    class Service(msg.MetricsServiceServicer):
        def Export(self, req, ctx):
            series = []
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        for p in getattr(m, kind).data_points:
                            attrs = [[a.key, a.value.string_value] for a in p.attributes]
                            if kind == "histogram":
                                v = {"count": p.count, "sum": p.sum, "bounds": list(p.explicit_bounds),
                                     "buckets": list(p.bucket_counts)}
                            else:
                                v = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                            series.append({"name": m.name, "kind": kind, "attrs": attrs, "value": v})
            with open(out + ".tmp", "w") as f:
                json.dump(series, f)
            os.replace(out + ".tmp", out)
            return ms.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_receive_message_length", 1 << 30)])
    msg.add_MetricsServiceServicer_to_server(Service(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def sanitize(s):
    return re.sub(r"[^a-zA-Z0-9_]", "_", s)


def compare(text_path, sink_path):
    kinds, text, order = {}, {}, {}
    for line in open(text_path):
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            kinds[name] = kind
            continue
        if line.startswith("#") or not line.strip():
            continue
        name, labels, value = re.match(r"([^{ ]+)(?:\{(.*)\})? (\S+)", line.strip()).groups()
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or "")
        order[(name, tuple(sorted(pairs)))] = [k for k, _ in pairs]
        pairs = sorted(pairs)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if kinds.get(base) == "histogram" and base != name:
            key = (base, tuple(p for p in pairs if p[0] != "le"))
            h = text.setdefault(key, {"buckets": [], "le": []})
            if name.endswith("_bucket"):
                h["le"].append(dict(pairs)["le"])
                h["buckets"].append(int(value))
            else:
                h[name[len(base) + 1:]] = float(value)
        else:
            text[(name, tuple(pairs))] = float(value)
    sink, reordered = {}, 0
    for p in json.load(open(sink_path)):
        pairs = [(sanitize(k), v) for k, v in p["attrs"]]
        key = ("envoy_" + sanitize(p["name"]), tuple(sorted(pairs)))
        sink[key] = p
        if p["kind"] != "histogram" and key in order and order[key] != [k for k, _ in pairs]:
            reordered += 1
    only_text = sorted(set(text) - set(sink))
    only_sink = sorted(set(sink) - set(text))
    differ = []
    for key in sorted(set(text) & set(sink)):
        t, s = text[key], sink[key]
        if s["kind"] == "histogram":
            v = s["value"]
            cumulative, total = [], 0
            for c in v["buckets"]:
                total += c
                cumulative.append(total)
            same = (t["buckets"] == cumulative and t.get("count") == v["count"]
                    and len(t["le"]) == len(v["bounds"]) + 1
                    and all(float(a) == b for a, b in zip(t["le"], v["bounds"])))
        else:
            same = t == float(s["value"])
        if not same:
            differ.append(key)
    print(f"text: {len(text)} series, sink: {len(sink)} series, in both: {len(set(text) & set(sink))}")
    print(f"labels in another order than the text's: {reordered}")
    print(f"only in the text: {len(only_text)}")
    for k in only_text:
        print("  ", k)
    print(f"only in the sink: {len(only_sink)}")
    for k in only_sink:
        print("  ", k)
    print(f"in both, other values (read at other instants): {len(differ)}")
    for k in differ:
        print("  ", k)


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        receive(int(sys.argv[2]), sys.argv[3])
    else:
        compare(sys.argv[2], sys.argv[3])
