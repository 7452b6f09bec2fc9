"""OSF publish and download against a local server speaking OSF's API v2 and WaterButler."""

import json
import time

import numpy as np
import pytest

from storage.osf import OSFClient, OSFError, download_release, publish
from storage.release import Release, finalize_release, release_dir
from storage.rows import gamma_row
from storage.writer import write_shard
from tests.fakes.osf import TOKEN, FakeOSF


@pytest.fixture
def osf():
    server = FakeOSF()
    api, wb = server.start()
    yield server, api, wb
    server.stop()


@pytest.fixture
def local_release(tmp_path):
    rng = np.random.default_rng(0)
    rdir = release_dir(tmp_path / "db", "2026-11-25")
    for shard in range(3):
        rows = [gamma_row(f"mp-{shard}-{k}", "kmvn", "ab" * 32, rng.normal(300, 100, 12)) for k in range(40)]
        write_shard(rdir, "mp", f"s{shard}", {"gamma": rows})
    finalize_release(tmp_path / "db", "2026-11-25")
    return rdir


def client(api, wb, token=TOKEN):
    return OSFClient(token=token, api=api, waterbutler=wb, retries=4, backoff=0.01, timeout=5)


def test_publish_then_download_round_trip(osf, local_release, tmp_path):
    server, api, wb = osf
    server.fail_next_put = 1  # a 503 on the first upload is retried
    result = publish(local_release, "abc12", client(api, wb))
    n_files = len(Release.open(local_release).manifest["files"]) + 1
    assert result == {"release": "2026-11-25", "uploaded": n_files, "skipped": 0}
    puts = [p for m, p in server.log if m == "PUT" and "name=" in p and not p.endswith(("releases", "2026-11-25"))]
    assert puts[-1].endswith("name=manifest.json")  # manifest last
    assert publish(local_release, "abc12", client(api, wb))["uploaded"] == 0  # resumable: all skipped
    # download, with one file cut off half-way: resumed with a Range request
    first = next(fid for fid, f in server.files.items() if f["name"].endswith(".parquet"))
    server.truncate_downloads.add(first)
    out = download_release("abc12", tmp_path / "dl", client=client(api, wb, token=None))
    assert out.name == "2026-11-25"
    assert Release.open(out).verify() == []
    for f in Release.open(local_release).manifest["files"]:
        assert (out / f["path"]).read_bytes() == (local_release / f["path"]).read_bytes()


def test_bad_token_is_refused_and_not_leaked(osf, local_release):
    server, api, wb = osf
    with pytest.raises(OSFError, match="authentication failed") as info:
        publish(local_release, "abc12", client(api, wb, token="wrong-token"))
    assert "wrong-token" not in str(info.value)


def test_corrupted_download_refused(osf, local_release, tmp_path):
    server, api, wb = osf
    publish(local_release, "abc12", client(api, wb))
    bad = next(fid for fid, f in server.files.items() if f["name"].endswith(".parquet"))
    server.corrupt_downloads.add(bad)
    with pytest.raises(OSFError, match="corrupted download refused"):
        download_release("abc12", tmp_path / "dl", client=client(api, wb))
    assert not (tmp_path / "dl" / "2026-11-25" / "manifest.json").exists()


def test_missing_release(osf, tmp_path):
    server, api, wb = osf
    with pytest.raises(OSFError, match="not found"):
        download_release("abc12", tmp_path, release="nope", client=client(api, wb))


# -- hostile or unusual OSF answers (issues #16, #17) ---------------------------------------

def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def make_release(root, name, created_at, seed):
    rng = np.random.default_rng(seed)
    rdir = release_dir(root, name)
    rows = [gamma_row(f"mp-{seed}-{k}", "kmvn", "ab" * 32, rng.normal(300, 100, 6)) for k in range(10)]
    write_shard(rdir, "mp", "s0", {"gamma": rows})
    finalize_release(root, name)
    manifest = json.loads((rdir / "manifest.json").read_text())
    manifest["created_at"] = created_at
    (rdir / "manifest.json").write_text(json.dumps(manifest))
    return rdir


def test_newest_release_is_the_last_created_not_the_last_by_name(osf, tmp_path):
    server, api, wb = osf
    c = client(api, wb)
    publish(make_release(tmp_path / "a", "zeolites-20261101", "2026-11-01T10:00:00+00:00", 1), "abc12", c)
    publish(make_release(tmp_path / "b", "mp-20261125", "2026-11-25T09:00:00+00:00", 2), "abc12", c)
    server.add_folder(server.folder_at("releases"), "zz-half-published")  # no manifest: never chosen
    out = download_release("abc12", tmp_path / "dl", client=client(api, wb))
    assert out.name == "mp-20261125" and Release.open(out).verify() == []
    assert Release.open(out).manifest["created_at"].startswith("2026-11-25")


