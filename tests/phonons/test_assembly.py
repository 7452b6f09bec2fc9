"""Φ_ij(T) → D(q) → ω against exact ground truth: phonopy's own force constants and
analytic spring models. This is the very assembly every prediction goes through."""

import numpy as np
import pytest
import torch
from phonopy.physical_units import get_physical_units
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure

from vgnn_core import (
    band_frequencies,
    central_spring_force_constants,
    dynamical_matrices,
    from_phonopy,
)
from vgnn_core.io.phonopy import load_force_sets, phonopy_frequencies_cm1
from vgnn_core.phonons.qpath import high_symmetry_path
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_CM1, EV_ANGSTROM2_AMU_TO_THZ

CRYSTALS = ["Al2O3", "CaTiO3", "Cr", "MgB2", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase", "ZnO"]


def test_all_examples_found(phonopy_examples_dir):
    from vgnn_core.io.phonopy import example_directories

    assert [d.name for d in example_directories(phonopy_examples_dir)] == CRYSTALS


@pytest.mark.parametrize("name", CRYSTALS)
def test_phonopy_examples_along_path(phonopy_examples_dir, name):
    ph = load_force_sets(phonopy_examples_dir / name)
    primitive = get_pmg_structure(ph.primitive)
    path = high_symmetry_path(primitive, line_density=15)
    rng = np.random.default_rng(7)
    q = np.vstack([path.qpoints, rng.random((20, 3)) - 0.5])
    reference = phonopy_frequencies_cm1(ph, q)
    fc = from_phonopy(ph)
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    # same physics, CODATA vs phonopy's constant differ by 1.2e-7 relative
    assert np.abs(ours - reference).max() < 1e-3
    # exact assembly: with phonopy's own unit factor the agreement is at rounding level
    rescale = get_physical_units().DefaultToTHz / EV_ANGSTROM2_AMU_TO_THZ
    assert np.abs(ours * rescale - reference).max() < 2e-5
    # D(q) is Hermitian
    d = dynamical_matrices(fc, torch.as_tensor(q[:10]))
    assert torch.allclose(d, d.conj().transpose(-1, -2), atol=1e-12)


def test_simple_cubic_springs_analytic():
    k, a = 2.0, 2.8
    s = Structure(Lattice.cubic(a), ["Al"], [[0, 0, 0]])
    fc = central_spring_force_constants(s, k, r_max=3.0)
    q = np.random.default_rng(1).random((40, 3)) - 0.5
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    mass = s[0].specie.atomic_mass
    exact = np.sort(2 * np.sqrt(k / mass) * np.abs(np.sin(np.pi * q)), axis=1) * EV_ANGSTROM2_AMU_TO_CM1
    np.testing.assert_allclose(ours, exact, atol=1e-6)


def test_diatomic_chain_analytic():
    k = 3.0
    s = Structure(Lattice.tetragonal(4.0, 10.0).matrix[[0, 1, 2]], ["Na", "Cl"], [[0, 0, 0], [0.5, 0, 0]])
    fc = central_spring_force_constants(s, k, r_max=2.5)
    qx = np.linspace(-0.5, 0.5, 41)
    q = np.stack([qx, 0.3 * np.ones_like(qx), np.zeros_like(qx)], 1)
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    m1, m2 = s[0].specie.atomic_mass, s[1].specie.atomic_mass
    s_inv = 1 / m1 + 1 / m2
    root = np.sqrt(s_inv**2 - 4 * np.sin(np.pi * qx) ** 2 / (m1 * m2))
    acoustic = np.sqrt(np.clip(k * (s_inv - root), 0, None)) * EV_ANGSTROM2_AMU_TO_CM1
    optical = np.sqrt(k * (s_inv + root)) * EV_ANGSTROM2_AMU_TO_CM1
    np.testing.assert_allclose(ours[:, :4], 0, atol=1e-5)  # no transverse springs
    np.testing.assert_allclose(ours[:, 4], acoustic, atol=1e-5)
    np.testing.assert_allclose(ours[:, 5], optical, atol=1e-6)


def test_acoustic_sum_rule_exact_for_springs(si_primitive):
    fc = central_spring_force_constants(si_primitive, lambda r: 5.0 * np.exp(-r), r_max=4.0)
    assert float(fc.acoustic_sum_residual()) < 1e-12
    w = band_frequencies([fc], [torch.zeros(1, 3, dtype=torch.float64)])[0][0]
    assert torch.abs(w[:3]).max() < 1e-3


def test_repeated_qpoints_solved_once_and_returned_in_order(si_primitive):
    """A q-point given twice (segment ends, −0.0 vs 0.0, round-off) comes back at each place."""
    fc = central_spring_force_constants(si_primitive, lambda r: 5.0 * np.exp(-r), r_max=4.0)
    rng = np.random.default_rng(2)
    distinct = rng.random((5, 3)) - 0.5
    q = np.vstack([distinct, distinct[::-1] + 1e-15, [[-0.0, 0.0, -0.0]], [[0.0, 0.0, 0.0]]])
    together = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    one_by_one = np.vstack([band_frequencies([fc], [torch.as_tensor(row[None])])[0].numpy() for row in q])
    assert together.shape == (12, 6)
    np.testing.assert_allclose(together, one_by_one, atol=1e-9)
    np.testing.assert_allclose(together[5:10], together[:5][::-1], atol=1e-9)


@pytest.mark.parametrize("name", ["Al2O3", "MgB2", "SnO2"])
def test_zone_boundary_points_solved_real(phonopy_examples_dir, name, monkeypatch):
    """At Γ and the zone boundary of the 2×2×2 grid (2q integer) D(q) is real: the real
    matrices are exactly the complex ones' real part (imaginary part ~0), band_frequencies solves
    them there, and the frequencies equal phonopy's and the complex path's."""
    from vgnn_core.phonons import dynamical_matrix as dm

    ph = load_force_sets(phonopy_examples_dir / name)
    fc = from_phonopy(ph)
    q = np.array([[a / 2, b / 2, c / 2] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    q = np.vstack([q, q[1:] - 1.0])  # -½ ≡ ½: the same matrices
    complex_d = dynamical_matrices(fc, torch.as_tensor(q))
    real_d = dm.real_dynamical_matrices(fc, torch.as_tensor(q))
    scale = float(torch.abs(real_d).max())
    assert real_d.dtype == torch.float64  # symmetric up to the order of the sums
    assert torch.allclose(real_d, real_d.transpose(-1, -2), rtol=0, atol=1e-13 * scale)
    assert torch.abs(complex_d.imag).max() < 1e-12 * torch.abs(complex_d.real).max()
    assert torch.allclose(real_d, complex_d.real, rtol=0, atol=1e-12 * scale)
    assert dm.is_time_reversal_invariant(torch.as_tensor(q))
    assert not dm.is_time_reversal_invariant(torch.as_tensor([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0]]))

    solved = []
    eigvalsh = dm.eigvalsh_grouped
    monkeypatch.setattr(dm, "eigvalsh_grouped", lambda mats: solved.extend(m.dtype for m in mats) or eigvalsh(mats))
    ours = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    assert solved == [torch.float64]
    monkeypatch.setattr(dm, "is_time_reversal_invariant", lambda q, tol=1e-9: False)
    complex_path = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    assert solved == [torch.float64, torch.complex128]
    np.testing.assert_allclose(ours, complex_path, atol=1e-8)
    monkeypatch.undo()
    # in one call, a crystal with a general q-point among its own goes complex, the other real
    solved.clear()
    monkeypatch.setattr(dm, "eigvalsh_grouped", lambda mats: solved.extend(m.dtype for m in mats) or eigvalsh(mats))
    mixed = np.vstack([q, [[0.25, 0.0, 0.0]]])
    both = band_frequencies([fc, fc], [torch.as_tensor(q), torch.as_tensor(mixed)])
    assert sorted(map(str, solved)) == ["torch.complex128", "torch.float64"]
    np.testing.assert_allclose(both[1].numpy()[: len(q)], both[0].numpy(), atol=1e-8)
    np.testing.assert_allclose(ours[8:], ours[1:8], atol=1e-9)
    assert np.abs(ours - phonopy_frequencies_cm1(ph, q)).max() < 1e-3


@pytest.mark.parametrize("name", ["Al2O3", "SnO2", "ZnO"])
def test_members_real_matrices_and_frequencies_at_the_zone_boundary(phonopy_examples_dir, name, monkeypatch):
    """Several force constants on the same bonds (an ensemble's members) at Γ and the 2×2×2 zone
    boundary: one parity table gives each one's real D(q), equal to the complex matrices' real
    part; member_frequencies equals band_frequencies of each, also for cells too large for the
    table or the byte budget, and refuses general q-points and different bonds."""
    from vgnn_core.phonons import dynamical_matrix as dm
    from vgnn_core.phonons.force_constants import ForceConstants

    fc = from_phonopy(load_force_sets(phonopy_examples_dir / name))
    rng = np.random.default_rng(3)
    noise = torch.as_tensor(rng.normal(scale=0.05, size=tuple(fc.blocks.shape)))
    # three "members": phonopy's, a softer copy and a perturbed one, all on phonopy's bonds
    members = [fc, ForceConstants(fc.masses, fc.src, fc.dst, fc.shift, 0.8 * fc.blocks),
               ForceConstants(fc.masses, fc.src, fc.dst, fc.shift, fc.blocks + noise)]
    q = torch.as_tensor([[a / 2, b / 2, c / 2] for a in (0, 1) for b in (0, 1) for c in (0, 1)] + [[-0.5, 1.0, 0.5]])
    together = dm.real_dynamical_matrices_each(members, q)
    assert together.shape == (3, len(q), 3 * fc.n_atoms, 3 * fc.n_atoms)
    for k, member in enumerate(members):
        complex_d = dynamical_matrices(member, q)
        scale = float(torch.abs(complex_d.real).max())
        assert torch.allclose(together[k], complex_d.real, rtol=0, atol=1e-12 * scale)
        assert torch.allclose(together[k], dm.real_dynamical_matrices(member, q), rtol=0, atol=1e-12 * scale)

    expected = [band_frequencies([m], [q])[0] for m in members]
    got = dm.member_frequencies([members, members[:2]], [q, q[:3]])
    assert [tuple(g.shape) for g in got] == [(3, len(q), 3 * fc.n_atoms), (2, 3, 3 * fc.n_atoms)]
    for k in range(3):
        np.testing.assert_allclose(got[0][k].numpy(), expected[k].numpy(), atol=1e-6)
    np.testing.assert_allclose(got[1].numpy(), torch.stack(expected[:2])[:, :3].numpy(), atol=1e-6)
    tiny = dm.member_frequencies([members], [q], max_bytes=1)[0]  # each member in waves of its own
    np.testing.assert_allclose(tiny.numpy(), got[0].numpy(), atol=1e-6)
    monkeypatch.setattr(dm, "SHIFT_TABLE_MAX", 1)  # no table fits: each member's bond-by-bond sums
    np.testing.assert_allclose(dm.member_frequencies([members], [q])[0].numpy(), got[0].numpy(), atol=1e-6)
    monkeypatch.undo()
    assert np.abs(got[0][0].numpy() - phonopy_frequencies_cm1(load_force_sets(phonopy_examples_dir / name),
                                                               q.numpy())).max() < 1e-3

    with pytest.raises(ValueError, match="2q integer"):
        dm.member_frequencies([members], [torch.as_tensor([[0.25, 0.0, 0.0]])])
    shifted = ForceConstants(fc.masses, fc.src, fc.dst, fc.shift.flip(0), fc.blocks)
    with pytest.raises(ValueError, match="same bonds"):
        dm.real_dynamical_matrices_each([fc, shifted], q)


@pytest.mark.parametrize("name", ["ZnO", "Al2O3", "MgB2"])
def test_shift_table_equals_the_sum_over_bonds(phonopy_examples_dir, name, monkeypatch):
    """D(q) from the force constants summed per lattice translation (one matrix product for all
    q-points) equals the sum over bonds at each q-point — complex at general q, real at 2q
    integer — and so do its gradients in the blocks; a bond given twice counts twice."""
    from vgnn_core.phonons import dynamical_matrix as dm
    from vgnn_core.phonons.force_constants import ForceConstants

    fc = from_phonopy(load_force_sets(phonopy_examples_dir / name))
    rng = np.random.default_rng(3)
    q = torch.as_tensor(np.vstack([rng.random((25, 3)) - 0.5, [[0.5, 0, 0.5], [0, 0, 0]]]))
    half = torch.as_tensor([[a / 2, b / 2, c / 2] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float64)
    weights = torch.as_tensor(rng.standard_normal((len(q), 3 * fc.n_atoms, 3 * fc.n_atoms)))

    def assembled():
        blocks = fc.blocks.clone().requires_grad_(True)
        live = ForceConstants(fc.masses, fc.src, fc.dst, fc.shift, blocks)
        d = dm.dynamical_matrices(live, q)
        (d.real * weights + d.imag * weights.flip(0)).sum().backward()
        return d.detach(), dm.real_dynamical_matrices(fc, half), blocks.grad

    assert dm.ShiftTable.from_bonds(fc.blocks.reshape(-1, 9), dm.block_entries(fc.src, fc.dst, fc.n_atoms),
                                    fc.shift, 9 * fc.n_atoms**2) is not None
    table_d, table_real, table_grad = assembled()
    monkeypatch.setattr(dm, "SHIFT_TABLE_MAX", 0)  # every table too large: bond by bond
    bond_d, bond_real, bond_grad = assembled()
    scale = float(bond_d.abs().max())
    assert torch.allclose(table_d, bond_d, rtol=0, atol=1e-13 * scale)
    assert torch.allclose(table_real, bond_real, rtol=0, atol=1e-13 * scale)
    assert torch.allclose(table_grad, bond_grad, rtol=0, atol=1e-12 * float(bond_grad.abs().max()))
    monkeypatch.undo()
    doubled = ForceConstants(fc.masses, torch.cat([fc.src, fc.src]), torch.cat([fc.dst, fc.dst]),
                             torch.cat([fc.shift, fc.shift]), torch.cat([fc.blocks, fc.blocks]) / 2)
    assert torch.allclose(dm.dynamical_matrices(doubled, q), table_d, rtol=0, atol=1e-13 * scale)


def test_distinct_shifts_exact_keys_and_general_values():
    """Half-integer shifts (lattice translations, T + ΔL/2) by exact keys, any others by value:
    each row maps to its distinct shift."""
    from vgnn_core.phonons.dynamical_matrix import distinct_shifts

    for shift in (torch.tensor([[0, 0, 1.0], [0.5, -1, 0], [0, 0, 1], [-3, 2.5, 7], [0.5, -1, 0]]),
                  torch.tensor([[0.1, 0, 0], [0.2, 0, 0], [0.1, 0, 0]], dtype=torch.float64)):
        distinct, inverse = distinct_shifts(shift)
        assert torch.equal(distinct[inverse], shift)
        assert len(distinct) == len({tuple(r) for r in shift.tolist()})
