"""The command line: the demo job reproduces exact references, qpath reads files."""

import re

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
