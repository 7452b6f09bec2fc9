"""Whole 3×3 force-constant blocks (0e + 1e + 2e): the physics must hold for any weights."""

import numpy as np
import pytest
import torch
from pymatgen.core import Structure
from scipy.spatial.transform import Rotation

from vgnn_core import VGNN, Predictor, dynamical_matrices
from vgnn_core.phonons.force_constants import divergence_free_antisymmetric

TOL = 1e-3  # cm⁻¹


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(7)
    model = VGNN(kind="kmvn", r_bond=5.0, full_blocks=True).double()
    with torch.no_grad():  # make the antisymmetric read-out as large as the symmetric one
        model.readout.linear_anti_even.weight.mul_(30.0)
        model.readout.linear_anti_odd.weight.mul_(30.0)
    return Predictor(model)


def antisymmetric_size(fc) -> float:
    return float((fc.blocks - fc.blocks.transpose(1, 2)).abs().max() / fc.blocks.abs().max())


def test_blocks_have_an_antisymmetric_part_and_stay_physical(full, monoclinic_zro2, perovskite_srtio3):
    for s in (monoclinic_zro2, perovskite_srtio3):
        (fc,) = full.predict_force_constants([s])
        m = fc.n_atoms
        offsite, onsite = fc.blocks[:-m], fc.blocks[-m:]
        assert antisymmetric_size(fc) > 0.05  # a real antisymmetric part, not round-off
        # pairing Φ_ji(−T) = Φ_ij(T)ᵀ, exact sum rule, symmetric on-site blocks
        rev = fc.reverse_index()
        assert torch.allclose(fc.blocks[rev], fc.blocks.transpose(1, 2), atol=1e-12)
        assert float(fc.acoustic_sum_residual()) < 1e-12
        assert torch.allclose(onsite, onsite.transpose(1, 2), atol=1e-12)
        assert offsite.shape[0] == fc.n_bonds - m
        q = torch.as_tensor(np.random.default_rng(1).random((12, 3)) - 0.5)
        d = dynamical_matrices(fc, q)
        assert torch.allclose(d, d.conj().transpose(-1, -2), atol=1e-13)
        gamma = full.predict_gamma([s])[0]
        assert np.sort(np.abs(gamma))[:3].max() < TOL


def test_rotation_inversion_and_permutation(full, monoclinic_zro2):
    s = monoclinic_zro2
    rot = Structure(s.lattice.matrix @ Rotation.from_euler("xyz", (0.3, -1.1, 2.0)).as_matrix().T, s.species,
                    s.frac_coords)
    inv = Structure(-s.lattice.matrix, s.species, s.frac_coords)
    perm = np.random.default_rng(2).permutation(len(s))
    permuted = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    q = np.random.default_rng(3).random((6, 3))
    ref, a, b, c = full.predict_bands([s, rot, inv, permuted], [q, q, q, q])
    for other in (a, b, c):
        np.testing.assert_allclose(other, ref, atol=TOL)


def test_supercell_spectrum_equals_commensurate_primitive(full, perovskite_srtio3):
    prim = perovskite_srtio3
    qs = np.array([[i, j, k] for i in (0, .5) for j in (0, .5) for k in (0, .5)])
    folded = np.sort(full.predict_bands([prim], [qs])[0].ravel())
    sup = np.sort(full.predict_gamma([prim * [2, 2, 2]])[0])
    np.testing.assert_allclose(sup, folded, atol=TOL)


def test_divergence_free_projection():
    rng = np.random.default_rng(0)
    # a random graph of 5 atoms with every bond and its reverse, plus a self-image bond pair
    pairs = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3), (2, 2)]
    src = torch.tensor([a for a, b in pairs] + [b for a, b in pairs])
    dst = torch.tensor([b for a, b in pairs] + [a for a, b in pairs])
    half = torch.as_tensor(rng.normal(size=(len(pairs), 3, 3)))
    blocks = torch.cat([half, half.transpose(1, 2)])  # Φ_rev = Φᵀ
    out = divergence_free_antisymmetric(blocks, src, dst, 5)
    sym = lambda b: 0.5 * (b + b.transpose(1, 2))  # noqa: E731
    anti = lambda b: 0.5 * (b - b.transpose(1, 2))  # noqa: E731
    torch.testing.assert_close(sym(out), sym(blocks))  # symmetric parts untouched
    n = len(pairs)
    torch.testing.assert_close(out[n:], out[:n].transpose(1, 2))  # still paired
    div = torch.zeros(5, 3, 3, dtype=out.dtype).index_add_(0, src, anti(out))
    assert float(div.abs().max()) < 1e-12
    # already divergence-free flows are left alone (a projection)
    torch.testing.assert_close(divergence_free_antisymmetric(out, src, dst, 5), out)


