"""Rebuilding into an existing release: it ends with exactly the rows of a fresh build of the
same inputs (added inputs in, removed ones out, edited ones recomputed, untouched shards
reused); another source never lands in the same release; a build with nothing written makes
no release and fails."""

import json

import numpy as np
import pyarrow.dataset as ds
import pytest

import vgnn_core
from flows.cli import main
from flows.local import build
from flows.plan import BuildError, BuildSettings
from flows.sources import demo_structures
from storage.catalog import connect
from storage.release import Release, release_dir
from storage.schema import TABLES, schema
from tests.conftest import TINY_ARCH as TINY

SETTINGS = BuildSettings(atoms_per_shard=4, mesh_density=10.0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = []
    for kind in ("mvn", "kmvn"):
        vgnn_core.save_checkpoint(vgnn_core.VGNN(kind=kind, **TINY), d / f"{kind}.pt")
        paths.append(str(d / f"{kind}.pt"))
    return paths


@pytest.fixture(scope="module")
def small():
    """Demo crystals of one or two atoms, by id."""
    return {mid: s for mid, s in demo_structures() if len(s) <= 2}


def write(folder, structures):
    folder.mkdir(exist_ok=True)
    for mid, s in structures.items():
        s.to(filename=str(folder / f"{mid}.cif"))


def rows(root, table):
    """Every row of ``table`` (without the run id, which names the build that made it), sorted."""
    con = connect(root)
    cols = [f.name for f in schema(table) if f.name != "run_id"] + ["source", "bucket"]
    return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY ALL").fetchall()


def test_rebuild_after_adding_removing_and_editing_equals_a_fresh_build(tmp_path, checkpoints, small):
    ids = sorted(small)
    first, added = ids[:12], ids[12:14]
    src = tmp_path / "in"
    write(src, {m: small[m] for m in first})
    (src / "broken.cif").write_text("")  # an input failure, kept across the rebuild
    db = tmp_path / "db"
    one = build(f"dir:{src}", checkpoints, db, release="r", settings=SETTINGS, progress=None)
    assert (one["written"], one["failed"], one["reused"]) == (12, 1, 0) and one["shards"] >= 5

    removed, edited = first[3], first[7]
    write(src, {m: small[m] for m in added})
    (src / f"{removed}.cif").unlink()
    bigger = small[edited].copy()
    bigger.scale_lattice(bigger.volume * 1.05**3)  # every lattice constant 5 % longer
    bigger.to(filename=str(src / f"{edited}.cif"))
    again = build(f"dir:{src}", checkpoints, db, release="r", settings=SETTINGS, progress=None)
    fresh = build(f"dir:{src}", checkpoints, tmp_path / "fresh", release="r", settings=SETTINGS, progress=None)

    assert (again["written"], again["failed"]) == (fresh["written"], fresh["failed"]) == (13, 1)
    assert again["shards"] == fresh["shards"] and fresh["skipped_shards"] == 0
    assert 0 < again["skipped_shards"] < again["shards"] and again["removed_shards"] >= 1
    assert again["computed"] + again["reused"] == 14 and again["reused"] >= 1
    for table in TABLES:
        if table == "runs":
            continue
        got, want = rows(db, table), rows(tmp_path / "fresh", table)
        assert got == want, table  # same ids, same values, nothing stale
        assert len(got) == (1 if table == "failures" else 13), table
    con = connect(db)
    assert {m for (m,) in con.execute("SELECT material_id FROM structures").fetchall()} == \
        set(first + added) - {removed}
    a = con.execute("SELECT lattice_vectors FROM structures WHERE material_id = ?", [edited]).fetchone()[0]
    lengths = sorted(np.linalg.norm(np.array(a), axis=1))
    assert lengths == pytest.approx(sorted(bigger.lattice.abc), rel=1e-6)  # the edit was recomputed, not kept
    assert lengths == pytest.approx([1.05 * x for x in sorted(small[edited].lattice.abc)], rel=1e-6)
    runs = con.execute("SELECT n_written, n_failed FROM runs ORDER BY finished_at").fetchall()
    assert runs == [(12, 1), (13, 1)]  # one row per finished build of the release
    # the release folder holds exactly the files its manifest lists (besides the working folder)
    rdir = release_dir(db, "r")
    listed = {f["path"] for f in Release.open(db).manifest["files"]}
    on_disk = {p.relative_to(rdir).as_posix() for p in rdir.rglob("*.parquet") if ".work" not in p.parts}
    assert on_disk == listed


def test_another_folder_never_lands_in_the_same_release(tmp_path, checkpoints, small):
    ids = sorted(small)
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, {ids[0]: small[ids[0]]})
    write(b, {ids[1]: small[ids[1]]})
    db = tmp_path / "db"
    first = build(f"dir:{a}", checkpoints[:1], db, progress=None)
    second = build(f"dir:{b}", checkpoints[:1], db, progress=None)
    assert first["release"] != second["release"] and first["release"].startswith("dir-")
    assert connect(release_dir(db, first["release"])).execute("SELECT material_id FROM gamma").fetchall() == [(ids[0],)]
    with pytest.raises(BuildError, match=f"release {first['release']} in .* holds source 'dir:.*/a', not 'dir:.*/b'"):
        build(f"dir:{b}", checkpoints[:1], db, release=first["release"], progress=None)
    # every table exists, even empty, with its schema: readers of the folder need no manifest
    rdir = release_dir(db, second["release"])
    for table in TABLES:
        got = ds.dataset(rdir / table, format="parquet", partitioning="hive").to_table()
        assert set(schema(table).names) <= set(got.column_names), table
    assert ds.dataset(rdir / "failures", format="parquet", partitioning="hive").count_rows() == 0
    assert ds.dataset(rdir / "bands", format="parquet", partitioning="hive").count_rows() == 0  # Γ model only


def test_a_build_with_nothing_written_fails_and_keeps_latest(tmp_path, checkpoints, small, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    mid = sorted(small)[0]
    write(good, {mid: small[mid]})
    bad.mkdir()
    (bad / "empty.cif").write_text("")
    (bad / "garbage.cif").write_text("data_x\n_cell_length_a 3\n")
    db = tmp_path / "db"
    base = ["build", "--models", checkpoints[0], "--out", str(db), "--cluster", "none"]
    assert main(base + ["--source", f"dir:{good}", "--release", "good"]) == 0
    capsys.readouterr()
    assert main(base + ["--source", f"dir:{bad}", "--release", "bad"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: release bad: none of the 2 inputs") and "latest unchanged" in err
    assert len(err.splitlines()) == 1
    assert (db / "latest").read_text().strip() == "good"
    assert not (release_dir(db, "bad") / "manifest.json").exists()
    assert main(base + ["--source", f"dir:{good}", "--release", "../escape"]) == 1
    assert "must be one path component" in capsys.readouterr().err
    assert json.loads((release_dir(db, "good") / "manifest.json").read_text())["source_key"] == f"dir:{good.resolve()}"
