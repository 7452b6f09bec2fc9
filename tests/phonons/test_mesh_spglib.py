"""The irreducible q-mesh (spglib's reduction): weighted sums equal sums over the whole grid."""

import numpy as np
import pytest
import torch

from vgnn_core import band_frequencies, central_spring_force_constants
from vgnn_core.crystal.symmetry import analyse_symmetry
from vgnn_core.phonons.mesh import gamma_centred_mesh


@pytest.mark.parametrize("mesh", [(4, 4, 4), (5, 5, 3), (4, 4, 2), (6, 6, 3)])
def test_reduced_mesh_sums_equal_the_full_grid(si_primitive, monoclinic_zro2, mesh):
    """Including meshes that keep only part of the point group (5×5×3 of an fcc cell)."""
    for s in (si_primitive, monoclinic_zro2):
        fc = central_spring_force_constants(s, lambda r: 5 * np.exp(-(r - 2.3) ** 2), r_max=5.0)
        n = np.array(mesh)
        grid = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3) / n
        full = band_frequencies([fc], [torch.as_tensor(grid)])[0].numpy()
        reduced = gamma_centred_mesh(mesh, analyse_symmetry(s).rotations)
        assert reduced.weights.sum() == len(grid) and np.abs(reduced.qpoints[0]).max() == 0  # Γ first
        assert len(reduced.weights) < len(grid)
        freqs = band_frequencies([fc], [torch.as_tensor(reduced.qpoints)])[0].numpy()
        for f in (np.abs, np.square, lambda w: np.log1p(np.abs(w))):
            weighted = (f(freqs).sum(axis=1) * reduced.weights).sum() / len(grid)
            assert weighted == pytest.approx(f(full).sum(axis=1).mean(), rel=1e-12)
        # each kept point stands for the grid points in its star only
        assert np.all(np.abs(reduced.qpoints) <= 0.5)


def test_slightly_distorted_cell_reduces_by_its_true_symmetry_only(si_primitive):
    """The analysis tolerance (1e-3 Å) may call a distorted cell symmetric; the q-mesh uses only
    operations that map the cell onto itself within 1e-5 Å, so its sums stay exact."""
    from vgnn_core.crystal.crystal import as_crystal
    from vgnn_core.phonons.result import crystal_mesh

    s = si_primitive.copy()
    s.translate_sites([1], [3e-5, 1e-5, 0])  # ~1e-4 Å: within SYMPREC, not a true symmetry
    crystal = as_crystal(s)
    assert len(crystal.symmetry.rotations) == 48
    assert len(crystal.mesh_rotations) < 48
    fc = central_spring_force_constants(s, lambda r: 5 * np.exp(-(r - 2.3) ** 2), r_max=5.0)
    mesh = crystal_mesh(crystal, mesh=(4, 4, 4))
    n = np.array([4, 4, 4])
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3) / n
    full = band_frequencies([fc], [torch.as_tensor(grid)])[0].numpy()
    freqs = band_frequencies([fc], [torch.as_tensor(mesh.qpoints)])[0].numpy()
    weighted = (np.abs(freqs).sum(axis=1) * mesh.weights).sum() / len(grid)
    assert weighted == pytest.approx(np.abs(full).sum(axis=1).mean(), rel=1e-12)
