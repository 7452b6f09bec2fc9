"""Phonon properties against exact ground truth: phonopy on its example force sets, and
analytic limits (Dulong–Petit, a spring model's sound velocity, imaginary modes)."""

import numpy as np
import pytest
import torch
from phonopy.phonon.group_velocity import GroupVelocity
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure
from scipy import constants as c

from vgnn_core import band_frequencies, central_spring_force_constants, from_phonopy
from vgnn_core.io.phonopy import load_force_sets
from vgnn_core.phonons.dos import phonon_dos
from vgnn_core.phonons.group_velocity import (
    THZ_ANGSTROM_TO_KM_S,
    group_velocities,
    sound_velocities,
)
from vgnn_core.phonons.mesh import gamma_centred_mesh, mesh_for, mesh_numbers
from vgnn_core.phonons.modes import modes
from vgnn_core.phonons.result import element_groups, formula_units, mesh_properties, mesh_thermal
from vgnn_core.phonons.thermal import thermal_properties
from vgnn_core.phonons.units import THZ_TO_CM1

CRYSTALS = ["Al2O3", "CaTiO3", "Cr", "MgB2", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase", "ZnO"]
MESH = (6, 6, 6)
# CODATA vs phonopy's own unit constant: 1.2e-7 relative in frequency
RTOL = 2e-6


@pytest.fixture(scope="module", params=CRYSTALS)
def example(request, phonopy_examples_dir):
    ph = load_force_sets(phonopy_examples_dir / request.param)
    return request.param, ph, from_phonopy(ph), get_pmg_structure(ph.primitive)


def test_mesh_is_gamma_centred_and_time_reversal_reduced():
    m = gamma_centred_mesh((4, 3, 5))
    assert m.weights.sum() == 60 and np.allclose(m.qpoints[0], 0)
    full = {tuple(np.round(q % 1, 9)) for q in m.qpoints} | {tuple(np.round(-q % 1, 9)) for q in m.qpoints}
    assert len(full) == 60  # the kept points and their partners cover the mesh
    assert mesh_numbers(Lattice.cubic(5.43).matrix / 2 + np.eye(3) * 0, 40) == (15, 15, 15)
    huge = mesh_for(np.eye(3) * 0.5, density=400, max_points=500)
    assert huge.n_qpoints <= 500


def test_point_group_mesh_is_phonopys_and_changes_no_property(example):
    """The mesh reduced by the crystal's point group has phonopy's irreducible points and
    weights, and gives the DOS, per-element partial DOS and thermal properties of the mesh
    reduced by time reversal alone."""
    name, ph, fc, structure = example
    temps = np.array([0.0, 50.0, 300.0, 1000.0])
    q_sym, dos_sym, t_sym = mesh_properties(fc, structure, mesh=MESH, temperatures=temps)
    q_tr, dos_tr, t_tr = mesh_properties(fc, structure, mesh=MESH, temperatures=temps, symmetry=False)
    ph.run_mesh(list(MESH), is_gamma_center=True)
    assert q_sym.n_qpoints == len(ph.mesh.qpoints) < q_tr.n_qpoints, name
    assert sorted(q_sym.weights) == sorted(ph.mesh.weights) and q_sym.weights.sum() == np.prod(MESH)
    for a, b in ((t_sym.heat_capacity, t_tr.heat_capacity), (t_sym.entropy, t_tr.entropy),
                 (t_sym.free_energy, t_tr.free_energy), (dos_sym.total, dos_tr.total),
                 *zip(dos_sym.partial.values(), dos_tr.partial.values())):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9 * np.abs(b).max(), err_msg=name)


