#!/usr/bin/env python3
"""Writes a mesh for the control-plane benchmarks: gen-mesh.py N P -> N Dataplanes (dp-0 ...,
a quarter labelled team=b) and P MeshMetric policies of every targetRef kind, as YAML."""
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
