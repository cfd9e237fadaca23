"""Loopback HTTP endpoints on 127.0.0.1 (a thread with `http.server`): an OTLP/HTTP logs
collector that decodes every `ExportLogsServiceRequest`, and a stand-in for Dependency-Track's
BOM API that records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    url: str
    requests: list[Request] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)  # cleared: requests wait
    arrived: threading.Event = field(default_factory=threading.Event)


# (status, content type, body) and optionally a dict of more headers.
Reply = Callable[[Request, Endpoint], tuple[Any, ...]]


@contextmanager
def serve(reply: Reply) -> Iterator[Endpoint]:
    endpoint = Endpoint("")
    endpoint.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                          self.rfile.read(length))
            endpoint.requests.append(req)
            endpoint.arrived.set()
            endpoint.gate.wait(30)
            status, ctype, body, *extra = reply(req, endpoint)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.gate.set()
        server.shutdown()
        server.server_close()


def otlp_reply(req: Request, endpoint: Endpoint) -> tuple[int, str, bytes]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceResponse,
    )

    if req.method != "POST" or req.path != "/v1/logs":
        return 404, "text/plain", b"not found"
    return 200, "application/x-protobuf", ExportLogsServiceResponse().SerializeToString()


def decode_logs(endpoint: Endpoint) -> list[dict[str, Any]]:
    """Every log record the collector received, flattened: resource, attributes, body."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    def value(v: Any) -> Any:
        kind = v.WhichOneof("value")
        return getattr(v, kind) if kind else None

    out = []
    for req in endpoint.requests:
        assert req.method == "POST" and req.path == "/v1/logs"
        assert req.headers["content-type"] == "application/x-protobuf"
        msg = ExportLogsServiceRequest()
        msg.ParseFromString(req.body)
        for rl in msg.resource_logs:
            res = {a.key: value(a.value) for a in rl.resource.attributes}
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    out.append({"resource": res, "scope": sl.scope.name,
                                "attributes": {a.key: value(a.value) for a in rec.attributes},
                                "body": value(rec.body), "time_unix_nano": rec.time_unix_nano,
                                "severity": rec.severity_text, "event_name": rec.event_name})
    return out


def json_reply(status: int, obj: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj).encode()
