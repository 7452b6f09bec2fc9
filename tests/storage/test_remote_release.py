"""A published release read over HTTP: DuckDB gets the file list from the manifest (no glob)."""

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from storage.catalog import connect
from storage.release import Release, finalize_release, release_dir
from storage.rows import gamma_row
from storage.writer import write_shard


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HTTP Range support, as a CDN or OSF would serve them."""

    requests_seen: list = []

    def log_message(self, *a):
        pass

    def send_head(self):
        self.requests_seen.append((self.command, self.path, self.headers.get("Range")))
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng:
            return super().send_head()
        try:
            data = open(path, "rb").read()
        except OSError:
            self.send_error(404)
            return None
        start, end = rng.split("=")[1].split("-")
        start, end = int(start), (int(end) if end else len(data) - 1)
        body = data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)


@pytest.fixture
def served_release(tmp_path):
    rng = np.random.default_rng(1)
    rdir = release_dir(tmp_path, "r7")
    for shard in range(2):
        rows = [gamma_row(f"mp-{shard}-{k}", "kmvn", "cd" * 32, rng.normal(300, 80, 9)) for k in range(25)]
        write_shard(rdir, "mp", f"s{shard}", {"gamma": rows})
    finalize_release(tmp_path, "r7")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{httpd.server_port}/releases/r7"
    httpd.shutdown()


def test_remote_release_matches_local(served_release):
    root, url = served_release
    RangeHandler.requests_seen.clear()
    remote = Release.open(url)
    assert remote.is_remote and all(f.startswith(url) for f in remote.files("gamma"))
    sql = "SELECT material_id, source, bucket, frequencies_cm1 FROM gamma ORDER BY material_id"
    assert connect(url).execute(sql).fetchall() == connect(root).execute(sql).fetchall()
    # only files the manifest lists were requested: no directory listing, no glob over HTTP
    listed = {"/releases/r7/" + f["path"] for f in remote.manifest["files"]} | {"/releases/r7/manifest.json"}
    assert {p for _, p, _ in RangeHandler.requests_seen} <= listed
