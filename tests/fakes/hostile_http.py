"""A static HTTP server on 127.0.0.1 that misbehaves on request.

Each path answers a scripted list of :class:`Reply` (consumed in order, the last repeated):
honest files with ``Range`` support, rate limits with ``Retry-After``, HTML error pages,
bodies longer than announced or than expected, and bodies trickled a byte at a time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Reply:
    """One scripted answer."""

    body: bytes = b""
    status: int = 200
    ctype: str = "application/octet-stream"
    headers: dict = field(default_factory=dict)
    length: int | None = -1  # Content-Length sent: -1 the body's, None none (ends at close)
    zeros: int = 0  # this many extra zero bytes streamed after the body
    trickle_s: float = 0.0  # pause after each single byte of the body
    ranges: bool = True  # answer a Range request with 206 + Content-Range


class HostileServer:
    def __init__(self):
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()

    def route(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def serve_folder(self, prefix: str, folder: Path) -> None:
        """Every file under ``folder`` at ``prefix/<relative path>``, honestly."""
        for path in folder.rglob("*"):
            if path.is_file():
                self.route(f"{prefix}/{path.relative_to(folder).as_posix()}", Reply(path.read_bytes()))

    def _next(self, path: str) -> Reply | None:
        with self.lock:
            replies = self.routes.get(path)
            if not replies:
                return None
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                path = unquote(urlparse(self.path).path)
                rng = self.headers.get("Range")
                server.requests.append((path, rng))
                reply = server._next(path)
                if reply is None:
                    reply = Reply(b"<html>404 Not Found</html>", 404, "text/html")
                body, status, extra = reply.body, reply.status, dict(reply.headers)
                if rng and status == 200 and reply.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                    body, status = body[start:], 206
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", reply.ctype)
                    if reply.length is not None:
                        n = len(body) + reply.zeros if reply.length == -1 else reply.length
                        self.send_header("Content-Length", str(n))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if reply.trickle_s:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(reply.trickle_s)
                    else:
                        self.wfile.write(body)
                    left = reply.zeros
                    block = b"\0" * (1 << 16)
                    while left > 0:
                        self.wfile.write(block[:left])
                        left -= len(block)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up, as it should

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
