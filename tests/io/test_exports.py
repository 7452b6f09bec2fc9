"""Exports of a prediction: phonopy force constants (exact at every q), band.yaml, pymatgen
objects, plots; and ``vgnn predict`` end to end."""

import json

import numpy as np
import phonopy
import pytest
import torch
from pymatgen.io.phonopy import get_ph_bs_symm_line

from vgnn_core import VGNN, Predictor, band_frequencies, central_spring_force_constants
from vgnn_core.io.exports import (
    to_pymatgen_band_structure,
    to_pymatgen_dos,
    write_band_yaml,
    write_born_file,
    write_phonopy_force_constants,
)
from vgnn_core.io.phonopy import covering_supercell, shortest_lattice_vector, to_phonopy
from vgnn_core.io.plotting import plot_result
from vgnn_core.phonons.result import phonon_properties
from vgnn_core.phonons.units import THZ_TO_CM1


@pytest.fixture(scope="module")
def random_kmvn():
    torch.manual_seed(5)
    return Predictor(VGNN(kind="kmvn", r_bond=5.0).double())


def test_covering_supercell_makes_every_bond_its_shortest_image(monoclinic_zro2):
    smat = covering_supercell(monoclinic_zro2, max_bond=6.0)
    assert shortest_lattice_vector(monoclinic_zro2.lattice.matrix * np.diag(smat)[:, None]) > 12.0


@pytest.mark.parametrize("fixture", ["wurtzite_zno", "monoclinic_zro2", "si_primitive"])
def test_phonopy_export_is_exact_at_every_q(fixture, request, random_kmvn):
    structure = request.getfixturevalue(fixture)
    fc = random_kmvn.predict_force_constants([structure])[0].to(torch.float64)
    phonon = to_phonopy(fc, structure)
    q = np.random.default_rng(2).random((15, 3)) - 0.5
    phonon.run_qpoints(q)
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    np.testing.assert_allclose(phonon.qpoints.frequencies * THZ_TO_CM1, ours, rtol=2e-6, atol=1e-3)


def test_force_constants_files_round_trip_through_phonopy_load(tmp_path, wurtzite_zno):
    fc = central_spring_force_constants(wurtzite_zno, lambda r: 5 * np.exp(-(r - 2) ** 2), r_max=4.0)
    yaml_path, fc_path = write_phonopy_force_constants(fc, wurtzite_zno, tmp_path)
    phonon = phonopy.load(yaml_path, force_constants_filename=fc_path, is_nac=False, produce_fc=False, log_level=0)
    q = np.random.default_rng(4).random((10, 3))
    phonon.run_qpoints(q)
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    np.testing.assert_allclose(phonon.qpoints.frequencies * THZ_TO_CM1, ours, rtol=2e-6, atol=1e-3)


def test_band_yaml_and_pymatgen_objects_round_trip(tmp_path, wurtzite_zno):
    fc = central_spring_force_constants(wurtzite_zno, lambda r: 5 * np.exp(-(r - 2) ** 2), r_max=4.0)
    result = phonon_properties(fc, wurtzite_zno, name="ZnO", mesh=(4, 4, 3))
    bs = to_pymatgen_band_structure(wurtzite_zno, result.qpath, result.bands)
    np.testing.assert_allclose(bs.bands.T * THZ_TO_CM1, result.bands, rtol=1e-12)
    assert {"Γ", "M", "K", "A"} <= {q.label for q in bs.qpoints if q.label}
    write_band_yaml(tmp_path / "band.yaml", wurtzite_zno, result.qpath, result.bands)
    back = get_ph_bs_symm_line(str(tmp_path / "band.yaml"))
    np.testing.assert_allclose(back.bands, bs.bands, rtol=1e-9)
    assert len(back.branches) == len(result.qpath.segments)
    total, partial = to_pymatgen_dos(result.dos)
    assert set(partial) == {"Zn", "O"}
    assert np.trapezoid(total.densities, total.frequencies) == pytest.approx(12, rel=1e-3)


