"""A cell that repeats its primitive cell: which atom repeats which (``primitive_sites``), and the
primitive cell's own modes measured from the cell's force constants (``primitive_frequencies``),
against the primitive cell's spectrum from an exactly solvable spring model."""

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from vgnn_core import band_frequencies, central_spring_force_constants
from vgnn_core.crystal.crystal import as_crystal
from vgnn_core.nn.ensemble import UNCERTAINTY_QPOINTS
from vgnn_core.phonons.dynamical_matrix import primitive_frequencies


def spring(r):
    return 6.0 * np.exp(-((r - 2.2) ** 2))  # eV/Å², every bond within 4.5 Å


def corundum() -> Structure:
    """α-Al₂O₃ in hexagonal axes: 30 atoms, three rhombohedral primitive cells of 10 (lattice points in thirds)."""
    return Structure.from_spacegroup("R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"],
                                     [[0, 0, 0.3523], [0.3064, 0, 0.25]])


def cells(si_primitive, perovskite_srtio3):
    """(primitive cell, other cells of the same crystal): centred, supercells in halves and thirds, skewed."""
    skewed = si_primitive.copy()
    skewed.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # the same lattice, another basis
    return [(si_primitive, [si_primitive.to_conventional(), si_primitive * (3, 1, 1), si_primitive * (1, 3, 2),
                            skewed * (2, 1, 1)]),
            (perovskite_srtio3, [perovskite_srtio3 * (2, 2, 2), perovskite_srtio3 * (1, 1, 3)]),
            (corundum().get_primitive_structure(), [corundum()])]


def test_primitive_sites_name_each_atom_s_primitive_atom_and_cell(si_primitive, perovskite_srtio3):
    for primitive, others in cells(si_primitive, perovskite_srtio3):
        assert as_crystal(primitive).primitive_sites is None
        for cell in others:
            sites = as_crystal(cell).primitive_sites
            n = len(cell) // len(primitive)
            assert abs(round(np.linalg.det(sites.matrix))) == n and len(sites.representatives) == len(primitive)
            assert (np.bincount(sites.site) == n).all() and (sites.site[sites.representatives] == np.arange(len(primitive))).all()
            x = cell.frac_coords @ sites.matrix  # each atom is its representative moved by a primitive lattice vector
            np.testing.assert_allclose(x, x[sites.representatives[sites.site]] + sites.offset, atol=1e-9)
            species = np.array([s.specie.Z for s in cell])
            assert (species == species[sites.representatives[sites.site]]).all()


def primitive_of(cell: Structure, sites) -> Structure:
    """The primitive cell in the basis the sites name: lattice M⁻¹ · the cell's, the representatives' positions."""
    x = cell.frac_coords @ sites.matrix
    return Structure(np.linalg.inv(sites.matrix) @ cell.lattice.matrix,
                     [cell[i].specie for i in sites.representatives], x[sites.representatives] % 1.0)


def test_the_primitive_cell_s_modes_from_any_cell_that_repeats_it(si_primitive, perovskite_srtio3):
    """Spring-model force constants of each cell give, projected, the primitive cell's spectrum at each
    of its eight 2×2×2 points exactly (point by point in the basis the sites name; as a set against
    the primitive cell given, whose basis may differ), with no folded modes (3p per point, where the
    cell's own D(q) at q = M k has N times as many), for every member alike."""
    k = torch.as_tensor(UNCERTAINTY_QPOINTS, dtype=torch.float64)
    for primitive, others in cells(si_primitive, perovskite_srtio3):
        fc = central_spring_force_constants(primitive, spring, r_max=4.5)
        expected = np.sort(band_frequencies([fc], [k])[0].numpy().ravel())
        assert expected.max() > 100.0  # a stiff model: the comparison is not of zeros
        for cell in others:
            sites = as_crystal(cell).primitive_sites
            fc_cell = central_spring_force_constants(cell, spring, r_max=4.5)
            got = primitive_frequencies([fc_cell, fc_cell], sites, k)
            assert got.shape == (2, 8, 3 * len(primitive))
            torch.testing.assert_close(got[0], got[1], atol=1e-4, rtol=0)  # each member alike (round-off at Γ's zeros)
            np.testing.assert_allclose(np.sort(got[0].numpy().ravel()), expected, atol=1e-4)  # √ of round-off at Γ
            own = central_spring_force_constants(primitive_of(cell, sites), spring, r_max=4.5)
            np.testing.assert_allclose(got[0].numpy(), band_frequencies([own], [k])[0].numpy(), atol=1e-4)


def test_primitive_frequencies_refuse_what_they_cannot_solve(si_primitive):
    cell = si_primitive * (2, 1, 1)
    sites = as_crystal(cell).primitive_sites
    fc = central_spring_force_constants(cell, spring, r_max=4.5)
    with pytest.raises(ValueError, match="2k integer"):
        primitive_frequencies([fc], sites, torch.tensor([[0.25, 0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="primitive sites of 4 atoms"):
        primitive_frequencies([central_spring_force_constants(si_primitive * (3, 1, 1), spring, r_max=4.5)], sites,
                              torch.zeros(1, 3, dtype=torch.float64))


def test_noise_that_breaks_the_repetition_keeps_a_symmetric_matrix_with_exact_acoustic_modes(si_primitive):
    cell = si_primitive.to_conventional()
    step = np.random.default_rng(4).normal(size=(len(cell), 3))
    noisy = Structure(cell.lattice, cell.species, cell.cart_coords + 4e-3 * step / np.linalg.norm(step, axis=1, keepdims=True),
                      coords_are_cartesian=True)
    sites = as_crystal(noisy).primitive_sites
    assert sites is not None and len(sites.representatives) == 2  # 4 mÅ is within the lattice points' tolerance
    fc = central_spring_force_constants(noisy, spring, r_max=4.5)
    got = primitive_frequencies([fc], sites, torch.as_tensor(UNCERTAINTY_QPOINTS, dtype=torch.float64))[0]
    assert np.abs(got[0, :3].numpy()).max() < 1e-4  # Γ: three acoustic zeros, exactly
    exact = np.sort(band_frequencies([central_spring_force_constants(si_primitive, spring, r_max=4.5)],
                                     [torch.as_tensor(UNCERTAINTY_QPOINTS, dtype=torch.float64)])[0].numpy().ravel())
    np.testing.assert_allclose(np.sort(got.numpy().ravel()), exact, atol=5.0)  # near the ideal crystal's (4 mÅ, steep springs)


def test_atoms_that_do_not_repeat_are_no_primitive_sites(si_primitive):
    """Lattice points that the atoms do not follow (one atom replaced) give no sites, not wrong ones."""
    from vgnn_core.crystal.symmetry import lattice_points, primitive_sites

    cell = si_primitive.to_conventional()
    points = lattice_points(cell)
    assert len(points) == 4 and primitive_sites(cell, points) is not None
    cell.replace(0, "Ge")
    assert primitive_sites(cell, points) is None