def test_batched_mesh_thermal_is_each_crystals_mesh_properties(phonopy_examples_dir):
    """Thermal properties of all ten example crystals from one batched call equal each
    crystal's own DOS-and-thermal run (same mesh, same C_v / S / F)."""
    crystals = [load_force_sets(phonopy_examples_dir / name) for name in CRYSTALS]
    fcs = [from_phonopy(ph) for ph in crystals]
    structures = [get_pmg_structure(ph.primitive) for ph in crystals]
    temps = np.array([10.0, 300.0, 900.0])
    batched = mesh_thermal(fcs, structures, temperatures=temps)
    for name, fc, structure, (qmesh, thermal) in zip(CRYSTALS, fcs, structures, batched):
        q_one, _, t_one = mesh_properties(fc, structure, temperatures=temps, partial=False)
        np.testing.assert_array_equal(qmesh.qpoints, q_one.qpoints, err_msg=name)
        for a, b in ((thermal.heat_capacity, t_one.heat_capacity), (thermal.entropy, t_one.entropy),
                     (thermal.free_energy, t_one.free_energy)):
            np.testing.assert_allclose(a, b, rtol=1e-10, err_msg=name)


def test_a_mesh_that_breaks_the_symmetry_is_reduced_by_the_subgroup_that_keeps_it(si_primitive):
    from vgnn_core.crystal.symmetry import analyse_symmetry

    fc = central_spring_force_constants(si_primitive, lambda r: 6.0 * np.exp(-(r - 2.35) ** 2), r_max=4.5)
    temps = np.array([100.0, 300.0])
    q_sym, dos_sym, t_sym = mesh_properties(fc, si_primitive, mesh=(4, 4, 6), temperatures=temps)
    q_tr, dos_tr, t_tr = mesh_properties(fc, si_primitive, mesh=(4, 4, 6), temperatures=temps, symmetry=False)
    assert len(analyse_symmetry(si_primitive).rotations) == 48
    assert q_sym.n_qpoints < q_tr.n_qpoints and q_sym.weights.sum() == 96
    np.testing.assert_allclose(t_sym.heat_capacity, t_tr.heat_capacity, rtol=1e-10)
    np.testing.assert_allclose(dos_sym.total, dos_tr.total, rtol=1e-8, atol=1e-12)