def test_born_file_and_pymatgen_nac_frequencies(tmp_path, phonopy_examples_dir):
    """With NAC the export writes a BORN file phonopy reads back to the same Z* and ε∞ (TiO2
    anatase: anisotropic ε∞, inequivalent directions), and the pymatgen band structure lists
    the LO–TO split Γ frequencies of every path segment at Γ, as phonopy + pymatgen would."""
    from phonopy.file_IO import parse_BORN
    from pymatgen.io.phonopy import get_pmg_structure

    from vgnn_core.io.phonopy import load_force_sets, read_born_file

    root = phonopy_examples_dir / "TiO2-anatase"
    ph = load_force_sets(root)
    structure = get_pmg_structure(ph.primitive)
    born = read_born_file(root / "BORN", structure).neutral()
    fc = central_spring_force_constants(structure, lambda r: 8 * np.exp(-(r - 2) ** 2), r_max=4.0)
    result = phonon_properties(fc, structure, name="TiO2", born=born, nac_mode="gamma", thermal=False)
    path = write_born_file(tmp_path / "BORN", structure, result.born)
    back = read_born_file(path, structure)
    np.testing.assert_allclose(back.born, born.born, atol=2e-7)  # the file's 8 decimals
    np.testing.assert_allclose(back.epsilon, born.epsilon, atol=2e-7)
    cell = to_phonopy(fc, structure).primitive
    ref = parse_BORN(cell, filename=path)
    np.testing.assert_allclose(ref["born"], born.born, atol=2e-7)

    bs = to_pymatgen_band_structure(structure, result.qpath, result.bands, has_nac=True)
    gammas = [k for k, q in enumerate(result.qpath.qpoints) if not np.any(q)]
    # pymatgen's rule: one entry per non-Γ neighbour of each Γ point (a path break adds one)
    assert len(bs.nac_frequencies) >= len(gammas) >= 2
    for _, thz in bs.nac_frequencies:
        split = np.asarray(thz) * THZ_TO_CM1 - result.gamma  # sorted both: LO above TO, TO unchanged
        assert split.max() > 20 and split.min() > -1e-4  # acoustic modes: round-off
    plain = to_pymatgen_band_structure(structure, result.qpath, result.bands)
    assert len(plain.nac_frequencies) == 0


def test_plot_has_labels_breaks_and_dos(tmp_path, wurtzite_zno):
    from matplotlib.image import imread

    fc = central_spring_force_constants(wurtzite_zno, lambda r: 5 * np.exp(-(r - 2) ** 2), r_max=4.0)
    result = phonon_properties(fc, wurtzite_zno, name="ZnO", mesh=(4, 4, 3))
    fig = plot_result(result, tmp_path / "zno.png", unit="THz", reference=result.bands * 1.01)
    band_ax, dos_ax = fig.axes
    labels = [t.get_text() for t in band_ax.get_xticklabels()]
    assert labels[0] == "Γ" and any("|" in x for x in labels) == bool(result.qpath.breaks)
    assert len(band_ax.get_xticks()) == len(labels) >= 5
    assert band_ax.get_ylabel() == "Frequency (THz)" and dos_ax.get_xlabel() == "DOS"
    image = imread(tmp_path / "zno.png")
    assert image.shape[0] > 400 and image.shape[1] > 800 and image.std() > 0.05  # drawn, not blank


def test_plot_shows_imaginary_modes_below_zero(tmp_path, si_primitive):
    fc = central_spring_force_constants(si_primitive, lambda r: np.where(r < 2.5, 8.0, -0.6), r_max=4.0)
    result = phonon_properties(fc, si_primitive, mesh=(4, 4, 4))
    fig = plot_result(result)
    assert fig.axes[0].get_ylim()[0] < result.bands.min() < 0


def test_predict_cli_outputs_and_bad_files(tmp_path, wurtzite_zno, capsys):
    from flows.cli import main

    good = tmp_path / "ZnO.cif"
    wurtzite_zno.to(filename=str(good))
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 3\n")
    code = main(["predict", str(good), str(bad), "--format", "json", "--out", str(tmp_path / "out.json"),
                 "--plot", str(tmp_path / "bands.png"), "--export", str(tmp_path / "export")])
    err = capsys.readouterr().err
    assert code == 2 and "broken.cif" in err
    records = json.loads((tmp_path / "out.json").read_text())
    assert [r["name"] for r in records] == ["ZnO.cif"]
    rec = records[0]
    assert len(rec["gamma_cm1"]) == 12 and abs(rec["gamma_cm1"][0]) < 0.5
    assert np.trapezoid(rec["dos"]["total"], rec["dos"]["frequencies_cm1"]) == pytest.approx(12, rel=1e-2)
    assert 0 < rec["heat_capacity_J_K_mol_fu"] < 3 * 2 * 8.3145
    assert (tmp_path / "bands_ZnO.cif.png").is_file() or (tmp_path / "bands.png").is_file()
    assert (tmp_path / "export" / "ZnO.cif" / "FORCE_CONSTANTS").is_file()
    assert (tmp_path / "export" / "ZnO.cif" / "band.yaml").is_file()
    assert main(["predict", str(good)]) == 0
    table = capsys.readouterr().out
    assert "ZnO" in table and "Cv" in table


def test_phonopy_export_of_a_conventional_cell_keeps_the_cell(si_conventional):
    """A non-primitive cell stays as given (phonopy 4 would reduce it by default)."""
    fc = central_spring_force_constants(si_conventional, lambda r: 6 * np.exp(-(r - 2.35) ** 2), r_max=4.0)
    phonon = to_phonopy(fc, si_conventional)
    assert len(phonon.primitive) == 8
    q = np.random.default_rng(6).random((5, 3))
    phonon.run_qpoints(q)
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    np.testing.assert_allclose(phonon.qpoints.frequencies * THZ_TO_CM1, ours, rtol=2e-6, atol=1e-3)
