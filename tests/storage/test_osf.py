"""OSF publish and download against a local server speaking OSF's API v2 and WaterButler."""

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
