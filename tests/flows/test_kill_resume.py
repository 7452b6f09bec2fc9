"""``kill -9`` of a running ``vgnn build`` and a rerun: the release ends up with exactly the rows
of an uninterrupted build, no duplicates and no half-written files."""

import signal
import subprocess
import sys
import time

import duckdb
import pytest

import vgnn_core
from storage.catalog import connect
from tests.conftest import TINY_ARCH as TINY


def test_sigkilled_build_resumes_to_identical_rows(tmp_path):
    import torch

    torch.manual_seed(0)
    ckpt = tmp_path / "kmvn.pt"
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind="kmvn", **TINY), ckpt)
    db = tmp_path / "db"
    cmd = [sys.executable, "-m", "flows.cli", "build", "--source", "demo", "--models", str(ckpt), "--out", str(db),
           "--release", "r", "--cluster", "none", "--atoms-per-shard", "6"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = db / "releases" / "r" / ".work" / "shards" / "demo"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if markers.is_dir() and len(list(markers.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the build finished before it could be killed; make the shards smaller")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(markers.glob("*.json")))
    assert not (db / "releases" / "r" / "manifest.json").exists()  # not a release yet
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    skipped = int(rerun.stdout.rsplit("(", 1)[1].split()[0])
    assert skipped >= done_before >= 3
    # the uninterrupted build in a process like the killed one's (the test process's thread
    # settings may differ, and float32 sums with them)
    uninterrupted = [tmp_path / "ref" if part == str(db) else part for part in cmd]
    ref = subprocess.run([str(part) for part in uninterrupted], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    resumed, clean = connect(db), connect(tmp_path / "ref")
    for table in ("structures", "bands", "thermo", "dos"):
        q = f"SELECT * EXCLUDE (bucket) FROM {table} ORDER BY material_id"
        a, b = resumed.execute(q).fetchall(), clean.execute(q).fetchall()
        assert len(a) == len(b) == 35, table
        assert a == b, table  # same code, same shards, same process settings: bit-identical
    # the killed run never finished: one runs row, counting every material of the release
    assert resumed.execute("SELECT n_written, n_failed FROM runs").fetchall() == [(35, 0)]
    for f in (db / "releases" / "r").rglob("*.parquet"):
        duckdb.execute(f"SELECT count(*) FROM read_parquet('{f}')").fetchone()  # every file is whole
