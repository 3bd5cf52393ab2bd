"""A threaded HTTP server on a free 127.0.0.1 port, run in a daemon thread (base for the protocol servers)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ServerThread", "Handler"]


class Handler(BaseHTTPRequestHandler):
    """Request handler with body/query helpers; subclasses implement ``route(method)``."""

    protocol_version = "HTTP/1.1"
    server_version = "apt-test-server"

    def log_message(self, *args):  # keep test output clean
        pass

    @property
    def app(self):
        return self.server.app  # type: ignore[attr-defined]

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    @property
    def split(self):
        return urlsplit(self.path)

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.split.query, keep_blank_values=True))

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/octet-stream") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _dispatch(self) -> None:
        try:
            self.route(self.command)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch

    def route(self, method: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ServerThread:
    """Run *handler_cls* with ``server.app = app`` on 127.0.0.1 until :meth:`stop`."""

    def __init__(self, handler_cls, app) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self._server.daemon_threads = True
        self._server.app = app  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
