"""PhononResult with the non-analytic correction, against phonopy's own (method 'gonze') on the
polar phonopy examples: bands along the whole high-symmetry path (LO–TO splitting at every Γ
end, each segment's direction), TO and LO Γ frequencies, and the mesh behind DOS and thermal
properties; without Born charges nothing changes."""

import numpy as np
import pytest
import torch
from phonopy.physical_units import get_physical_units
from pymatgen.io.phonopy import get_pmg_structure

from vgnn_core import from_phonopy
from vgnn_core.io.phonopy import load_force_sets, read_born_file
from vgnn_core.phonons.nac import BornCharges
from vgnn_core.phonons.result import mesh_properties, mesh_thermal, phonon_properties
from vgnn_core.phonons.thermal import thermal_properties
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_THZ, THZ_TO_CM1

POLAR = ["NaCl", "ZnO", "TiO2-anatase"]
#: our CODATA √(eV/Å²/amu) → THz over phonopy's (1.2e-7 relative): compare at rounding level
RESCALE = get_physical_units().DefaultToTHz / EV_ANGSTROM2_AMU_TO_THZ
TOL = 1e-4  # cm⁻¹
MESH = (4, 4, 4)
TEMPS = np.array([50.0, 300.0, 800.0])


def max_deviation(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest |ω_ours − ω_phonopy| (cm⁻¹); modes within 1e-3 cm⁻¹ of zero in both count as equal."""
    diff = np.abs(ours - ref)
    diff[(np.abs(ours) < 1e-3) & (np.abs(ref) < 1e-3)] = 0.0
    return float(diff.max())


@pytest.fixture(scope="module", params=POLAR)
def polar(request, phonopy_examples_dir):
    name = request.param
    ph = load_force_sets(phonopy_examples_dir / name)
    ph.symmetrize_force_constants()
    structure = get_pmg_structure(ph.primitive)
    charges = read_born_file(phonopy_examples_dir / name / "BORN", structure).neutral()
    factor = 14.4 if charges.factor is None else charges.factor
    ph.nac_params = {"born": charges.born, "dielectric": charges.epsilon, "factor": factor, "method": "gonze"}
    dm = ph.dynamical_matrix  # phonopy symmetrises Z* and ε∞ once more: use exactly its copy
    born = BornCharges(np.array(dm.dielectric_constant), np.array(dm.born), factor)
    supercell = np.rint(np.asarray(ph.supercell.cell) @ np.linalg.inv(ph.primitive.cell))
    full = from_phonopy(ph)
    result = phonon_properties(full, structure, name=name, born=born, supercell_matrix=supercell,
                               mesh=MESH, temperatures=TEMPS)
    plain = phonon_properties(full, structure, name=name, mesh=MESH, temperatures=TEMPS)
    return name, ph, born, result, plain


def test_bands_with_nac_match_phonopy(polar):
    name, ph, _, result, plain = polar
    path = result.qpath
    ph.run_band_structure([path.qpoints[a : b + 1] for a, b in path.segments])
    ref = np.vstack(ph.band_structure.frequencies) * THZ_TO_CM1
    ours = np.vstack([result.bands[a : b + 1] for a, b in path.segments]) * RESCALE
    assert max_deviation(ours, ref) < TOL, name
    # the LO modes are there at every Γ end of a segment, and only near Γ does NAC matter much
    gamma_rows = np.all(np.abs(path.qpoints) < 1e-12, axis=1)
    assert gamma_rows.any()
    # (the dipole term at Γ is positive semi-definite: no mode is lowered, some LO one is raised)
    assert np.all(result.bands[gamma_rows] > plain.gamma[None] - 1e-3), name
    assert np.max(result.bands[gamma_rows] - plain.gamma[None]) > 1.0, name
    np.testing.assert_allclose(result.bands[gamma_rows, :3], 0, atol=1e-3)


def test_gamma_is_to_and_gamma_along_gives_lo(polar):
    name, ph, born, result, plain = polar
    assert result.has_nac and not plain.has_nac
    np.testing.assert_array_equal(result.born_charges, born.born)
    np.testing.assert_array_equal(result.epsilon_inf, born.epsilon)
    assert plain.born_charges is None and plain.epsilon_inf is None
    # TO at Γ: phonopy without a direction, i.e. the full force constants' Γ modes
    ph.run_qpoints([[0, 0, 0]])
    assert max_deviation(result.gamma * RESCALE, ph.qpoints.frequencies[0] * THZ_TO_CM1) < TOL, name
    assert max_deviation(result.gamma, plain.gamma) < TOL
    for direction in ([1.0, 0, 0], [0, 0, 1.0], [0.3, -0.2, 0.5]):
        ph.run_qpoints([[0, 0, 0]], nac_q_direction=direction)
        lo = result.gamma_along(direction)
        assert max_deviation(lo * RESCALE, ph.qpoints.frequencies[0] * THZ_TO_CM1) < TOL, (name, direction)
        split = result.lo_to_splitting(direction)
        assert split.max() > 1.0 and np.all(split > -1e-3)  # never lowered (acoustic: round-off)
    np.testing.assert_allclose(plain.lo_to_splitting([1.0, 0, 0]), 0, atol=1e-5)
    assert result.summary()["has_nac"] is True and "has_nac" not in plain.summary()


def test_gamma_along_takes_several_directions_at_once(polar):
    """Directions (k, 3) are solved together, each as alone; without NAC every row is Γ."""
    name, _, _, result, plain = polar
    directions = np.array([[1.0, 0, 0], [0, 0, 1.0], [0.3, -0.2, 0.5], [0, 0, 0]])
    together = result.gamma_along(directions)
    assert together.shape == (4, len(result.gamma))
    for d, row in zip(directions, together):
        assert max_deviation(row, result.gamma_along(d)) < 1e-9, name
    assert max_deviation(together[3], result.gamma) < 1e-6, name  # no direction: TO
    assert result.lo_to_splitting(directions).shape == (4, len(result.gamma))
    np.testing.assert_array_equal(plain.lo_to_splitting(directions), 0)
    with pytest.raises(ValueError, match="direction"):
        result.gamma_along(np.zeros((2, 2)))


def test_mesh_and_thermal_use_nac(polar):
    name, ph, _, result, plain = polar
    q = result.mesh.qpoints
    assert np.allclose(q, plain.mesh.qpoints)
    ph.run_qpoints(q)  # no direction: at Γ phonopy keeps the TO modes, as the mesh does
    ref = np.asarray(ph.qpoints.frequencies) * THZ_TO_CM1 / RESCALE
    expected = thermal_properties(ref, result.mesh.weights, TEMPS, result.thermal.formula_units)
    np.testing.assert_allclose(result.thermal.heat_capacity, expected.heat_capacity, rtol=1e-6)
    np.testing.assert_allclose(result.thermal.free_energy, expected.free_energy, rtol=1e-6)
    # and NAC changes the mesh's optical modes (the LO branch off Γ), hence the thermal properties
    assert np.abs(result.thermal.free_energy - plain.thermal.free_energy).max() > 1e-4 * np.abs(plain.thermal.free_energy).max()
    # the batched thermal path (many crystals' meshes in shared solves) applies it the same way
    (_, batched), = mesh_thermal([result.force_constants], [result.structure], TEMPS, nacs=[result.nac])
    _, _, single = mesh_properties(result.force_constants, result.structure, temperatures=TEMPS, partial=False,
                                   nac=result.nac)
    np.testing.assert_allclose(batched.free_energy, single.free_energy, rtol=1e-9)
    n_modes = 3 * len(result.structure)
    assert result.dos.integral() == pytest.approx(n_modes, rel=0.02)


def test_supercell_without_born_charges_is_an_error(phonopy_examples_dir):
    ph = load_force_sets(phonopy_examples_dir / "NaCl")
    with pytest.raises(ValueError, match="supercell matrix without Born"):
        phonon_properties(from_phonopy(ph), get_pmg_structure(ph.primitive), supercell_matrix=np.eye(3) * 2,
                          bands=False, thermal=False)
    assert torch.is_tensor(from_phonopy(ph).blocks)
