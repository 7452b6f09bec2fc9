"""A GitHub stand-in on 127.0.0.1: the git trees API and raw file downloads of one commit."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class FakeGitHub:
    """Serves ``files`` ({path: bytes}) of ``repository`` at ``commit``; ``corrupt`` paths are
    served with one byte flipped, ``fail_first`` paths answer 503 once."""

    def __init__(self, repository: str, commit: str, files: dict[str, bytes]):
        self.repository, self.commit, self.files = repository, commit, files
        self.corrupt: set[str] = set()
        self.fail_first: set[str] = set()
        self.requests: list[str] = []

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes, kind: str = "application/octet-stream"):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = urlparse(self.path).path
                fake.requests.append(path)
                tree = f"/api/repos/{fake.repository}/git/trees/{fake.commit}"
                raw = f"/raw/{fake.repository}/{fake.commit}/"
                if path == tree:
                    entries = [{"path": p, "type": "blob", "size": len(d),
                                "sha": hashlib.sha1(f"blob {len(d)}\0".encode() + d).hexdigest()}
                               for p, d in fake.files.items()]
                    return self._send(200, json.dumps({"tree": entries, "truncated": False}).encode(), "application/json")
                if path.startswith(raw) and path[len(raw):] in fake.files:
                    name = path[len(raw):]
                    if name in fake.fail_first:
                        fake.fail_first.discard(name)
                        return self._send(503, b"busy")
                    data = fake.files[name]
                    if name in fake.corrupt:
                        data = bytes([data[0] ^ 1]) + data[1:]
                    return self._send(200, data)
                return self._send(404, b"not found")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
