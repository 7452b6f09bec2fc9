"""The command line: the demo job reproduces exact references, qpath reads files."""

import re

import numpy as np

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


def test_query_and_unit_conversions_do_not_import_torch(tmp_path):
    """The public names are lazy: ``vgnn query`` (DuckDB and unit macros) never loads the networks."""
    import subprocess
    import sys

    from storage.release import finalize_release, release_dir
    from storage.rows import gamma_row
    from storage.writer import write_shard

    rows = [gamma_row("mp-1", "kmvn", "0" * 64, np.array([0.0, 0, 0, 100, 110, 120]))]
    write_shard(release_dir(tmp_path, "r"), "demo", "s0", {"gamma": rows})
    finalize_release(tmp_path, "r")
    code = ("import sys; from flows.cli import main; "
            f"rc = main(['query', 'SELECT round(cm1_to_thz(max_frequency_cm1), 3) FROM gamma', '--release', {str(tmp_path)!r}]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'; "
            "import vgnn_core; assert 'torch' not in sys.modules; print(vgnn_core.VGNN.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3.598" in out.stdout and out.stdout.strip().endswith("VGNN")  # 120 cm⁻¹ in THz; names still resolve
