"""``vgnn query`` is read-only by construction and serves only files that match the manifest.

Every attack below runs twice: through ``run_query`` (the statement check answers first) and
with the check bypassed, where only the locked DuckDB connection stands in the way. After each,
the release's bytes, the root's ``latest`` and the set of files on disk must be unchanged.
"""

import json
import os
import shutil
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure

import storage.query
import storage.release
from flows.cli import main
from storage.catalog import QueryError, ReadOnlyQueryError, connect
from storage.query import run_query
from storage.release import MANIFEST, Release, ReleaseIntegrityError, finalize_release, release_dir
from storage.rows import gamma_row, structure_row
from storage.writer import write_shard
from tests.storage.test_remote_release import RangeHandler
from vgnn_core.files import file_digest

# Si has two atoms per cell: 6 Γ modes, three acoustic at zero
SI_MODES = np.array([0.0, 0.0, 0.0, 517.0, 517.0, 517.0])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A database root with release ``r1``: 12 Si materials in gamma and structures, two shards."""
    si = Structure(Lattice([[0, 2.734, 2.734], [2.734, 0, 2.734], [2.734, 2.734, 0]]), ["Si", "Si"],
                   [[0, 0, 0], [0.25, 0.25, 0.25]])
    db = tmp_path_factory.mktemp("built") / "db"
    rdir = release_dir(db, "r1")
    for shard in range(2):
        ids = [f"mp-{shard}{k}" for k in range(6)]
        write_shard(rdir, "mp", f"s{shard}", {
            "structures": [structure_row(si, m) for m in ids],
            "gamma": [gamma_row(m, "kmvn", "ab" * 32, SI_MODES + 10 * k) for k, m in enumerate(ids)],
        })
    finalize_release(db, "r1")
    return db


@pytest.fixture
def root(built, tmp_path):
    """A private copy of the built release, free to be tampered with."""
    return Path(shutil.copytree(built, tmp_path / "db"))


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (so a change, a new file or a removal shows)."""
    return {str(p): file_digest(p) for d in folders for p in sorted(Path(d).rglob("*")) if p.is_file()}


def a_release_file(root: Path) -> Path:
    return next((release_dir(root, "r1") / "gamma").rglob("*.parquet"))


ATTACKS = [
    "COPY (SELECT 1 AS x) TO '{file}' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{file}' (FORMAT parquet)",
    "COPY (SELECT 'r0') TO '{root}/latest' (FORMAT csv, HEADER false)",
    "EXPLAIN ANALYZE COPY (SELECT 'r0') TO '{root}/latest'",
    "COPY gamma TO '{root}/new.csv'",
    "EXPORT DATABASE '{root}/exported'",
    "ATTACH '{root}/x.duckdb' AS x",
    "ATTACH '{root}/x.duckdb' AS x; CREATE TABLE x.t AS SELECT 1",
    "INSTALL httpfs",
    "LOAD httpfs",
    "LOAD '{root}/evil.duckdb_extension'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "EXPLAIN ANALYZE SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_parquet('{file}')",
    "SELECT * FROM '{file}'",
    "SELECT * FROM glob('{root}/*')",
    "SET enable_external_access = true; COPY (SELECT 1) TO '{root}/latest'",
    "RESET enable_external_access; COPY (SELECT 1) TO '{root}/latest'",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET allowed_directories = ['/']",
    "PRAGMA enable_external_access = true",
    "SET GLOBAL python_enable_replacements = true",
    "SET temp_directory = '{root}'",
    "CREATE TEMP TABLE t AS SELECT 1 AS x; INSERT INTO t VALUES (2)",
    "CREATE TABLE t AS SELECT * FROM gamma",
    "DROP VIEW gamma",
    "SELECT 1; COPY (SELECT 1) TO '{root}/latest'",
    "SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
]
IN_MEMORY_ONLY = ("CREATE TEMP TABLE", "CREATE TABLE t AS", "DROP VIEW", "CREATE SECRET")


