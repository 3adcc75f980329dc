"""A real OTLP/gRPC receiver for tests/otlp_grpc.rs: grpcio serving the
opentelemetry-proto package's TraceService on 127.0.0.1:PORT.

Each Export call is written as one JSON line to OUT: the request as the
service decoded it (protobuf bytes, hex), its metadata, and the status
answered. The first answers can be scripted: --answers UNAVAILABLE,OK
(RESOURCE_EXHAUSTED_RETRY is RESOURCE_EXHAUSTED with a RetryInfo of
--retry-ms). --partial N answers OK with a partial success rejecting N
spans. --delay-ms MS answers that late. --tls CERT KEY serves TLS; --client-ca CA also requires a client
certificate signed by CA.

usage: otlp_grpc_receiver.py PORT OUT [--tls CERT KEY] [--client-ca CA]
       [--answers A,B,...] [--retry-ms MS] [--partial N] [--delay-ms MS]
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def status_details(retry_ms):
    """A google.rpc.Status with a RetryInfo, encoded by hand (the
    googleapis-common-protos types may be absent)."""

    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def field(num, payload):
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    seconds, ms = divmod(retry_ms, 1000)
    duration = varint(1 << 3) + varint(seconds) + varint(2 << 3) + varint(ms * 1_000_000)
    retry_info = field(1, duration)
    any_ = field(1, b"type.googleapis.com/google.rpc.RetryInfo") + field(2, retry_info)
    return varint(1 << 3) + varint(8) + field(3, any_)


class Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out, answers, retry_ms, partial, delay_ms):
        self.delay_ms = delay_ms
        self.out = out
        self.answers = answers
        self.retry_ms = retry_ms
        self.partial = partial
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            answer = self.answers.pop(0) if self.answers else "OK"
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        record = {
            "time": time.time(),
            "answer": answer,
            # What the client's grpc-timeout left (seconds), or null.
            "time_remaining": context.time_remaining(),
            "metadata": metadata,
            "request": request.SerializeToString().hex(),
        }
        with self.lock, open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        if answer == "RESOURCE_EXHAUSTED_RETRY":
            context.abort_with_status(_Status(grpc.StatusCode.RESOURCE_EXHAUSTED, self.retry_ms))
        if answer != "OK":
            context.abort(getattr(grpc.StatusCode, answer), f"scripted {answer}")
        response = trace_service_pb2.ExportTraceServiceResponse()
        if self.partial:
            response.partial_success.rejected_spans = self.partial
            response.partial_success.error_message = "too old"
        return response


class _Status(grpc.Status):
    def __init__(self, code, retry_ms):
        self.code = code
        self.details = "slow down"
        self.trailing_metadata = (("grpc-status-details-bin", status_details(retry_ms)),)


def main():
    args = sys.argv[1:]
    port, out = int(args[0]), args[1]
    tls = client_ca = None
    answers, retry_ms, partial, delay_ms = [], 1000, 0, 0
    i = 2
    while i < len(args):
        if args[i] == "--tls":
            tls = (args[i + 1], args[i + 2])
            i += 3
        elif args[i] == "--client-ca":
            client_ca = args[i + 1]
            i += 2
        elif args[i] == "--answers":
            answers = [a for a in args[i + 1].split(",") if a]
            i += 2
        elif args[i] == "--retry-ms":
            retry_ms = int(args[i + 1])
            i += 2
        elif args[i] == "--delay-ms":
            delay_ms = int(args[i + 1])
            i += 2
        elif args[i] == "--partial":
            partial = int(args[i + 1])
            i += 2
        else:
            sys.exit(f"unknown argument {args[i]}")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        Service(out, answers, retry_ms, partial, delay_ms), server
    )
    address = f"127.0.0.1:{port}"
    if tls:
        with open(tls[0], "rb") as f:
            cert = f.read()
        with open(tls[1], "rb") as f:
            key = f.read()
        root = None
        if client_ca:
            with open(client_ca, "rb") as f:
                root = f.read()
        creds = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=root, require_client_auth=bool(client_ca)
        )
        server.add_secure_port(address, creds)
    else:
        server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
