"""OTLP metrics receiver for meshmetric's end-to-end tests, built on the official
opentelemetry-proto classes. Serves OTLP/gRPC and OTLP/HTTP (protobuf) and appends every
request it accepts to a JSON-lines file: {"transport", "headers", "request"}.

Behaviours for fault tests:
  --fail-first N   answer the first N exports with UNAVAILABLE (gRPC) / 503 (HTTP)
  --hang           never answer
  --tls-cert/--tls-key [--client-ca]   serve gRPC over TLS (mTLS when --client-ca is given)
"""
import argparse
import json
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

lock = threading.Lock()
state = {"seen": 0}


def record(args, transport, headers, req):
    with lock:
        with open(args.out, "a") as f:
            f.write(json.dumps({"transport": transport, "headers": headers, "request": MessageToDict(req)}) + "\n")


def should_fail(args):
    with lock:
        state["seen"] += 1
        return state["seen"] <= args.fail_first


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, args):
        self.args = args

    def Export(self, request, context):
        if self.args.hang:
            time.sleep(3600)
        if should_fail(self.args):
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        record(self.args, "grpc", {k: v for k, v in context.invocation_metadata()}, request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def http_handler(args):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            if args.hang:
                time.sleep(3600)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                import gzip
                body = gzip.decompress(body)
            if self.path != "/v1/metrics":
                self.send_response(404)
                self.end_headers()
                return
            if should_fail(args):
                self.send_response(503)
                self.send_header("retry-after", "1")
                self.end_headers()
                return
            req = metrics_service_pb2.ExportMetricsServiceRequest()
            req.ParseFromString(body)
            record(args, "http", {k.lower(): v for k, v in self.headers.items()}, req)
            out = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return H


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--http-port", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--hang", action="store_true")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--client-ca")
    args = p.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(args), server)
    addr = f"127.0.0.1:{args.grpc_port}"
    if args.tls_cert:
        creds = grpc.ssl_server_credentials(
            [(open(args.tls_key, "rb").read(), open(args.tls_cert, "rb").read())],
            root_certificates=open(args.client_ca, "rb").read() if args.client_ca else None,
            require_client_auth=bool(args.client_ca))
        server.add_secure_port(addr, creds)
    else:
        server.add_insecure_port(addr)
    server.start()
    if args.http_port:
        httpd = ThreadingHTTPServer(("127.0.0.1", args.http_port), http_handler(args))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
