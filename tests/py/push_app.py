"""A pushing application on the OpenTelemetry Python SDK (opentelemetry-sdk with its OTLP/HTTP
protobuf exporter), for the push-input tests. With no endpoint configured the exporter sends to
http://localhost:4318/v1/metrics, the plugin's default OTLP/HTTP receiver.

Records at start, then exports every --interval seconds until killed:
  py.orders          counter 7 ({order}, attribute queue=q1)
  py.active          up-down counter 4 (+6 -2)
  py.temperature     gauge 19.25 (Cel)
  py.latency         histogram (s) of 0.05, 0.5, 2 on bounds [0.1, 1]
  py.size            exponential histogram (By) of 1, 3, 100
"""

import argparse
import signal
import sys
import time

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

ap = argparse.ArgumentParser()
ap.add_argument("--service-name", default="py-app")
ap.add_argument("--interval", type=float, default=0.5)
ap.add_argument("--delta", action="store_true")
args = ap.parse_args()

temporality = AggregationTemporality.DELTA if args.delta else AggregationTemporality.CUMULATIVE
exporter = OTLPMetricExporter(
    preferred_temporality={
        Counter: temporality,
        UpDownCounter: AggregationTemporality.CUMULATIVE,
        Histogram: temporality,
        ObservableCounter: temporality,
        ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    }
)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=int(args.interval * 1000))
provider = MeterProvider(
    metric_readers=[reader],
    resource=Resource.create({"service.name": args.service_name, "service.instance.id": "py-1"}),
    views=[
        View(instrument_name="py.size", aggregation=ExponentialBucketHistogramAggregation()),
        View(instrument_name="py.latency", aggregation=ExplicitBucketHistogramAggregation(boundaries=[0.1, 1.0])),
    ],
)
meter = provider.get_meter("push-app-py", "0.1")
meter.create_counter("py.orders", unit="{order}").add(7, {"queue": "q1"})
active = meter.create_up_down_counter("py.active")
active.add(6)
active.add(-2)
meter.create_gauge("py.temperature", unit="Cel").set(19.25)
latency = meter.create_histogram("py.latency", unit="s")
for v in (0.05, 0.5, 2.0):
    latency.record(v)
size = meter.create_histogram("py.size", unit="By")
for v in (1, 3, 100):
    size.record(v)
print("pushing", flush=True)


def stop(*_):
    provider.shutdown()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
