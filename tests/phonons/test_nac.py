"""Non-analytic (Gonze–Lee dipole–dipole) correction against phonopy's own, on every phonopy
example with a BORN file: LO–TO splitting at Γ along several directions, general q-points, a
band path through Γ, acoustic sum rule, Hermiticity, charge neutrality and the BORN reader."""

import numpy as np
import pytest
import torch
from phonopy.file_IO import parse_BORN
from phonopy.physical_units import get_physical_units
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure

from vgnn_core import band_frequencies, dynamical_matrices, from_phonopy, gamma_frequencies
from vgnn_core.io.phonopy import load_force_sets, read_born_file
from vgnn_core.phonons.dynamical_matrix import eigenvalues_to_cm1, gamma_dynamical_matrices_along
from vgnn_core.phonons.nac import (
    BornCharges,
    GammaJumpCorrection,
    NonAnalyticCorrection,
    WangCorrection,
    commensurate_qpoints,
    enforce_charge_neutrality,
    path_q_directions,
)
from vgnn_core.phonons.qpath import high_symmetry_path
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_THZ, THZ_TO_CM1

POLAR = ["Al2O3", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase", "ZnO"]
#: our CODATA √(eV/Å²/amu) → THz over phonopy's: compare at rounding level, not 1.2e-7 relative
RESCALE = get_physical_units().DefaultToTHz / EV_ANGSTROM2_AMU_TO_THZ
TOL = 1e-4  # cm⁻¹
GAMMA_DIRECTIONS = np.array([[1.0, 0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0], [0.3, -0.2, 0.5]])


def max_deviation(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest |ω_ours − ω_phonopy| (cm⁻¹) over modes away from zero; modes within 1e-3 cm⁻¹ of
    zero in both (acoustic at Γ, where √λ magnifies round-off) count as equal."""
    diff = np.abs(ours - ref)
    diff[(np.abs(ours) < 1e-3) & (np.abs(ref) < 1e-3)] = 0.0
    return float(diff.max())


class Polar:
    """One example: phonopy with NAC (gonze), and ours from the same force constants and Z*."""

    def __init__(self, root, name):
        self.name = name
        self.ph = load_force_sets(root / name)
        self.ph.symmetrize_force_constants()  # exact acoustic sum rule: acoustic Γ modes at 0
        self.structure = get_pmg_structure(self.ph.primitive)
        self.charges = read_born_file(root / name / "BORN", self.structure).neutral()
        factor = 14.4 if self.charges.factor is None else self.charges.factor
        self.ph.nac_params = {"born": self.charges.born, "dielectric": self.charges.epsilon, "factor": factor,
                              "method": "gonze"}
        dm = self.ph.dynamical_matrix
        assert type(dm).__name__ == "DynamicalMatrixGL"
        # phonopy symmetrises Z* and ε∞ once more: use exactly what it uses
        self.nac = NonAnalyticCorrection.from_structure(self.structure, dm.born, dm.dielectric_constant, factor=factor)
        self.supercell = np.rint(np.asarray(self.ph.supercell.cell) @ np.linalg.inv(self.ph.primitive.cell))
        self.full = from_phonopy(self.ph)
        self.short = self.nac.short_range(self.full, self.supercell)

    def phonopy_cm1(self, q, direction=None):
        self.ph.run_qpoints(np.atleast_2d(q), nac_q_direction=direction)
        return np.asarray(self.ph.qpoints.frequencies) * THZ_TO_CM1

    def ours_cm1(self, q, directions=None):
        q = torch.as_tensor(np.atleast_2d(q))
        return band_frequencies([self.short], [q], nacs=[self.nac], q_directions=[directions])[0].numpy() * RESCALE


@pytest.fixture(scope="module", params=POLAR)
def polar(request, phonopy_examples_dir):
    return Polar(phonopy_examples_dir, request.param)


def test_born_reader_matches_phonopy(polar, phonopy_examples_dir):
    raw = read_born_file(phonopy_examples_dir / polar.name / "BORN", polar.structure)
    ref = parse_BORN(polar.ph.primitive, filename=phonopy_examples_dir / polar.name / "BORN")
    np.testing.assert_allclose(raw.born, ref["born"], atol=1e-12)
    np.testing.assert_allclose(raw.epsilon, ref["dielectric"], atol=1e-12)
    assert raw.factor == ref.get("factor")
    # the neutral charges differ from the file's by the mean only, and phonopy's symmetrised
    # copy of them is the same up to the file's rounding
    np.testing.assert_allclose(polar.charges.born, raw.born - raw.born.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(polar.nac.born, polar.charges.born, atol=1e-6)


def test_charge_neutrality():
    born = np.array([np.diag([1.1, 1.2, 1.0]), -np.eye(3), -0.05 * np.ones((3, 3))])
    neutral = enforce_charge_neutrality(born)
    np.testing.assert_allclose(neutral.sum(axis=0), 0, atol=1e-15)
    np.testing.assert_allclose(born - neutral, np.broadcast_to(born.mean(axis=0), born.shape))
    assert BornCharges(np.eye(3), born).neutral().born.sum(axis=0) == pytest.approx(np.zeros((3, 3)), abs=1e-15)
    with pytest.raises(ValueError, match="shape"):
        enforce_charge_neutrality(np.zeros((2, 3)))


def test_gamma_lo_to_and_general_q_match_phonopy(polar):
    rng = np.random.default_rng(3)
    general = rng.random((4, 3)) - 0.5
    ours = polar.ours_cm1(general)
    assert max_deviation(ours, polar.phonopy_cm1(general)) < TOL
    # Γ approached from several directions: LO–TO splitting depends on q̂
    gamma = np.zeros((len(GAMMA_DIRECTIONS), 3))
    ours_gamma = polar.ours_cm1(gamma, GAMMA_DIRECTIONS)
    ref_gamma = np.vstack([polar.phonopy_cm1(np.zeros(3), d) for d in GAMMA_DIRECTIONS])
    assert max_deviation(ours_gamma, ref_gamma) < TOL
    # acoustic modes are untouched (neutral charges): the dipole term annihilates a rigid
    # translation, and they stay at zero
    lo_term = polar.nac.dipole_matrices(gamma, GAMMA_DIRECTIONS) - polar.nac.dipole_matrices(gamma)
    rigid = np.tile(np.eye(3), (polar.nac.n_atoms, 1))  # (3m, 3)
    assert np.abs(lo_term).max() > 1.0 and np.abs(lo_term @ rigid).max() < 1e-10
    no_nac = gamma_frequencies([polar.full])[0].numpy() * RESCALE
    assert np.abs(ours_gamma[:, :3]).max() < 1e-3 and np.abs(no_nac[:3]).max() < 1e-3
    # the optical ones are raised, never lowered
    assert np.all(ours_gamma[:, 3:] >= no_nac[None, 3:] - 1e-6)
    # Γ with no direction: phonopy leaves NAC out, i.e. the full force constants' TO modes
    assert max_deviation(polar.ours_cm1(np.zeros(3))[0], no_nac) < TOL
    assert max_deviation(gamma_frequencies([polar.short], [polar.nac])[0].numpy() * RESCALE, no_nac) < TOL
    # D(q) is Hermitian
    d = dynamical_matrices(polar.short, torch.as_tensor(np.vstack([general, gamma])), nac=polar.nac,
                           q_directions=np.vstack([np.zeros_like(general), GAMMA_DIRECTIONS]))
    assert torch.allclose(d, d.conj().transpose(-1, -2), atol=1e-12)


def test_band_path_through_gamma_matches_phonopy(polar):
    path = high_symmetry_path(polar.structure, line_density=4)
    segments = [(a, b) for a, b in path.segments if np.allclose(path.qpoints[a], 0) or np.allclose(path.qpoints[b], 0)]
    assert segments, "the path should touch Γ"
    pieces = [path.qpoints[a : b + 1] for a, b in segments]
    q = np.vstack(pieces)
    local = np.cumsum([0] + [len(p) for p in pieces])
    dirs = path_q_directions(q, [(int(s), int(e) - 1) for s, e in zip(local[:-1], local[1:])], polar.structure.lattice.matrix)
    ours = polar.ours_cm1(q, dirs)
    polar.ph.run_band_structure(pieces)
    ref = np.vstack(polar.ph.band_structure.frequencies) * THZ_TO_CM1
    assert max_deviation(ours, ref) < TOL
    # at each Γ end the LO modes are there: the highest Γ mode exceeds the no-NAC one
    no_nac = gamma_frequencies([polar.full])[0].numpy() * RESCALE
    at_gamma = np.all(np.abs(q) < 1e-12, axis=1)
    assert at_gamma.any() and np.all(ours[at_gamma, -1] >= no_nac[-1] - 1e-6)


def test_short_range_force_constants_are_physical(polar):
    # the dipole part removed sums over partners to C(Γ)'s rows, which are purely antisymmetric
    # (the Hermitian part of the on-site term is what Gonze–Lee subtract): the short-range
    # constants keep the full ones' symmetric sum rule
    m = polar.nac.n_atoms

    def row_sums(fc):
        return torch.zeros(m, 3, 3, dtype=fc.blocks.dtype).index_add_(0, fc.src, fc.blocks).numpy()

    c_rows = polar.nac.dipole_matrices(np.zeros((1, 3)))[0].reshape(m, 3, m, 3).sum(axis=2)
    np.testing.assert_allclose(c_rows.imag, 0, atol=1e-10)
    np.testing.assert_allclose(c_rows.real + c_rows.real.transpose(0, 2, 1), 0, atol=1e-10)
    np.testing.assert_allclose(row_sums(polar.short) + c_rows.real, row_sums(polar.full), atol=1e-8)
    rev = polar.short.reverse_index()
    assert torch.allclose(polar.short.blocks, polar.short.blocks[rev].transpose(-1, -2), atol=1e-10)
    # at the supercell's commensurate q the split is exact, D = D_short + C, up to the finite
    # G sphere: to ~1e-8 once q is folded into the first Brillouin zone (anywhere in [0, 1)³)
    nac = polar.nac
    folded = NonAnalyticCorrection(nac.lattice, nac.frac_coords, nac.born, nac.epsilon, factor=nac.factor, fold_q=True)
    qc = commensurate_qpoints(polar.supercell)
    full = dynamical_matrices(polar.full, torch.as_tensor(qc))
    split = dynamical_matrices(polar.short, torch.as_tensor(qc), nac=folded)
    assert (full - split).abs().max() < 1e-7 * full.abs().max()
    # folded, D(q) is periodic: q and q + G have the same frequencies
    q = np.array([[0.3, -0.1, 0.45], [0.0, 0.0, 0.0]])
    shifted = band_frequencies([polar.short], [torch.as_tensor(q + [1, -1, 2])], nacs=[folded],
                               q_directions=[np.array([[0, 0, 0], [1.0, 0, 0]])])[0]
    plain = band_frequencies([polar.short], [torch.as_tensor(q)], nacs=[folded],
                             q_directions=[np.array([[0, 0, 0], [1.0, 0, 0]])])[0]
    assert max_deviation(shifted.numpy(), plain.numpy()) < 1e-6
    # and the short-range part is what phonopy itself keeps (its Gonze force constants)
    polar.ph.dynamical_matrix.make_Gonze_nac_dataset()
    ph_short = polar.ph.dynamical_matrix.short_range_force_constants
    assert np.abs(from_phonopy_blocks(polar.ph, ph_short) - polar.short.blocks.numpy()).max() < 1e-6


def test_gamma_jump_closed_form_equals_the_ewald_difference(polar):
    """The LO–TO jump alone, C(Γ, q̂) − C(Γ), in closed form (the G = 0 term) equals the
    difference of the two Gonze–Lee Ewald sums, in every direction, anisotropic ε∞ included;
    nothing is added away from Γ or without a direction."""
    jump = GammaJumpCorrection.from_structure(polar.structure, polar.nac.born, polar.nac.epsilon,
                                              factor=polar.nac.factor)
    directions = np.vstack([GAMMA_DIRECTIONS, [[-0.7, 0.1, 0.25]]])
    closed = jump.dynamical_term(polar.full, np.zeros((len(directions), 3)), directions)
    ewald = jump.ewald_jump(polar.full, directions)
    assert np.abs(closed).max() > 1e-3  # a polar crystal: a real jump
    np.testing.assert_allclose(closed, ewald, atol=1e-12 * np.abs(ewald).max())
    away = jump.dynamical_term(polar.full, [[0.1, 0, 0], [0, 0, 0]], [[1.0, 0, 0], [0, 0, 0]])
    assert not away.any()
    # the assemblies add it only where it acts: at Γ reached from a direction
    q = np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0, 0], [1.0, 0, 0], [0, 0, 0]])
    d = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert jump.acting_qpoints(q, d).tolist() == [0, 4]  # q = (1, 0, 0) is not Γ for the jump
    assert jump.acting_qpoints(q).tolist() == []
    term = jump.dynamical_term(polar.full, q, d)
    acting = np.flatnonzero(np.abs(term).reshape(len(q), -1).max(axis=1) > 0)
    assert acting.tolist() == [0, 4]
    assert polar.nac.acting_qpoints(q, d).tolist() == [0, 1, 2, 3, 4]  # Gonze–Lee acts everywhere
    with_jump = dynamical_matrices(polar.full, torch.as_tensor(q), nac=jump, q_directions=d)
    without = dynamical_matrices(polar.full, torch.as_tensor(q))
    np.testing.assert_allclose((with_jump - without).numpy(), term, atol=1e-12 * np.abs(term).max())


def test_wang_method_matches_phonopy(polar):
    saved = polar.ph.nac_params
    polar.ph.nac_params = {**saved, "method": "wang"}
    try:
        dm = polar.ph.dynamical_matrix
        assert type(dm).__name__ == "DynamicalMatrixWang"
        wang = WangCorrection(polar.nac.lattice, dm.born, dm.dielectric_constant, polar.supercell, factor=polar.nac.factor)
        q = np.vstack([np.random.default_rng(5).random((3, 3)) - 0.5, np.zeros((3, 3)), [[0.01, 0.02, 0.0]]])
        dirs = np.vstack([np.zeros((3, 3)), GAMMA_DIRECTIONS[:3], [[0, 0, 1.0]]])  # a direction overrides q
        ours = band_frequencies([polar.full], [torch.as_tensor(q)], nacs=[wang], q_directions=[dirs])[0].numpy()
        ref = np.vstack([polar.phonopy_cm1(qq, d if d.any() else None) for qq, d in zip(q, dirs)])
        assert max_deviation(ours * RESCALE, ref) < TOL
        assert np.all(ours[3:6, -1] * RESCALE > gamma_frequencies([polar.full])[0].numpy()[-1] * RESCALE - 1e-6)
    finally:
        polar.ph.nac_params = saved


def test_gamma_along_directions_is_a_real_solve(polar):
    """D at Γ along a direction, built real (:func:`gamma_dynamical_matrices_along`), for
    Gonze–Lee on the short-range force constants, the closed-form jump and Wang's method on the
    full ones: the correction's term is real there, and the real solve gives phonopy's LO and TO
    modes (a zero direction: TO) and the complex route's."""
    dm = polar.ph.dynamical_matrix
    directions = np.vstack([GAMMA_DIRECTIONS, np.zeros((1, 3))])
    jump = GammaJumpCorrection.from_structure(polar.structure, polar.nac.born, polar.nac.epsilon,
                                              factor=polar.nac.factor)
    wang = WangCorrection(polar.nac.lattice, dm.born, dm.dielectric_constant, polar.supercell, factor=polar.nac.factor)
    ref = np.vstack([polar.phonopy_cm1(np.zeros(3), d if d.any() else None) for d in directions])
    for fc, correction in ((polar.short, polar.nac), (polar.full, jump), (polar.full, wang)):
        term = correction.dynamical_term(fc, np.zeros_like(directions), directions)
        assert np.abs(term.imag).max() <= 1e-12 * np.abs(term).max()
        mats = gamma_dynamical_matrices_along(fc, correction, directions)
        assert mats.dtype == torch.float64 and mats.shape == (5, 3 * fc.n_atoms, 3 * fc.n_atoms)
        torch.testing.assert_close(mats, mats.mT, rtol=0, atol=1e-12)
        ours = eigenvalues_to_cm1(torch.linalg.eigvalsh(mats)).numpy()
        assert max_deviation(ours * RESCALE, ref) < TOL, type(correction).__name__
        complex_route = band_frequencies([fc], [torch.zeros(5, 3, dtype=torch.float64)], nacs=[correction],
                                         q_directions=[directions])[0].numpy()
        assert max_deviation(ours, complex_route) < 1e-6


def from_phonopy_blocks(ph, supercell_fc: np.ndarray) -> np.ndarray:
    """Given supercell force constants of ``ph`` on our bonds, in the order of ``from_phonopy``."""
    saved = ph.force_constants
    ph.force_constants = supercell_fc
    try:
        return from_phonopy(ph).blocks.numpy()
    finally:
        ph.force_constants = saved


def test_nacl_lo_to_splitting(phonopy_examples_dir):
    nacl = Polar(phonopy_examples_dir, "NaCl")
    gamma = nacl.ours_cm1(np.zeros((3, 3)), GAMMA_DIRECTIONS[:3])
    # cubic: one LO mode tens of cm⁻¹ above the two TO modes, whatever the direction
    split = gamma[:, 5] - gamma[:, 4]
    assert np.all(split > 50) and np.ptp(split) < 1e-6
    np.testing.assert_allclose(gamma[:, 3], gamma[:, 4], atol=1e-6)
    # approaching Γ: the limit from a small q along x equals the Γ value with direction x
    near = nacl.ours_cm1(np.array([1e-4, 0, 0]))[0]
    assert np.abs(near[3:] - gamma[0, 3:]).max() < 0.1


def test_commensurate_qpoints_non_diagonal():
    mat = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) * 2
    q = commensurate_qpoints(mat)
    assert len(q) == round(abs(np.linalg.det(mat)))
    assert np.allclose(q @ mat.T - np.rint(q @ mat.T), 0)


def test_wrong_shapes_raise():
    s = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="Born charges of shape"):
        NonAnalyticCorrection.from_structure(s, np.zeros((3, 3, 3)), np.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        NonAnalyticCorrection.from_structure(s, np.zeros((2, 3, 3)), -np.eye(3))


def test_born_expansion_refuses_a_non_finite_cell_before_spglib():
    """spglib crashes the interpreter on NaN (a child process, so a crash fails only this test)."""
    import subprocess
    import sys

    code = """
import numpy as np
from vgnn_core.phonons.nac import expand_born_charges
try:
    expand_born_charges(np.zeros((2, 3, 3)), np.eye(3) * 4, [[0, 0, 0], [np.nan, 0.5, 0.5]], [11, 17])
except ValueError as e:
    print(e)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.strip() == "lattice or coordinates contain NaN or infinity"
