"""The figshare client against a local server that answers like figshare's API v2."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vgnn_core.io.figshare import DownloadError, FigshareClient, download_collection

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class FakeFigshare(BaseHTTPRequestHandler):
    behaviour: dict = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server API
        b = self.behaviour
        b.setdefault("log", []).append((self.path, self.headers.get("Range")))
        base = f"http://127.0.0.1:{self.server.server_port}"
        if self.path.startswith("/v2/collections/42/articles"):
            page = int(self.path.split("page=")[1].split("&")[0])
            return self._json([{"id": 7, "title": "phonons"}] if page == 1 else [])
        if self.path == "/v2/articles/7/files":
            md5 = b.get("md5", hashlib.md5(PAYLOAD).hexdigest())
            return self._json([
                {"id": 1, "name": "phonon.tar.gz", "size": len(PAYLOAD), "computed_md5": md5,
                 "download_url": f"{base}/files/1", "is_link_only": False},
                {"id": 2, "name": "README.txt", "size": 3, "computed_md5": "x",
                 "download_url": f"{base}/files/2", "is_link_only": False},
            ])
        if self.path == "/files/1":
            plan = b.setdefault("plan", [])
            action = plan.pop(0) if plan else "ok"
            if action == "503":
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
            data = PAYLOAD[start:]
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if action == "truncate":
                self.wfile.write(data[: len(data) // 3])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(data)
            return
        self._json({"message": "not found"}, status=404)


@pytest.fixture
def server():
    FakeFigshare.behaviour = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeFigshare)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, FakeFigshare.behaviour
    httpd.shutdown()


def client(httpd):
    return FigshareClient(api=f"http://127.0.0.1:{httpd.server_port}/v2", retries=4, backoff=0.01, timeout=5)


def test_download_with_retry_and_resume(server, tmp_path):
    httpd, behaviour = server
    behaviour["plan"] = ["503", "truncate", "ok"]
    paths = download_collection(tmp_path, collection_id=42, pattern="*.tar.gz", client=client(httpd))
    assert [p.name for p in paths] == ["phonon.tar.gz"]
    assert paths[0].read_bytes() == PAYLOAD
    ranges = [r for path, r in behaviour["log"] if path == "/files/1"]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert not list(tmp_path.glob("*.part"))
    # a second call verifies the cached file and downloads nothing
    n = len(behaviour["log"])
    download_collection(tmp_path, collection_id=42, pattern="*.tar.gz", client=client(httpd))
    assert not [p for p, _ in behaviour["log"][n:] if p == "/files/1"]


def test_corrupted_file_is_refused(server, tmp_path):
    httpd, behaviour = server
    behaviour["md5"] = "0" * 32
    with pytest.raises(DownloadError, match="md5 .* does not match"):
        download_collection(tmp_path, collection_id=42, pattern="*.tar.gz", client=client(httpd))
    assert not (tmp_path / "phonon.tar.gz").exists() and not list(tmp_path.glob("*.part"))


def test_missing_collection_is_a_clear_error(server, tmp_path):
    httpd, _ = server
    with pytest.raises(DownloadError, match="404"):
        client(httpd).collection_files(99)
