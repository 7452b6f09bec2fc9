"""An in-memory OSF (API v2 listings) + WaterButler (uploads, downloads) on 127.0.0.1.

Besides the honest behaviour it can misbehave on request: 429s before listings, HTML instead
of JSON, hostile names and storage paths in listings (``add_folder``/``add_file``/``paths``),
bodies larger than announced, truncated or corrupted downloads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "s3cret-token"
PAGE = 10  # OSF's default page size; ``page[size]`` asks for up to MAX_PAGE
MAX_PAGE = 100


class FakeOSF:
    def __init__(self):
        self.ids = itertools.count(1)
        self.folders = {"root": {"name": "", "children": {}}}
        self.files: dict[str, dict] = {}
        self.log: list[tuple[str, str]] = []
        self.fail_next_put = 0
        self.truncate_downloads: set[str] = set()
        self.corrupt_downloads: set[str] = set()
        self.oversize_downloads: set[str] = set()  # sent with 1 MiB of extra bytes
        self.throttle_listings = 0  # answer this many listings with 429 + Retry-After first
        self.html_listings = False
        self.throttle_puts = 0  # answer this many uploads with 429 + Retry-After first
        self.foreign_next = False  # links.next points at another host
        self.paths: dict[str, str] = {}  # storage path shown in listings, by id (default /<id>)
        self.modified: dict[str, str] = {}
        self.lock = threading.Lock()

    def add_folder(self, parent: str, name: str) -> str:
        """A folder ``name`` (any string, hostile ones included) under folder id ``parent``."""
        new = str(next(self.ids))
        self.folders[new] = {"name": name, "children": {}}
        self.folders[parent]["children"][name] = new
        return new

    def add_file(self, parent: str, name: str, data: bytes) -> str:
        new = str(next(self.ids))
        self.files[new] = {"name": name, "data": data}
        self.modified[new] = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
        self.folders[parent]["children"][name] = new
        return new

    def folder_at(self, *names: str) -> str:
        """The id of the folder reached from the root through ``names``."""
        fid = "root"
        for name in names:
            fid = self.folders[fid]["children"][name]
        return fid

    def entry(self, fid):
        if fid in self.folders:
            f = self.folders[fid]
            return {"name": f["name"], "kind": "folder", "path": self.paths.get(fid, f"/{fid}/"), "size": None,
                    "extra": {}}
        f = self.files[fid]
        return {"name": f["name"], "kind": "file", "path": self.paths.get(fid, f"/{fid}"), "size": len(f["data"]),
                "date_modified": self.modified.get(fid),
                "extra": {"hashes": {"sha256": hashlib.sha256(f["data"]).hexdigest()}}}

    def start(self):
        osf = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body=b"", ctype="application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status, obj, headers=None):
                self._send(status, json.dumps(obj).encode(), headers=headers)

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                osf.log.append(("GET", self.path))
                parts = url.path.strip("/").split("/")
                base = f"http://127.0.0.1:{self.server.server_port}"
                if parts[:1] == ["v2"]:  # /v2/nodes/<node>/files/osfstorage[/<fid>]/
                    if osf.throttle_listings:
                        osf.throttle_listings -= 1
                        return self._json(429, {"errors": [{"detail": "slow down"}]}, {"Retry-After": "1"})
                    if osf.html_listings:
                        return self._send(200, b"<!DOCTYPE html><html><body>Maintenance</body></html>", "text/html")
                    fid = parts[5] if len(parts) > 5 else "root"
                    if fid not in osf.folders:
                        return self._json(404, {"errors": [{"detail": "Not found."}]})
                    kids = sorted(osf.folders[fid]["children"].values(), key=int)
                    q = parse_qs(url.query)
                    page = int(q.get("page", ["1"])[0])
                    size = min(MAX_PAGE, int(q.get("page[size]", [str(PAGE)])[0]))
                    chunk = kids[(page - 1) * size : page * size]
                    more = page * size < len(kids)
                    host = "http://evil.example" if osf.foreign_next else base
                    nxt = f"{host}{url.path}?page={page + 1}&page%5Bsize%5D={size}" if more else None
                    data = [{"id": k, "type": "files", "attributes": osf.entry(k)} for k in chunk]
                    return self._json(200, {"data": data, "links": {"next": nxt}})
                # /wb/v1/resources/<node>/providers/osfstorage/<fid>
                fid = parts[6] if len(parts) > 6 else None
                if fid not in osf.files:
                    return self._json(404, {"message": "not found"})
                data = osf.files[fid]["data"]
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                body = data[start:]
                if fid in osf.corrupt_downloads:
                    body = bytes(reversed(body))
                if fid in osf.oversize_downloads:
                    body = body + b"\0" * (1 << 20)
                if fid in osf.truncate_downloads:
                    osf.truncate_downloads.discard(fid)
                    self.send_response(206 if rng else 200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self._send(206 if rng else 200, body, "application/octet-stream")

            def do_PUT(self):  # noqa: N802
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                osf.log.append(("PUT", url.path + ("?name=" + q["name"] if "name" in q else "")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._json(401, {"message": "Authentication credentials were not provided."})
                with osf.lock:
                    if osf.throttle_puts:
                        osf.throttle_puts -= 1
                        return self._json(429, {"message": "slow down"}, {"Retry-After": "1"})
                    if osf.fail_next_put:
                        osf.fail_next_put -= 1
                        return self._json(503, {"message": "try again"})
                    parts = url.path.strip("/").split("/")
                    target = parts[6] if len(parts) > 6 and parts[6] else "root"
                    if target in osf.files and q.get("kind") == "file":  # new version
                        osf.files[target]["data"] = data
                        return self._json(200, {"data": {"attributes": osf.entry(target)}})
                    if target not in osf.folders:
                        return self._json(404, {"message": "not found"})
                    name = q["name"]
                    if name in osf.folders[target]["children"]:
                        return self._json(409, {"message": "conflict"})
                    new = str(next(osf.ids))
                    if q.get("kind") == "folder":
                        osf.folders[new] = {"name": name, "children": {}}
                    else:
                        osf.files[new] = {"name": name, "data": data}
                        osf.modified[new] = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
                    osf.folders[target]["children"][name] = new
                    return self._json(201, {"data": {"attributes": osf.entry(new)}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        port = self.httpd.server_port
        return f"http://127.0.0.1:{port}/v2", f"http://127.0.0.1:{port}/wb"

    def stop(self):
        self.httpd.shutdown()
