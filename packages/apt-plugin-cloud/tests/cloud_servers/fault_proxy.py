"""A fault-injecting HTTP reverse proxy for the transfer tests.

It forwards requests unchanged (the ``Host`` header included, so S3 signatures still verify) to an
upstream server, except for the requests a queued fault matches:

``503``            answer ``503 SlowDown`` (S3 XML body) without forwarding
``429``            answer ``429`` with ``Retry-After: <seconds>``
``cut_request``    read half the request body, then drop the connection (no response)
``cut_response``   forward, then send the headers and half the body and drop the connection
``corrupt_request``   flip one byte of the request body before forwarding
``corrupt_response``  flip one byte of the response body
``delay``          sleep ``seconds`` before forwarding
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FaultProxy", "Fault"]

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    kind: str
    method: str | None = None
    path_contains: str | None = None
    times: int = 1
    seconds: float = 1.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.hits < self.times and (self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


@dataclass
class FaultProxy:
    upstream_port: int
    faults: list[Fault] = field(default_factory=list)
    injected: list[tuple[str, str, str]] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                fault = proxy._take(self.command, self.path)
                kind = fault.kind if fault else None
                if kind == "cut_request":
                    length = int(self.headers.get("Content-Length") or 0)
                    self.rfile.read(length // 2)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = self._body()
                if kind in ("503", "429"):
                    status = int(kind)
                    payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                               b"<Message>Please reduce your request rate.</Message></Error>") if status == 503 \
                        else b'{"error": "rate limited"}'
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", str(fault.seconds))
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if kind == "delay":
                    time.sleep(fault.seconds)
                if kind == "corrupt_request" and body:
                    body = _flip(body)
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
                upstream.close()
                if kind == "corrupt_response" and data:
                    data = _flip(data)
                self.send_response(reply.status, reply.reason)
                for name, value in reply.getheaders():
                    if name.lower() not in _HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if kind == "cut_response" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests += 1
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    self.injected.append((fault.kind, method, path))
                    return fault
        return None

    def add(self, kind: str, method: str | None = None, path_contains: str | None = None, times: int = 1,
            seconds: float = 1.0) -> Fault:
        fault = Fault(kind, method, path_contains, times, seconds)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.injected.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
