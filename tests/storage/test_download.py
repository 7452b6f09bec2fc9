"""``vgnn download URL``: a release from any static HTTP host, against a hostile server."""

import errno
import hashlib
import json
import re

import numpy as np
import pytest

from flows.cli import main
from storage.download import ReleaseDownloadError, check_release_name, download_release_url
from storage.release import Release, finalize_release, release_dir
from storage.rows import gamma_row
from storage.writer import write_shard
from tests.fakes.hostile_http import HostileServer, Reply
from vgnn_core.files import inside
from vgnn_core.io import http
from vgnn_core.io.http import http_session


@pytest.fixture
def served(tmp_path):
    """A real two-shard release served at /pub/r7, and the server."""
    rng = np.random.default_rng(3)
    rdir = release_dir(tmp_path / "src", "r7")
    for shard in range(2):
        rows = [gamma_row(f"mp-{shard}-{k}", "kmvn", "ef" * 32, rng.normal(250, 60, 9)) for k in range(20)]
        write_shard(rdir, "mp", f"s{shard}", {"gamma": rows})
    finalize_release(tmp_path / "src", "r7")
    server = HostileServer()
    base = server.start()
    server.serve_folder("/pub/r7", rdir)
    yield server, f"{base}/pub/r7", rdir
    server.stop()


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def fetch(url, out, **kw):
    return download_release_url(url, out, session=http_session(retries=2, backoff=0.01), timeout=5, **kw)


def serve_manifest(server, rdir, edit):
    manifest = json.loads((rdir / "manifest.json").read_text())
    edit(manifest)
    server.route("/pub/r7/manifest.json", Reply(json.dumps(manifest).encode(), ctype="application/json"))


def test_round_trip_is_verified_and_resumable(served, tmp_path):
    server, url, rdir = served
    out = fetch(url + "/", tmp_path / "dl")
    assert out == (tmp_path / "dl" / "r7").resolve()
    local, got = Release.open(rdir), Release.open(out)
    assert got.verify() == [] and got.manifest == local.manifest
    for f in local.manifest["files"]:
        assert (out / f["path"]).read_bytes() == (rdir / f["path"]).read_bytes()
    assert not list(out.rglob("*.part"))
    n = len(server.requests)  # a second run finds every file intact: only the manifest is read
    fetch(url + "/manifest.json", tmp_path / "dl")
    assert [p for p, _ in server.requests[n:]] == ["/pub/r7/manifest.json"]


@pytest.mark.parametrize("path, why", [
    ("../../evil.txt", "has an empty, '.' or '..' part"),
    ("gamma/../../../evil.txt", "has an empty, '.' or '..' part"),
    ("/tmp/evil.txt", "is absolute"),
    ("gamma/a\x00b.parquet", "contains a NUL byte"),
])
def test_manifest_paths_outside_the_release_are_refused(served, tmp_path, path, why):
    server, url, rdir = served
    serve_manifest(server, rdir, lambda m: m["files"][0].update(path=path))
    before = tree(tmp_path)
    with pytest.raises(ReleaseDownloadError, match=re.escape(f"unsafe path {path!r}: {why}")):
        fetch(url, tmp_path / "dl")
    assert tree(tmp_path) == before  # nothing written anywhere, not even the out folder


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x\x00y", ""])
def test_unsafe_release_names_are_refused(served, tmp_path, name):
    server, url, rdir = served
    serve_manifest(server, rdir, lambda m: m.update(name=name))
    before = tree(tmp_path)
    with pytest.raises(ReleaseDownloadError, match="must be one path component"):
        fetch(url, tmp_path / "dl")
    assert tree(tmp_path) == before
    with pytest.raises(ValueError, match="release name"):
        check_release_name(name)
    assert check_release_name("mp-20261125_v1.2") == "mp-20261125_v1.2"