def test_thermal_properties_match_phonopy(example):
    name, ph, fc, structure = example
    mesh = gamma_centred_mesh(MESH)
    freqs, _ = modes(fc, mesh.qpoints)
    temps = np.array([0.0, 10.0, 100.0, 300.0, 800.0])
    ours = thermal_properties(freqs, mesh.weights, temps)
    ph.run_mesh(list(MESH), is_gamma_center=True)
    ph.run_thermal_properties(temperatures=temps, exclude_gamma_acoustic=True)
    ref = ph.thermal_properties
    np.testing.assert_allclose(ours.heat_capacity, ref.heat_capacity, rtol=1e-5, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(ours.entropy, ref.entropy, rtol=1e-5, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(ours.free_energy, ref.free_energy, rtol=1e-5, atol=1e-6, err_msg=name)
    assert ours.zero_point_energy == pytest.approx(ref.free_energy[0], rel=1e-5)


def test_dos_and_partial_dos_match_phonopy(example):
    name, ph, fc, structure = example
    mesh = gamma_centred_mesh(MESH)
    groups, names = element_groups(structure)
    freqs, proj = modes(fc, mesh.qpoints, groups=np.arange(len(structure)))
    sigma_thz = 0.2
    ph.run_mesh(list(MESH), is_gamma_center=True, with_eigenvectors=True, is_mesh_symmetry=False)
    ph.run_projected_dos(sigma=sigma_thz, freq_min=-2, freq_max=float(freqs.max() / THZ_TO_CM1) + 2, freq_pitch=0.05)
    ref = ph.projected_dos
    grid_cm1 = np.asarray(ref.frequency_points) * THZ_TO_CM1
    per_atom = phonon_dos(freqs, mesh.weights, sigma=sigma_thz * THZ_TO_CM1, grid=grid_cm1, projections=proj)
    ours = np.array(list(per_atom.partial.values())) * THZ_TO_CM1  # states/THz per atom
    np.testing.assert_allclose(ours, ref.projected_dos, atol=2e-5 * ref.projected_dos.max(), err_msg=name)
    # per element, and the partials add up to the total, which holds 3m states
    by_element = phonon_dos(freqs, mesh.weights, sigma=10.0, projections=modes(fc, mesh.qpoints, groups=groups)[1], group_names=names)
    assert set(by_element.partial) == set(names)
    np.testing.assert_allclose(sum(by_element.partial.values()), by_element.total, atol=1e-10)
    assert by_element.integral() == pytest.approx(3 * len(structure), rel=1e-3)


def test_dos_on_a_uniform_grid_loses_nothing_to_the_gaussian_window():
    """On a uniform grid each Gaussian is summed only near its centre; over the whole grid
    (``cutoff=None``, or any non-uniform grid) the result is the same to round-off, partial DOS
    included."""
    rng = np.random.default_rng(7)
    freqs = np.sort(rng.uniform(-30.0, 600.0, (40, 12)), axis=1)
    weights = rng.integers(1, 9, 40)
    shares = rng.dirichlet(np.ones(3), (40, 12))
    uniform = np.arange(-80.0, 650.0, 1.5)
    windowed = phonon_dos(freqs, weights, sigma=4.0, grid=uniform, projections=shares)
    full = phonon_dos(freqs, weights, sigma=4.0, grid=uniform, projections=shares, cutoff=None)
    skewed = phonon_dos(freqs, weights, sigma=4.0, grid=np.append(uniform, 2000.0), projections=shares)
    for reference in (full.total, skewed.total[:-1]):
        np.testing.assert_allclose(windowed.total, reference, rtol=0, atol=1e-15)
    for key in windowed.partial:
        np.testing.assert_allclose(windowed.partial[key], full.partial[key], rtol=0, atol=1e-15)
    assert windowed.integral() == pytest.approx(12.0, rel=1e-3)


def test_group_velocities_match_phonopy(example):
    name, ph, fc, structure = example
    rng = np.random.default_rng(3)
    q = np.vstack([[0.5, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0.5], [1 / 3, 1 / 3, 0], rng.random((6, 3)) - 0.5])
    freqs, gv = group_velocities(fc, structure.lattice.matrix, q)
    ph.run_qpoints(q)
    np.testing.assert_allclose(freqs, ph.qpoints.frequencies * THZ_TO_CM1, rtol=RTOL, atol=1e-4)
    # phonopy's analytic derivative with its degenerate-set rule, before it averages over the
    # little group of q (which zeroes ±v pairs of degenerate bands at zone-boundary points)
    reference = GroupVelocity(ph.dynamical_matrix, symmetry=None)
    reference.run(q)
    ref = reference.group_velocities
    np.testing.assert_allclose(gv, ref, atol=1e-5 * np.abs(ref).max() + 1e-8, err_msg=name)


def test_sound_velocity_of_simple_cubic_springs():
    """Nearest-neighbour central springs on a simple cubic lattice: ω_LA = 2√(k/M) sin(qa/2),
    so the longitudinal sound velocity along [100] is a√(k/M)."""
    a, k = 3.0, 4.0
    s = Structure(Lattice.cubic(a), ["Cu"], [[0, 0, 0]])
    fc = central_spring_force_constants(s, k, r_max=a + 0.1)
    mass = s[0].specie.atomic_mass
    v = sound_velocities(fc, s.lattice.matrix, directions=np.array([[1.0, 0, 0]]))[0]
    exact = a * 1e-10 * np.sqrt(k * c.electron_volt / 1e-20 / (mass * c.atomic_mass)) / 1000  # km/s
    assert v[2] == pytest.approx(exact, rel=1e-5)
    # the group velocity at a general q along x equals the analytic derivative a√(k/M) cos(qa/2)
    qx = 0.2
    _, gv = group_velocities(fc, s.lattice.matrix, np.array([[qx, 0, 0]]))
    assert np.max(gv[0, :, 0]) * THZ_ANGSTROM_TO_KM_S == pytest.approx(exact * np.cos(np.pi * qx), rel=1e-6)


def test_dulong_petit_and_zero_point_energy(si_primitive):
    fc = central_spring_force_constants(si_primitive, lambda r: 8.0 * np.exp(-(r - 2.35) ** 2), r_max=4.0)
    mesh = gamma_centred_mesh((8, 8, 8))
    freqs, _ = modes(fc, mesh.qpoints)
    assert freqs[1:].min() > 1.0  # stable: every mode but Γ's three acoustic ones is positive
    hot = thermal_properties(freqs, mesh.weights, np.array([1e6]), formula_units=formula_units(si_primitive))
    # k_B per mode at high T (Dulong–Petit), Γ's three zero modes excluded
    assert hot.heat_capacity[0] == pytest.approx(c.R * (3 * 2 - 3 / 512), rel=1e-6)
    mode_weights = np.repeat(mesh.weights, freqs.shape[1]) / mesh.weights.sum()
    zpe = 0.5 * np.sum(mode_weights * np.clip(freqs.ravel(), 0, None)) * c.h * c.c * 100 * c.N_A / 1000
    assert hot.zero_point_energy == pytest.approx(zpe, rel=1e-10)
    assert formula_units(si_primitive) == 2
    assert hot.per_formula_unit().heat_capacity[0] == pytest.approx(hot.heat_capacity[0] / 2)


def test_imaginary_modes_are_excluded_and_counted(si_primitive):
    """A lattice with an unstable spring: imaginary modes sit below zero in the DOS and are
    left out of the thermal sums, which then equal those of the stable modes alone."""
    fc = central_spring_force_constants(si_primitive, lambda r: np.where(r < 2.5, 8.0, -0.6), r_max=4.0)
    mesh = gamma_centred_mesh((6, 6, 6))
    freqs, _ = modes(fc, mesh.qpoints)
    assert freqs.min() < -10
    tp = thermal_properties(freqs, mesh.weights, np.array([300.0]))
    counts = np.broadcast_to(mesh.weights[:, None], freqs.shape)
    imaginary = freqs < 0
    imaginary[0, np.abs(freqs[0]) < 0.5] = False  # Γ's acoustic zeros are not unstable modes
    assert tp.n_imaginary == int(counts[imaginary].sum()) > 0
    stable = np.where(freqs > 0, freqs, 0.0)
    assert tp.heat_capacity[0] == pytest.approx(thermal_properties(stable, mesh.weights, np.array([300.0])).heat_capacity[0])
    dos = phonon_dos(freqs, mesh.weights, sigma=5.0)
    assert np.trapezoid(dos.total[dos.frequencies < -15], dos.frequencies[dos.frequencies < -15]) > 0


def test_mesh_properties_of_a_crystal_are_those_of_its_supercell(si_primitive):
    """Per formula unit, C_v and the DOS shape do not depend on the cell chosen."""
    fc = central_spring_force_constants(si_primitive, lambda r: 6.0 * np.exp(-(r - 2.35) ** 2), r_max=4.5)
    big = si_primitive * (2, 2, 2)
    fc_big = central_spring_force_constants(big, lambda r: 6.0 * np.exp(-(r - 2.35) ** 2), r_max=4.5)
    temps = np.array([100.0, 300.0])
    _, dos1, t1 = mesh_properties(fc, si_primitive, mesh=(8, 8, 8), temperatures=temps)
    _, dos2, t2 = mesh_properties(fc_big, big, mesh=(4, 4, 4), temperatures=temps)  # same q-points
    np.testing.assert_allclose(t1.per_formula_unit().heat_capacity, t2.per_formula_unit().heat_capacity, rtol=1e-8)
    assert t2.formula_units == 16 and t1.formula_units == 2
    assert dos2.integral() == pytest.approx(8 * dos1.integral(), rel=1e-3)


def test_band_frequencies_and_modes_agree(wurtzite_zno):
    fc = central_spring_force_constants(wurtzite_zno, 5.0, r_max=3.5)
    q = np.random.default_rng(0).random((7, 3))
    f1, proj = modes(fc, q, groups=np.array([0, 0, 1, 1]))
    f2 = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    np.testing.assert_allclose(f1, f2, atol=1e-9)
    np.testing.assert_allclose(proj.sum(-1), 1.0, atol=1e-12)