def test_listings_are_paged_by_100_and_429s_are_waited_out(osf, local_release, tmp_path):
    server, api, wb = osf
    folder = server.add_folder("root", "many")
    for k in range(250):
        server.add_file(folder, f"f{k:03d}.txt", b"x")
    server.throttle_listings = 1  # a 429 with Retry-After: 1 before the first page
    t0 = time.monotonic()
    entries = client(api, wb).list_folder("abc12", f"/{folder}/")
    assert time.monotonic() - t0 >= 0.9
    assert sorted(entries) == [f"f{k:03d}.txt" for k in range(250)]
    pages = [p for m, p in server.log if m == "GET" and f"/{folder}/" in p and p.startswith("/v2/")]
    assert len(pages) == 3 + 1 and "page%5Bsize%5D=100" in pages[0]  # one 429, then 3 pages of 100
    # uploads honour 429 as well
    server.throttle_puts = 1
    assert publish(local_release, "abc12", client(api, wb))["release"] == "2026-11-25"


def test_hostile_listings_are_refused(osf, local_release, tmp_path):
    server, api, wb = osf
    publish(local_release, "abc12", client(api, wb))
    out = tmp_path / "dl"
    out.mkdir()
    before = tree(tmp_path)
    dotdot = server.add_folder(server.folder_at("releases"), "..")
    with pytest.raises(OSFError, match=r"unsafe entry name '\.\.'"):
        download_release("abc12", out, client=client(api, wb))
    with pytest.raises(OSFError, match=r"release name '\.\./x': must be one path component"):
        download_release("abc12", out, release="../x", client=client(api, wb))
    del server.folders[server.folder_at("releases")]["children"][".."], server.folders[dotdot]
    release_fid = server.folder_at("releases", "2026-11-25")
    server.paths[release_fid] = "/../../v2/nodes"
    with pytest.raises(OSFError, match=r"unsafe storage path '/\.\./\.\./v2/nodes'"):
        download_release("abc12", out, client=client(api, wb))
    del server.paths[release_fid]
    folder = server.add_folder("root", "paged")
    for k in range(120):
        server.add_file(folder, f"f{k}", b"")
    server.foreign_next = True
    with pytest.raises(OSFError, match="links.next 'http://evil.example/.*' leaves 127.0.0.1"):
        client(api, wb).list_folder("abc12", f"/{folder}/")
    server.foreign_next = False
    server.html_listings = True
    with pytest.raises(OSFError, match=r"not JSON \(text/html, begins '<!DOCTYPE html>"):
        download_release("abc12", out, client=client(api, wb))
    assert tree(tmp_path) == before


def test_manifest_paths_cannot_escape_and_oversized_files_are_cut(osf, local_release, tmp_path):
    server, api, wb = osf
    publish(local_release, "abc12", client(api, wb))
    manifest_fid = server.folders[server.folder_at("releases", "2026-11-25")]["children"]["manifest.json"]
    honest = server.files[manifest_fid]["data"]
    out = tmp_path / "dl"
    out.mkdir()
    before = tree(tmp_path)
    for path in ("../../escaped.parquet", "/etc/escaped"):
        m = json.loads(honest)
        m["files"][0]["path"] = path
        server.files[manifest_fid]["data"] = json.dumps(m).encode()
        with pytest.raises(OSFError, match=f"unsafe path '{path}'"):
            download_release("abc12", out, client=client(api, wb))
        assert tree(tmp_path) == before
    server.files[manifest_fid]["data"] = honest
    big = next(fid for fid, f in server.files.items() if f["name"].endswith(".parquet"))
    server.oversize_downloads.add(big)
    with pytest.raises(OSFError, match="more than the"):
        download_release("abc12", out, client=client(api, wb))
    assert not list(out.rglob("*.part")) and not (out / "2026-11-25" / "manifest.json").exists()
    server.oversize_downloads.clear()
    assert Release.open(download_release("abc12", out, client=client(api, wb))).verify() == []


def test_publish_refuses_a_local_manifest_pointing_outside(osf, local_release):
    server, api, wb = osf
    m = json.loads((local_release / "manifest.json").read_text())
    m["files"][0]["path"] = "../../../../etc/hostname"
    (local_release / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(OSFError, match=r"'\.\./\.\./\.\./\.\./etc/hostname'") as info:
        publish(local_release, "abc12", client(api, wb))
    assert "escapes" in str(info.value) or "unsafe path" in str(info.value)
    assert not [p for m, p in server.log if m == "PUT"]  # nothing uploaded