def test_a_symlink_out_of_the_release_is_not_followed(served, tmp_path):
    server, url, _ = served
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "dl" / "r7").mkdir(parents=True)
    (tmp_path / "dl" / "r7" / "gamma").symlink_to(elsewhere)
    with pytest.raises(ReleaseDownloadError, match=r"unsafe path 'gamma/.*': resolves to .*, outside"):
        fetch(url, tmp_path / "dl")
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(ValueError, match="outside"):
        inside(tmp_path / "dl" / "r7", "gamma/x.parquet")


def test_html_manifest_wrong_digest_and_oversize_fail_cleanly(served, tmp_path):
    server, url, rdir = served
    server.route("/pub/r7/manifest.json", Reply(b"<!doctype html><title>Login</title>", ctype="text/html"))
    with pytest.raises(ReleaseDownloadError, match=r"manifest.json: not JSON \(text/html"):
        fetch(url, tmp_path / "dl")
    # a file whose bytes do not match the manifest: refused, the release never visible
    serve_manifest(server, rdir, lambda m: None)
    first = json.loads((rdir / "manifest.json").read_text())["files"][0]["path"]
    server.route(f"/pub/r7/{first}", Reply(b"x" * (rdir / first).stat().st_size))
    with pytest.raises(ReleaseDownloadError, match="corrupted download refused"):
        fetch(url, tmp_path / "dl")
    assert not (tmp_path / "dl" / "r7" / "manifest.json").exists()
    # a file with a megabyte more than announced: cut off, nothing of it on disk
    server.route(f"/pub/r7/{first}", Reply((rdir / first).read_bytes(), zeros=1 << 20, length=None))
    with pytest.raises(ReleaseDownloadError, match="more than the announced"):
        fetch(url, tmp_path / "dl")
    assert not (tmp_path / "dl" / "r7" / first).exists() and not list((tmp_path / "dl").rglob("*.part"))
    assert not (tmp_path / "dl" / "r7" / "manifest.json").exists()
    # the honest file again: the retry completes and only then is the release visible
    server.serve_folder("/pub/r7", rdir)
    assert Release.open(fetch(url, tmp_path / "dl")).verify() == []


def test_a_trickled_file_is_cut_off(served, tmp_path):
    server, url, rdir = served
    first = json.loads((rdir / "manifest.json").read_text())["files"][0]["path"]
    server.route(f"/pub/r7/{first}", Reply((rdir / first).read_bytes(), trickle_s=0.05))
    with pytest.raises(ReleaseDownloadError, match="not complete after the 0.8 s deadline"):
        fetch(url, tmp_path / "dl", deadline_s=0.8)
    assert not (tmp_path / "dl" / "r7" / "manifest.json").exists()


def test_cli_download_by_url(served, tmp_path, capsys, monkeypatch):
    server, url, rdir = served
    assert main(["download", url, "--out", str(tmp_path / "dl")]) == 0
    assert "verified release in" in capsys.readouterr().out
    digest = hashlib.sha256((rdir / "manifest.json").read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "dl" / "r7" / "manifest.json").read_bytes()).hexdigest() == digest
    # URL and --osf-project together, or neither: a usage error
    for argv in (["download", url, "--osf-project", "abc12", "--out", "x"], ["download", "--out", "x"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    # failures are one line on stderr and exit 2, never a traceback
    server.route("/pub/r7/manifest.json", Reply(b"<html>oops</html>", ctype="text/html"))
    assert main(["download", url, "--out", str(tmp_path / "dl2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not JSON" in err and err.count("\n") == 1
    server.serve_folder("/pub/r7", rdir)
    (tmp_path / "afile").write_text("")
    assert main(["download", url, "--out", str(tmp_path / "afile" / "dl")]) == 2  # out under a file
    err = capsys.readouterr().err
    assert "cannot write" in err and err.count("\n") == 1

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(http, "open", full, raising=False)
    assert main(["download", url, "--out", str(tmp_path / "dl3")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1
    assert not (tmp_path / "dl3" / "r7" / "manifest.json").exists()
