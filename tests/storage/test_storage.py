"""Storage: round trip through Parquet and DuckDB, atomic writes, bad input refused."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from storage.catalog import ReadOnlyQueryError, check_read_only, connect
from storage.query import run_query
from storage.release import Release, finalize_release, release_dir
from storage.rows import gamma_row, structure_hash, structure_row
from storage.schema import SchemaError
from storage.writer import bucket_of, shard_complete, write_shard
from vgnn_core.training.petretto import iter_petretto, load_split


def dfpt_rows(records):
    """Rows with the DFPT frequencies standing in for predictions."""
    structures, gamma, bands = [], [], []
    for r in records:
        structures.append(structure_row(r.structure, r.material_id))
        if r.gamma_index is not None:
            gamma.append(gamma_row(r.material_id, "dfpt", "0" * 64, r.bands[r.gamma_index]))
        steps = np.linalg.norm(np.diff(r.qpoints @ r.structure.lattice.reciprocal_lattice.matrix, axis=0), axis=1)
        bands.append({
            "material_id": r.material_id, "model": "dfpt", "model_sha256": "0" * 64,
            "qpoints": r.qpoints, "distances_per_angstrom": np.concatenate([[0], np.cumsum(steps)]).astype(np.float32),
            "label_indices": [], "labels": [], "segment_breaks": [], "frequencies_cm1": r.bands.astype(np.float32),
        })
    return {"structures": structures, "gamma": gamma, "bands": bands}


@pytest.fixture(scope="module")
def test_records(petretto_archive):
    split = load_split(petretto_archive.parent / "split.json")
    return list(iter_petretto(petretto_archive, ids=split["test"]))


@pytest.fixture(scope="module")
def release(test_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("db")
    rdir = release_dir(root, "r1")
    for k in range(0, len(test_records), 50):
        write_shard(rdir, "petretto", f"s{k // 50:04d}", dfpt_rows(test_records[k : k + 50]))
    finalize_release(root, "r1", models=[{"name": "dfpt", "sha256": "0" * 64}])
    return root


def test_round_trip_bit_exact(release, test_records):
    con = connect(release)
    got = dict(con.execute("SELECT material_id, frequencies_cm1 FROM bands").fetchall())
    assert len(got) == len(test_records) == 156
    for r in test_records:
        stored = np.array(got[r.material_id], dtype=np.float32)
        np.testing.assert_array_equal(stored, r.bands.astype(np.float32))
    n_gamma = con.execute("SELECT count(*) FROM gamma").fetchone()[0]
    assert n_gamma == sum(r.gamma_index is not None for r in test_records)
    # partitions come from the path: source and a stable bucket
    rows = con.execute("SELECT DISTINCT material_id, source, bucket FROM structures").fetchall()
    assert all(src == "petretto" and b == bucket_of(m) for m, src, b in rows)
    # structures keep OPTIMADE fields exactly
    mid = test_records[0].material_id
    lat = con.execute("SELECT lattice_vectors FROM structures WHERE material_id = ?", [mid]).fetchone()[0]
    np.testing.assert_array_equal(np.array(lat), test_records[0].structure.lattice.matrix)
    assert Release.open(release).verify() == []


def test_convenience_views(release):
    con = connect(release)
    n, n_unstable = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE has_imaginary_modes) FROM material_summary").fetchone()
    assert n == 156 and 0 < n_unstable < n
    thz = con.execute("SELECT cm1_to_thz(33.35641), cm1_to_mev(8.065544)").fetchone()
    assert thz[0] == pytest.approx(1.0, rel=1e-6) and thz[1] == pytest.approx(1.0, rel=1e-6)
    modes = con.execute("SELECT count(*) FROM gamma_modes").fetchone()[0]
    assert modes == con.execute("SELECT sum(len(frequencies_cm1)) FROM gamma").fetchone()[0]


def test_query_is_read_only(release, tmp_path):
    for sql in ("DROP VIEW gamma", "COPY gamma TO 'x.csv'", "ATTACH 'x.db'", "INSERT INTO t VALUES (1)",
                "SET threads = 1", "INSTALL httpfs", "SELECT 1; DELETE FROM gamma"):
        with pytest.raises(ReadOnlyQueryError):
            check_read_only(sql)
    out = run_query("SELECT formula FROM structures ORDER BY formula LIMIT 3", release, fmt="json")
    assert len(json.loads(out)) == 3
    target = tmp_path / "g.parquet"
    run_query("SELECT material_id, max_frequency_cm1 FROM gamma", release, fmt="parquet", out=target)
    assert pq.read_table(target).num_rows > 100


def test_rewriting_a_shard_replaces_it(tmp_path, test_records):
    rows = dfpt_rows(test_records[:10])
    write_shard(tmp_path, "petretto", "s0", rows)
    write_shard(tmp_path, "petretto", "s0", rows)
    files = list(tmp_path.rglob("*.parquet"))
    total = sum(pq.read_metadata(f).num_rows for f in files if f.name == "gamma.parquet")
    assert total == len(rows["gamma"])


def test_bad_rows_refused(tmp_path, test_records):
    good = dfpt_rows(test_records[:2])
    bad = json.loads(json.dumps(good["gamma"][0], default=lambda x: x.tolist()))
    cases = [
        ({**bad, "frequencies_cm1": [1.0, float("nan"), 2.0]}, "NaN"),
        ({**bad, "colour": "red"}, "unknown column"),
        ({k: v for k, v in bad.items() if k != "model"}, "missing column"),
        ({**bad, "frequencies_cm1": [1.0, 2.0]}, "not 3m"),
    ]
    for row, msg in cases:
        with pytest.raises(SchemaError, match=msg):
            write_shard(tmp_path, "petretto", "bad", {"gamma": [row]})
    band = dict(good["bands"][0], frequencies_cm1=np.zeros((3, 6)))
    with pytest.raises(SchemaError, match="shape"):
        write_shard(tmp_path, "petretto", "bad", {"bands": [band]})
    assert not list(tmp_path.rglob("*.parquet")) and not shard_complete(tmp_path, "petretto", "bad")


def test_structure_hash_recognises_the_same_crystal(si_primitive, si_conventional, wurtzite_zno):
    assert structure_hash(si_primitive) == structure_hash(si_conventional)
    assert structure_hash(si_primitive) == structure_hash(si_primitive * [2, 1, 1])
    assert structure_hash(si_primitive) != structure_hash(wurtzite_zno)


def test_sigkill_mid_write_leaves_no_partial_file(tmp_path):
    """Kill a writer while it writes a large file: no partial file, no marker; rewrite works."""
    script = textwrap.dedent(f"""
        import numpy as np, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from storage.writer import write_shard
        rng = np.random.default_rng(0)
        rows = [{{"material_id": f"m{{k}}", "model": "x", "model_sha256": "0", "qpoints": rng.random((200, 3)),
                  "distances_per_angstrom": np.zeros(200, np.float32), "label_indices": [], "labels": [],
                  "segment_breaks": [], "frequencies_cm1": rng.random((200, 120)).astype(np.float32)}}
                for k in range(400)]
        print("ready", flush=True)
        while True:
            write_shard({str(tmp_path)!r}, "big", "s0", {{"bands": rows}})
            print("written", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().strip() == "written"  # one complete write, then kill mid-rewrite
    import time

    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    parquet = list(tmp_path.rglob("*.parquet"))
    for f in parquet:  # whatever file exists is whole and readable
        assert pq.read_metadata(f).num_rows == 400
    write_shard(tmp_path, "big", "s0", {"bands": []})  # the shard can be rewritten
    assert shard_complete(tmp_path, "big", "s0")
    # no complete release is half-visible: without a manifest nothing opens
    with pytest.raises(FileNotFoundError):
        Release.open(tmp_path)


def test_an_older_release_reads_new_nullable_columns_as_null(tmp_path):
    """A release written before ``uncertainty_cm1`` / ``in_domain`` / ``likely_unstable`` existed still
    opens: the new nullable columns read as NULL, and the convenience views work."""
    import pyarrow.parquet as pq
    from pymatgen.core import Lattice, Structure

    from storage.catalog import connect
    from storage.release import finalize_release, release_dir
    from storage.schema import schema
    from storage.writer import write_shard

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows = {"structures": [structure_row(nacl, "mp-1")],
            "gamma": [gamma_row("mp-1", "kmvn", "0" * 64, np.array([0.0, 0, 0, 100, 110, 120]))]}
    root = tmp_path / "db"
    write_shard(release_dir(root, "old"), "demo", "s0", rows)
    new_columns = ("uncertainty_cm1", "in_domain", "likely_unstable")
    for table_name in ("gamma", "bands"):  # the shard's files, as the old schema had them
        for f in release_dir(root, "old").rglob(f"{table_name}.parquet"):
            table = pq.read_table(f)
            old = [n for n in schema(table_name).names if n not in new_columns]
            pq.write_table(table.select([n for n in old if n in table.column_names]), f)
    finalize_release(root, "old")
    con = connect(root)
    assert con.execute("SELECT uncertainty_cm1, in_domain, likely_unstable FROM gamma").fetchall() == [(None, None, None)]
    assert con.execute("SELECT count(*) FROM gamma_modes").fetchone()[0] == 6
    assert con.execute("SELECT formula, likely_unstable, bands_uncertainty_cm1 FROM material_summary").fetchall() == [
        ("NaCl", None, None)]


def test_a_release_of_many_shards_is_a_few_files_per_table(tmp_path, monkeypatch):
    """10,034 materials written as 100 shards (the size of Togo's database) become one file per
    table and bucket: sorted by material id, in their id's bucket, each row once; empty tables
    still get a file with their schema. With small size limits the same rows roll over into
    several files and row groups of the chosen size, and the files of the earlier layout go."""
    import pyarrow.dataset as ds

    import storage.writer as writer
    from storage.schema import TABLES, schema

    ids = [f"togo-{k:05d}" for k in range(10_034)]
    rng = np.random.default_rng(1)
    root = tmp_path / "db"
    rdir = release_dir(root, "togo")
    for k in range(0, len(ids), 101):
        chunk = ids[k : k + 101]
        gamma = [gamma_row(m, "kmvn", "ab" * 32, np.sort(rng.normal(300, 100, 6))) for m in chunk[1:]]
        failure = [{"material_id": chunk[0], "stage": "predict", "error_class": "E", "message": "x", "run_id": "r"}]
        write_shard(rdir, "togo", f"s{k // 101:03d}", {"gamma": gamma, "failures": failure})
    finalize_release(root, "togo")
    files = Release.open(root).manifest["files"]
    per_table = {t: [f for f in files if f["table"] == t] for t in TABLES}
    assert len(per_table["gamma"]) == len(per_table["failures"]) == writer.N_BUCKETS
    assert all(len(per_table[t]) == 1 and per_table[t][0]["rows"] == 0 for t in TABLES if t not in ("gamma", "failures"))
    assert len(files) == 2 * writer.N_BUCKETS + len(TABLES) - 2 <= 500
    for t in TABLES:  # every table reads straight from its folder, even the empty ones
        assert set(schema(t).names) <= set(ds.dataset(rdir / t, format="parquet", partitioning="hive").schema.names)

    con = connect(root)
    got = con.execute("SELECT material_id, bucket FROM gamma").fetchall()
    assert len(got) == len(ids) - 100 and len({m for m, _ in got}) == len(got)
    assert all(b == bucket_of(m) for m, b in got)
    assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 100

    # the same shards with row groups of ~64 kB and files of ~256 kB (Arrow bytes)
    monkeypatch.setattr(writer, "ROW_GROUP_BYTES", 64 * 1024)
    monkeypatch.setattr(writer, "FILE_BYTES", 256 * 1024)
    finalize_release(root, "togo")
    files = Release.open(root).manifest["files"]
    gamma = [rdir / f["path"] for f in files if f["table"] == "gamma"]
    total = sum(pq.read_table(f).nbytes for f in gamma)
    assert writer.N_BUCKETS < len(gamma) <= total // (256 * 1024) + writer.N_BUCKETS
    for f in gamma:
        meta = pq.ParquetFile(f).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        table = pq.read_table(f)
        per_row = table.nbytes / table.num_rows
        assert all(n * per_row == pytest.approx(64 * 1024, rel=0.02) for n in sizes[:-1])  # groups of the chosen size
        mids = table.column("material_id").to_pylist()
        assert mids == sorted(mids)  # sorted by id: row-group statistics find a material
        assert {bucket_of(m) for m in mids} == {int(f.parent.name.split("=")[1])}
    assert sorted(m for (m,) in connect(root).execute("SELECT material_id FROM gamma").fetchall()) == \
        [m for k, m in enumerate(ids) if k % 101]  # each row once, after the roll-over too
    on_disk = {p.relative_to(rdir).as_posix() for p in rdir.rglob("*.parquet") if ".work" not in p.parts}
    assert on_disk == {f["path"] for f in files}  # the files of the first layout are gone