@pytest.mark.parametrize("checked", [True, False], ids=["checked", "bypassed"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_no_statement_touches_a_file(built, tmp_path, monkeypatch, attack, checked):
    root = built  # attacked in place: any success shows up as a failed test here
    monkeypatch.setenv("VGNN_CACHE_DIR", str(built.parent / "cache"))  # verified once for all attacks
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # relative paths, DuckDB's default .tmp, would land here
    sql = attack.format(root=root, file=a_release_file(root))
    before, latest = snapshot(root, work), (root / "latest").read_text()
    if not checked:
        monkeypatch.setattr(storage.query, "check_read_only", lambda sql: None)
    try:
        out = run_query(sql, root, fmt="json")
    except QueryError as exc:
        assert "\n" not in str(exc)
        assert not checked or isinstance(exc, ReadOnlyQueryError) or "Permission" in str(exc) \
            or "read-only" in str(exc)
    else:
        # with the check bypassed, only in-memory catalog changes may run: harmless, gone on close
        assert not checked and attack.startswith(IN_MEMORY_ONLY), f"{sql!r} ran: {out[:200]}"
    assert snapshot(root, work) == before  # no byte changed, no file added or removed
    assert (root / "latest").read_text() == latest == "r1\n"
    # the release still reads
    assert json.loads(run_query("SELECT count(*) AS n FROM gamma", root, fmt="json")) == [{"n": 12}]


def test_the_locked_connection_itself_refuses_files(built):
    root = built
    """``connect`` (the library API) is locked too: no statement check involved."""
    con = connect(root)
    file = a_release_file(root)
    for sql in (f"COPY (SELECT 1) TO '{file}' (FORMAT parquet)", "SET enable_external_access = true",
                f"SELECT * FROM read_parquet('{file}')", "SELECT * FROM read_csv('/etc/passwd')"):
        with pytest.raises(Exception, match="Permission|locked"):
            con.execute(sql)
    n, top = con.execute("SELECT count(*), max(max_frequency_cm1) FROM gamma").fetchone()
    assert (n, round(top, 3)) == (12, 567.0)  # 517 cm-1 + 5·10
    # an unlocked connection stays available to library users who want one
    free = connect(root, read_only=False)
    free.execute("SET threads = 1")
    assert free.execute("SELECT count(*) FROM material_summary").fetchone()[0] == 12


def test_partitions_and_missing_nullable_columns(built):
    root = built
    con = connect(root)
    rows = con.execute("SELECT DISTINCT source, bucket FROM gamma").fetchall()
    assert {s for s, _ in rows} == {"mp"} and all(isinstance(b, int) and 0 <= b < 16 for _, b in rows)
    assert con.execute("SELECT typeof(bucket) FROM gamma LIMIT 1").fetchone()[0] == "INTEGER"
    # tables without files still exist, empty, with the partition columns
    assert con.execute("SELECT count(*), count(bucket) FROM dos").fetchone() == (0, 0)
    modes = con.execute("SELECT count(*) FROM gamma_modes").fetchone()[0]
    assert modes == 12 * 6


def _tamper_keeping_size(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_local_file_is_refused(root, capsys):
    bad = a_release_file(root)
    _tamper_keeping_size(bad)
    with pytest.raises(ReleaseIntegrityError, match="sha256 mismatch") as err:
        run_query("SELECT count(*) FROM gamma", root)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert main(["query", "SELECT count(*) FROM gamma", "--release", str(root)]) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith("error: ") and "sha256 mismatch" in msg and bad.name in msg and "\n" not in msg
    # a query that does not read the tampered table is still served
    assert json.loads(run_query("SELECT count(*) AS n FROM structures", root, fmt="json")) == [{"n": 12}]


def test_no_verify_serves_a_changed_file(root, capsys):
    """A valid Parquet file with other values: refused when verified, read with --no-verify."""
    path = a_release_file(root)
    table = pq.read_table(path)
    ids = table.column("material_id").to_pylist()
    pq.write_table(table.set_column(table.schema.get_field_index("max_frequency_cm1"), "max_frequency_cm1",
                                    [[9999.0] * len(ids)]), path)
    manifest = json.loads((release_dir(root, "r1") / MANIFEST).read_text())
    for f in manifest["files"]:  # even with the size made to agree, the digest does not
        if release_dir(root, "r1") / f["path"] == path:
            f["bytes"] = path.stat().st_size
    (release_dir(root, "r1") / MANIFEST).write_text(json.dumps(manifest))
    sql = f"SELECT max(max_frequency_cm1) FROM gamma WHERE material_id = '{ids[0]}'"
    assert main(["query", sql, "--release", str(root), "--format", "csv"]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert main(["query", sql, "--release", str(root), "--format", "csv", "--no-verify"]) == 0
    assert "9999" in capsys.readouterr().out


def test_size_change_and_missing_file(root):
    path = a_release_file(root)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ReleaseIntegrityError, match="size mismatch"):
        run_query("SELECT 1 FROM gamma", root)
    path.unlink()
    with pytest.raises(ReleaseIntegrityError, match="missing"):
        run_query("SELECT 1 FROM gamma", root, verify=False)


@pytest.mark.parametrize("bad_path", ["../../outside.parquet", "/etc/passwd", "gamma/../../../x.parquet",
                                      "C:\\evil.parquet", "gamma\\..\\..\\x.parquet"])
def test_manifest_paths_that_escape_are_refused(root, capsys, bad_path):
    mpath = release_dir(root, "r1") / MANIFEST
    manifest = json.loads(mpath.read_text())
    manifest["files"].append({"table": "gamma", "path": bad_path, "rows": 1, "bytes": 10, "sha256": "0" * 64})
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(ReleaseIntegrityError, match="escapes the release folder"):
        Release.open(root).local_files(["structures"], verify=False)  # every entry is checked first
    assert main(["query", "SELECT 1", "--release", str(root), "--no-verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: manifest entry") and "\n" not in err


def test_verification_is_remembered(root, monkeypatch):
    calls = []
    real = storage.release.file_digest
    monkeypatch.setattr(storage.release, "file_digest", lambda p, *a: calls.append(Path(p)) or real(p, *a))
    gamma_files = {release_dir(root, "r1") / f["path"]
                   for f in Release.open(root).manifest["files"] if f["table"] == "gamma"}
    assert run_query("SELECT count(*) FROM gamma", root, fmt="csv").split() == ['"count_star()"', "12"]
    assert set(calls) == gamma_files and len(calls) == len(gamma_files)  # only the table read
    calls.clear()
    run_query("SELECT count(*) FROM gamma_modes", root, fmt="csv")
    assert calls == []  # unchanged files are not hashed again
    touched = sorted(gamma_files)[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    run_query("SELECT count(*) FROM gamma", root, fmt="csv")
    assert calls == [touched]  # a newer mtime means a new check
    cache = json.loads((Path(os.environ["VGNN_CACHE_DIR"]) / "verified-files.json").read_text())
    assert cache[str(touched.resolve())]["sha256"] == file_digest(touched)


def test_duckdb_errors_are_one_line(root, capsys):
    assert main(["query", "SELECT nope FROM gamma", "--release", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and err.count("\n") == 1
    assert main(["query", "SELEC 1", "--release", str(root)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # an error raised while the rows are produced, in every format
    for fmt in ("table", "csv"):
        assert main(["query", "SELECT error('boom') FROM gamma", "--release", str(root), "--format", fmt]) == 2
        assert capsys.readouterr().err == "error: Invalid Input Error: boom\n"
    assert main(["query", "SELECT 1", "--release", str(root / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["query", "COPY gamma TO 'x.csv'", "--release", str(root)]) == 2
    assert "read-only" in capsys.readouterr().err


def test_out_inside_the_release_is_refused(root):
    with pytest.raises(QueryError, match="inside the release folder"):
        run_query("SELECT 1", root, fmt="parquet", out=a_release_file(root))


@pytest.fixture
def served(root):
    RangeHandler.requests_seen.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/releases/r1"
    httpd.shutdown()
    httpd.server_close()


def test_remote_files_are_cached_once_verified(root, served):
    sql = "SELECT material_id, bucket, frequencies_cm1 FROM gamma ORDER BY material_id"
    assert run_query(sql, served, fmt="json") == run_query(sql, root, fmt="json")
    gets = [p for c, p, _ in RangeHandler.requests_seen if c == "GET" and p.endswith(".parquet")]
    n_gamma = sum(f["table"] == "gamma" for f in Release.open(root).manifest["files"])
    assert len(gets) == n_gamma  # the gamma files only, once each
    cached = sorted((Path(os.environ["VGNN_CACHE_DIR"]) / "releases").rglob("*.parquet"))
    assert len(cached) == n_gamma and not list(Path(os.environ["VGNN_CACHE_DIR"]).rglob("*.unverified"))
    RangeHandler.requests_seen.clear()
    assert run_query(sql, served, fmt="json") == run_query(sql, root, fmt="json")
    assert [p for _, p, _ in RangeHandler.requests_seen] == ["/releases/r1/manifest.json"]
    # a cached copy changed on disk is checked again, discarded and fetched anew
    _tamper_keeping_size(cached[0])
    assert run_query(sql, served, fmt="json") == run_query(sql, root, fmt="json")
    assert file_digest(cached[0]) == file_digest(release_dir(root, "r1") / cached[0].relative_to(
        cached[0].parents[3]))


def test_a_tampered_remote_file_is_refused(root, served, capsys):
    bad = a_release_file(root)
    _tamper_keeping_size(bad)  # the server now serves bytes the manifest does not describe
    assert main(["query", "SELECT count(*) FROM gamma", "--release", served]) == 2
    err = capsys.readouterr().err.strip()
    assert "sha256 mismatch" in err and bad.name in err and "\n" not in err
    cache = Path(os.environ["VGNN_CACHE_DIR"])
    rel = bad.relative_to(release_dir(root, "r1"))
    assert not [p for p in cache.rglob("*") if p.is_file() and str(p).endswith(str(rel))]  # nothing kept
    assert not list(cache.rglob("*.unverified"))


def test_a_remote_manifest_cannot_write_outside_the_cache(root, served):
    mpath = release_dir(root, "r1") / MANIFEST
    manifest = json.loads(mpath.read_text())
    manifest["files"][0]["path"] = "../../../../../escaped.parquet"
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(ReleaseIntegrityError, match="escapes the release folder"):
        run_query("SELECT 1", served)
    assert not [p for _, p, _ in RangeHandler.requests_seen if p.endswith(".parquet")]


def test_csv_holds_list_columns_as_json_text(built, tmp_path):
    """CSV has no lists: a spectrum column comes out as JSON text that reads back to the numbers."""
    import csv

    text = run_query("SELECT material_id, frequencies_cm1 FROM gamma ORDER BY material_id LIMIT 2", built, fmt="csv")
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["material_id"] for r in rows] == ["mp-00", "mp-01"]
    np.testing.assert_allclose(json.loads(rows[1]["frequencies_cm1"]), SI_MODES + 10, atol=1e-3)
    out = tmp_path / "g.csv"
    run_query("SELECT * FROM gamma", built, fmt="csv", out=out)
    assert len(out.read_text().splitlines()) == 13  # header + 12 rows, nothing lost
