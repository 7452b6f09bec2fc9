"""The command line: exact references, one-line errors, a light query path, primitive cells."""

import re

import numpy as np
import pytest

from flows.cli import main


def test_demo_reproduces_phonopy(phonopy_examples_dir, capsys):
    assert main(["demo", "--data-dir", str(phonopy_examples_dir.parent)]) == 0
    out = capsys.readouterr().out
    assert "ZnO" in out and "Al2O3" in out
    worst = float(re.search(r"largest deviation from the exact reference: (\S+) cm", out).group(1))
    assert worst < 1e-3


def test_demo_without_data_runs_analytic_models(tmp_path, capsys):
    assert main(["demo", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "analytic models only" in out and "simple-cubic" in out


def test_qpath_command(tmp_path, si_conventional, capsys):
    f = tmp_path / "Si.cif"
    si_conventional.to(filename=str(f))
    assert main(["qpath", str(f)]) == 0
    out = capsys.readouterr().out
    assert "cF2" in out and "GAMMA-X" in out


def test_bad_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "broken.cif"
    f.write_text("data_x\n_cell_length_a 3\n")
    assert main(["qpath", str(f)]) == 2
    assert "broken.cif" in capsys.readouterr().err


def _tiny_release(root):
    """A database root with one release of one material's Γ row (no models needed)."""
    from storage.release import finalize_release, release_dir
    from storage.rows import gamma_row
    from storage.writer import write_shard

    rows = [gamma_row("mp-1", "kmvn", "0" * 64, np.array([0.0, 0, 0, 100, 110, 120]))]
    write_shard(release_dir(root, "r1"), "demo", "s0", {"gamma": rows})
    finalize_release(root, "r1")
    return root


def test_query_imports_no_network_or_pipeline_stack(tmp_path):
    """``vgnn query`` (DuckDB, Arrow and the unit macros) loads no torch, e3nn, Prefect, Dask or
    pymatgen, and neither does ``import vgnn_core`` (its public names are lazy)."""
    import subprocess
    import sys

    _tiny_release(tmp_path)
    heavy = ["torch", "e3nn", "prefect", "dask", "distributed", "pymatgen", "spglib", "matplotlib"]
    code = ("import sys; from flows.cli import main; "
            "rc = main(['query', 'SELECT round(cm1_to_thz(max_frequency_cm1), 3) AS thz FROM gamma', "
            f"'--release', {str(tmp_path)!r}]); import vgnn_core; "
            f"print('loaded:', [m for m in {heavy!r} if m in sys.modules]); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3.598" in out.stdout and "loaded: []" in out.stdout  # 120 cm⁻¹ in THz


@pytest.mark.parametrize("argv, message", [
    (["build", "--source", "bogus", "--out", "{tmp}/db"], "unknown source 'bogus'"),
    (["build", "--source", "mp", "--out", "{tmp}/db"], "MP_API_KEY"),
    (["build", "--source", "mp:nsites<4", "--out", "{tmp}/db"], "cannot read 'nsites<4'"),
    (["predict", "{tmp}/x.cif", "--format", "parquet"], "--format parquet needs --out FILE"),
    (["query", "SELECT 1", "--format", "parquet", "--release", "{tmp}"], "--format parquet needs --out FILE"),
    (["query", "SELECT nope FROM gamma", "--release", "{tmp}"], '"nope" not found'),
    (["query", "SELECT 1", "--release", "{tmp}/missing"], "no manifest.json"),
])
def test_user_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    """Mistakes of the user or the environment: one ``error:`` line, a non-zero exit, no
    traceback, and nothing started (no database folder, no model loaded)."""
    monkeypatch.delenv("MP_API_KEY", raising=False)
    _tiny_release(tmp_path)
    code = main([a.format(tmp=tmp_path) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2 and captured.out == ""
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "db").exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    """An error that is not one of the project's own (a bug) is not turned into a line."""
    import flows.cli.phonons as phonons

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(phonons, "_cmd_qpath", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["qpath", "x.cif"])


def test_query_and_download_follow_a_database_root_url(tmp_path, capsys):
    """A URL of a database root (it serves ``latest``) reads its newest release, as a root
    folder does, saying so in one note; a URL of neither a release nor a root is one error."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    root = _tiny_release(tmp_path / "db")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        assert main(["query", "SELECT max_frequency_cm1 AS w FROM gamma", "--release", url,
                     "--format", "csv"]) == 0
        captured = capsys.readouterr()
        assert captured.out.split() == ['"w"', "120"]
        assert captured.err.strip() == f"note: {url} is a database root; reading its newest release {url}releases/r1"
        assert main(["download", url, "--out", str(tmp_path / "mirror")]) == 0
        assert (tmp_path / "mirror" / "r1" / "manifest.json").is_file()
        capsys.readouterr()
        assert main(["query", "SELECT 1", "--release", url + "releases/"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: cannot open") and "\n" not in err
    finally:
        server.shutdown()
        server.server_close()


def test_predict_reduces_to_the_primitive_cell(tmp_path, si_conventional, si_primitive, capsys):
    """Si's 8-atom cubic cell is predicted as its 2-atom primitive cell (6 branches, not 24
    folded ones), with one note; the primitive cell given directly gets the same Γ modes.
    With ``--out`` the terminal gets where the output went, not the output."""
    import json

    from flows.predict import read_inputs

    conv, prim = tmp_path / "Si_conv.cif", tmp_path / "Si_prim.cif"
    si_conventional.to(filename=str(conv))
    si_primitive.to(filename=str(prim))
    kept, failed = read_inputs([str(conv)], keep_cell=True)
    assert not failed and len(kept[0][1].structure) == 8

    out = tmp_path / "si.json"
    assert main(["predict", str(conv), str(prim), "--format", "json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"2 material(s) written to {out}"
    assert captured.err.strip() == ("note: Si_conv.cif: reduced to its primitive cell (8 → 2 atoms; "
                                    "--keep-cell predicts the cell as given)")
    records = {r["name"]: r for r in json.loads(out.read_text())}
    reduced, given = records["Si_conv.cif"], records["Si_prim.cif"]
    assert np.asarray(reduced["bands_cm1"]).shape[1] == 6 and len(reduced["gamma_cm1"]) == 6
    np.testing.assert_allclose(reduced["gamma_cm1"], given["gamma_cm1"], atol=1e-3)
    gamma = np.asarray(reduced["gamma_cm1"])
    assert np.abs(gamma[:3]).max() < 1e-3 and gamma[3] > 300  # acoustic zeros, optical triplet

    assert main(["predict", str(conv), "--keep-cell", "--model", "mvn", "--format", "json",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    (record,) = json.loads(out.read_text())
    assert len(record["gamma_cm1"]) == 24 and record["n_atoms"] == 8


def test_predict_with_a_born_file_splits_lo_from_to_as_the_charges_say(phonopy_examples_dir, tmp_path, capsys):
    """NaCl with its DFT BORN file: whatever the network's force constants, ω_LO² − ω_TO² at Γ is
    fixed by Z*, ε∞, the volume and the masses, so it must equal phonopy's (from the DFT force
    constants and the same BORN) — and without --born nothing is split."""
    import json

    import phonopy

    nacl = phonopy_examples_dir / "NaCl"
    ph = phonopy.load(supercell_matrix=[2, 2, 2], primitive_matrix="auto", unitcell_filename=str(nacl / "POSCAR-unitcell"),
                      force_sets_filename=str(nacl / "FORCE_SETS"), born_filename=str(nacl / "BORN"))
    ph.run_qpoints([[0, 0, 0]])
    to = np.sort(ph.get_qpoints_dict()["frequencies"][0])[-1] * 33.35641  # THz → cm⁻¹
    ph.run_qpoints([[0, 0, 0]], nac_q_direction=[1, 0, 0])
    lo = np.sort(ph.get_qpoints_dict()["frequencies"][0])[-1] * 33.35641
    from pymatgen.core import Structure

    cell = ph.unitcell  # its POSCAR names no elements: write them out
    poscar = tmp_path / "NaCl.vasp"
    Structure(cell.cell, cell.symbols, cell.scaled_positions).to(filename=str(poscar), fmt="poscar")
    out = tmp_path / "nacl.json"
    export = tmp_path / "export"
    assert main(["predict", str(poscar), "--born", str(nacl / "BORN"), "--format", "json", "--out", str(out),
                 "--export", str(export)]) == 0
    (rec,) = json.loads(out.read_text())
    (folder,) = export.iterdir()  # the export holds the charges it used (made neutral) as phonopy's BORN
    back = phonopy.file_IO.parse_BORN(ph.primitive, filename=folder / "BORN.predicted")
    from vgnn_core.phonons.nac import enforce_charge_neutrality

    np.testing.assert_allclose(back["born"], enforce_charge_neutrality(ph.nac_params["born"]), atol=1e-6)
    assert {"band.yaml", "phonopy.yaml", "FORCE_CONSTANTS", "BORN.predicted"} == {p.name for p in folder.iterdir()}
    ours_to = max(rec["gamma_cm1"])
    ours_lo = np.sqrt(ours_to**2 + (lo**2 - to**2))
    assert rec["lo_to_splitting_cm1"] == pytest.approx(ours_lo - ours_to, abs=0.05)
    assert rec["lo_to_splitting_cm1"] > 50  # NaCl: a split of tens of cm⁻¹
    assert main(["predict", str(poscar), "--format", "json", "--out", str(out)]) == 0
    assert "lo_to_splitting_cm1" not in json.loads(out.read_text())[0]


def test_schema_command_shows_every_column_with_its_unit(capsys):
    from storage.schema import TABLES

    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    for table, sch in TABLES.items():
        assert f"\n{table}:\n" in out
        for f in sch:
            assert f"  {f.name} " in out
    assert "cm^-1" in out and "angstrom" in out
    assert main(["schema", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown table")


def test_a_full_disk_during_a_build_is_one_line_and_releases_nothing(tmp_path, monkeypatch, capsys):
    import errno

    import storage.writer
    import vgnn_core
    from tests.conftest import TINY_ARCH

    ckpt = tmp_path / "kmvn.pt"
    vgnn_core.save_checkpoint(vgnn_core.VGNN(kind="kmvn", **TINY_ARCH), ckpt)

    def full(table, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(storage.writer, "write_parquet_atomic", full)
    db = tmp_path / "db"
    code = main(["build", "--source", "demo", "--models", str(ckpt), "--out", str(db), "--cluster", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "No space left on device" in err[-1]
    assert not (db / "latest").exists()
