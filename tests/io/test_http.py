"""The shared downloader against a hostile server: bounded size and time, stale .part, 429s."""

import errno
import hashlib
import time

import pytest

from tests.fakes.hostile_http import HostileServer, Reply
from vgnn_core.io import http
from vgnn_core.io.http import (
    DownloadError,
    download_verified,
    fetch_bytes,
    http_session,
    parse_json,
)

DATA = bytes(range(256)) * 16  # a 4 kB file
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def hostile():
    server = HostileServer()
    base = server.start()
    yield server, base
    server.stop()


def session():
    return http_session(retries=3, backoff=0.01)


def nothing_left(folder):
    return sorted(p.name for p in folder.iterdir()) == []


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "close-delimited"])
def test_300_mb_for_a_4_kb_file_never_lands_on_disk(hostile, tmp_path, announced):
    server, base = hostile
    server.route("/f", Reply(DATA, zeros=300_000_000, length=-1 if announced else None))
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="more than the (announced|expected) 4096"):
        download_verified(session(), f"{base}/f", tmp_path / "f.bin", size=len(DATA), digest=SHA)
    assert time.monotonic() - t0 < 5
    assert nothing_left(tmp_path)  # neither f.bin nor f.bin.part


def test_a_trickling_server_is_cut_off_at_the_deadline(hostile, tmp_path):
    server, base = hostile
    server.route("/f", Reply(DATA, trickle_s=0.05))  # 4096 bytes at 20 B/s: 200 s
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="not complete after the 1 s deadline"):
        download_verified(session(), f"{base}/f", tmp_path / "f.bin", size=len(DATA), digest=SHA,
                          timeout=5, deadline_s=1.0)
    assert time.monotonic() - t0 < 2.5
    assert nothing_left(tmp_path)
    assert http.default_deadline(4096) == pytest.approx(120 + 4096 / 50_000)  # a trickle at 1 B / 3 s: cut after ~2 min


def test_a_stale_part_never_blocks_a_retry(hostile, tmp_path):
    server, base = hostile
    server.route("/f", Reply(DATA))
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"\xff" * 1000)  # from an earlier run of another version
    download_verified(session(), f"{base}/f", dest, size=len(DATA), digest=SHA)
    assert dest.read_bytes() == DATA and not (tmp_path / "f.bin.part").exists()
    # the stale bytes were resumed once (Range), failed the sha256, then fetched whole
    assert [r for _, r in server.requests] == ["bytes=1000-", None]
    # a .part longer than the file and one of full length but wrong are discarded as well
    for stale in (b"\0" * 5000, b"\0" * len(DATA)):
        dest.unlink()
        (tmp_path / "f.bin.part").write_bytes(stale)
        download_verified(session(), f"{base}/f", dest, size=len(DATA), digest=SHA)
        assert dest.read_bytes() == DATA


def test_wrong_sha256_is_refused_and_nothing_kept(hostile, tmp_path):
    server, base = hostile
    server.route("/f", Reply(DATA[::-1]))
    with pytest.raises(DownloadError, match="sha256 .* does not match the expected .*corrupted download refused"):
        download_verified(session(), f"{base}/f", tmp_path / "f.bin", size=len(DATA), digest=SHA)
    assert nothing_left(tmp_path)


def test_429_with_retry_after_is_honoured_and_capped(hostile, tmp_path, monkeypatch):
    server, base = hostile
    server.route("/f", Reply(status=429, headers={"Retry-After": "1"}), Reply(DATA))
    t0 = time.monotonic()
    download_verified(session(), f"{base}/f", tmp_path / "a.bin", size=len(DATA), digest=SHA)
    assert time.monotonic() - t0 >= 0.9  # waited as told
    assert (tmp_path / "a.bin").read_bytes() == DATA
    # a server asking for a day's wait gets MAX_RETRY_AFTER_S at most
    monkeypatch.setattr(http, "MAX_RETRY_AFTER_S", 0.2)
    server.route("/g", Reply(status=429, headers={"Retry-After": "86400"}), Reply(status=503), Reply(DATA))
    t0 = time.monotonic()
    download_verified(session(), f"{base}/g", tmp_path / "g.bin", size=len(DATA), digest=SHA)
    assert time.monotonic() - t0 < 2 and (tmp_path / "g.bin").read_bytes() == DATA
    # retries are bounded: a server that always says 429 is named
    server.route("/h", Reply(status=429, headers={"Retry-After": "0"}))
    with pytest.raises(DownloadError, match="HTTP 429"):
        download_verified(session(), f"{base}/h", tmp_path / "h.bin", size=len(DATA), digest=SHA)


def test_disk_full_is_a_one_line_error(hostile, tmp_path, monkeypatch):
    server, base = hostile
    server.route("/f", Reply(DATA))

    class Full:
        def __init__(self, *a):
            pass

        def write(self, chunk):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(http, "open", Full, raising=False)
    with pytest.raises(DownloadError, match=r"f.bin: cannot write .*f.bin.part: No space left on device"):
        download_verified(session(), f"{base}/f", tmp_path / "f.bin", size=len(DATA), digest=SHA)


def test_html_instead_of_json_is_named(hostile):
    server, base = hostile
    server.route("/m.json", Reply(b"<!DOCTYPE html>\n<html><body>Service unavailable</body></html>",
                                  ctype="text/html; charset=utf-8"))
    body, ctype = fetch_bytes(session(), f"{base}/m.json", max_bytes=1000)
    with pytest.raises(DownloadError, match=r"m.json: not JSON \(text/html, begins '<!DOCTYPE html> <html>"):
        parse_json(body, ctype, "m.json")
    server.route("/big.json", Reply(b"[" + b"0," * 5000 + b"0]", ctype="application/json"))
    with pytest.raises(DownloadError, match="more than the 1000 accepted"):
        fetch_bytes(session(), f"{base}/big.json", max_bytes=1000)