def test_divergence_free_projection_of_several_sets_at_once():
    """K sets of blocks on the same bonds (an ensemble's members) share one Laplacian: each comes
    out as it does alone, weighted or not."""
    rng = np.random.default_rng(1)
    pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 1)]
    src = torch.tensor([a for a, b in pairs] + [b for a, b in pairs])
    dst = torch.tensor([b for a, b in pairs] + [a for a, b in pairs])
    half = torch.as_tensor(rng.normal(size=(3, len(pairs), 3, 3)))
    blocks = torch.cat([half, half.transpose(-1, -2)], dim=1)  # (K=3, E, 3, 3), Φ_rev = Φᵀ
    weights = torch.as_tensor(rng.uniform(0.2, 1.0, size=len(pairs))).repeat(2)
    for w in (None, weights):
        together = divergence_free_antisymmetric(blocks, src, dst, 4, w)
        assert together.shape == blocks.shape
        for k in range(3):
            torch.testing.assert_close(together[k], divergence_free_antisymmetric(blocks[k], src, dst, 4, w),
                                       rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", ["kmvn", "mvn"])
def test_a_crystal_without_bonds_in_a_batch_of_whole_blocks(kind, wurtzite_zno):
    """A crystal valid as input but with no bond within the model's cutoff (Na 5 Å apart, r_bond
    4 Å) has zero force constants and three zero modes, alone and beside a bonded crystal, for one
    network and for an ensemble (whose members then agree exactly)."""
    from pymatgen.core import Lattice

    from tests.conftest import TINY_ARCH
    from vgnn_core import VGNNEnsemble

    sparse = Structure(Lattice.cubic(5.0), ["Na"], [[0, 0, 0]])
    assert divergence_free_antisymmetric(torch.zeros(3, 0, 3, 3), torch.zeros(0, dtype=torch.long),
                                         torch.zeros(0, dtype=torch.long), 1).shape == (3, 0, 3, 3)
    nets = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets.append(VGNN(kind=kind, r_bond=4.0, full_blocks=True, **TINY_ARCH).double())
    for model in (nets[0], VGNNEnsemble(nets)):
        predictor = Predictor(model)
        zno_fc, na_fc = predictor.predict_force_constants([wurtzite_zno, sparse])
        assert float(na_fc.blocks.abs().max()) == 0.0 and float(zno_fc.blocks.abs().max()) > 0.1
        np.testing.assert_array_equal(predictor.predict_gamma([sparse])[0], np.zeros(3))
    if kind == "kmvn":
        (result,) = Predictor(VGNNEnsemble(nets)).predict_phonons([sparse], thermal=False)
        assert np.abs(result.bands).max() == 0.0 and result.member_lowest_cm1 == 0.0


def test_continuous_when_a_bond_crosses_the_cutoff(full, monoclinic_zro2):
    """Scaling a crystal so that one bond length crosses r_bond: the bond enters with a vanishing
    block and weight, so no antisymmetric part jumps (an unweighted projection jumped by
    2 cm⁻¹ here)."""
    from vgnn_core import build_graph

    lengths = np.unique(np.round(np.linalg.norm(build_graph(monoclinic_zro2, 5.0).edge_vec, axis=1), 6))
    crossing = lengths[lengths < 5.0][-1]  # the longest bond inside r_bond = 5 Å

    def scaled(f):
        s = monoclinic_zro2.copy()
        s.scale_lattice(monoclinic_zro2.volume * f**3)
        return s

    q = [np.random.default_rng(0).random((4, 3))] * 2
    f = 5.0 / crossing
    inside, outside = full.predict_bands([scaled(f * (1 - 1e-7)), scaled(f * (1 + 1e-7))], q)
    np.testing.assert_allclose(inside, outside, atol=TOL)
