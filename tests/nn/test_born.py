"""Born-charge and dielectric heads: the physics they guarantee for any weights (charge
neutrality, ε∞ symmetric positive definite and ≥ 1, rotation equivariance Z*(Rx) = R Z* Rᵀ,
ε(Rx) = R ε Rᵀ, atom permutations) on the shipped k-MVN backbone and on random features."""

import numpy as np
import pytest
import torch
from e3nn import o3
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from vgnn_core.crystal.graph import build_graph, collate
from vgnn_core.nn.born import (
    BornHeads,
    BornHeadsEnsemble,
    BornModel,
    backbone_irreps,
    symmetric_expm,
    symmetric_logm,
)
from vgnn_core.pretrained.registry import load_pretrained_model


@pytest.fixture(scope="module")
def backbone():
    return load_pretrained_model("kmvn")


#: head variants every guarantee is checked on: no layer of their own, one, and one with the
#: crystal's context in the mixing and the net charge shared out by learned weights
VARIANTS = {"plain": {}, "layer": {"interactions": 1},
            "context-weighted": {"interactions": 1, "crystal_context": True, "neutrality": "weighted"}}


def random_heads(irreps, seed, variant="plain"):
    torch.manual_seed(seed)
    heads = BornHeads(irreps, **VARIANTS[variant]).double()
    with torch.no_grad():  # well away from the initial values, so nothing vanishes by accident
        for p in heads.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return heads


def triclinic(seed=0) -> Structure:
    """A low-symmetry ternary cell: no site symmetry that could hide a wrong transformation."""
    rng = np.random.default_rng(seed)
    lattice = Lattice.from_parameters(4.1, 4.7, 5.3, 81.0, 97.0, 104.0)
    frac = np.array([[0.0, 0.0, 0.0], [0.45, 0.52, 0.48], [0.22, 0.71, 0.13], [0.74, 0.18, 0.66]])
    frac = frac + 0.03 * rng.standard_normal(frac.shape)
    return Structure(lattice, ["Ti", "O", "O", "Ba"], frac)


def batch_of(structures):
    return collate([build_graph(s, r_max=4.0) for s in structures], dtype=torch.float32)


def predict(model, structures):
    return model.predict(batch_of(structures))


def random_batch(irreps, n_atoms):
    """Random float64 atom features of crystals with ``n_atoms`` and their bonds (every pair of
    atoms within a crystal, as a crystal graph has them, at random vectors)."""
    x = torch.randn(int(n_atoms.sum()), irreps.dim, dtype=torch.float64)
    owner = torch.repeat_interleave(torch.arange(len(n_atoms)), n_atoms)
    pairs = [(i, j) for i in range(len(owner)) for j in range(len(owner)) if owner[i] == owner[j]]
    src, dst = (torch.tensor(c) for c in zip(*pairs))
    return x, (src, dst, 2.0 * torch.randn(len(src), 3, dtype=torch.float64))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_neutral_and_positive_definite_for_random_weights(variant):
    irreps = o3.Irreps("16x0e + 8x1o + 4x2e")
    n_atoms = torch.tensor([1, 3, 5, 2])
    for seed in range(4):
        heads = random_heads(irreps, seed, variant)
        x = torch.randn(int(n_atoms.sum()), irreps.dim, dtype=torch.float64)
        # bonds within each crystal, as a crystal graph has them
        owner = torch.repeat_interleave(torch.arange(len(n_atoms)), n_atoms)
        pairs = [(i, j) for i in range(len(owner)) for j in range(len(owner)) if owner[i] == owner[j]]
        src, dst = (torch.tensor(c) for c in zip(*pairs))
        vec = torch.randn(len(src), 3, dtype=torch.float64) * 2.0
        out = heads(x, n_atoms, (src, dst, vec))
        born = out.born.detach()
        assert born.abs().max() > 0.05  # not trivially zero…
        for part in torch.split(born, n_atoms.tolist()):  # …but Σ_i Z*_i = 0 in every crystal
            assert part.sum(0).abs().max() < 1e-12
        assert born[0].abs().max() < 1e-12  # a one-atom cell has no Born charge
        eps = out.epsilon.detach()
        torch.testing.assert_close(eps, eps.transpose(-1, -2), atol=1e-12, rtol=1e-12)
        # ε∞ ≥ 1: positive definite (to the round-off of the largest eigenvalue: random weights
        # can make exp(S) span fourteen decades)
        for e in eps:
            assert torch.linalg.eigvalsh(e).min() > 1.0 - 1e-14 * e.abs().max()
        torch.testing.assert_close(eps, torch.eye(3, dtype=eps.dtype) + symmetric_expm(out.log_epsilon.detach()))


def test_averaged_heads_stay_neutral_and_positive_definite(tmp_path):
    from vgnn_core.training.born import load_heads, save_heads

    irreps = o3.Irreps("16x0e + 8x1o + 4x2e")
    n_atoms = torch.tensor([3, 4])
    # an average may mix variants: the third set shares its net charge out by learned weights
    members = [random_heads(irreps, seed, variant) for seed, variant in ((1, "plain"), (2, "layer"), (3, "context-weighted"))]
    ensemble = BornHeadsEnsemble(members)
    x, bonds = random_batch(irreps, n_atoms)
    out = ensemble(x, n_atoms, bonds)
    each = [m(x, n_atoms, bonds) for m in members]
    torch.testing.assert_close(out.born, sum(o.born for o in each) / 3)
    torch.testing.assert_close(out.epsilon, sum(o.epsilon for o in each) / 3)
    for part in torch.split(out.born.detach(), n_atoms.tolist()):
        assert part.sum(0).abs().max() < 1e-12
    assert torch.linalg.eigvalsh(out.epsilon.detach()).min() > 1.0
    torch.testing.assert_close(out.epsilon, torch.eye(3, dtype=x.dtype) + symmetric_expm(out.log_epsilon))
    # saved and loaded as one file, the same predictions
    save_heads(ensemble, tmp_path / "avg.pt", {"note": "three seeds"})
    loaded, meta = load_heads(tmp_path / "avg.pt")
    assert isinstance(loaded, BornHeadsEnsemble) and len(loaded.members) == 3 and meta == {"note": "three seeds"}
    again = loaded.double()(x, n_atoms, bonds)
    torch.testing.assert_close(again.born, out.born.detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="same features"):
        BornHeadsEnsemble([members[0], BornHeads("4x0e + 2x1o")])
    # an average of an average weighs every set of heads once
    nested = BornHeadsEnsemble([ensemble, members[0]])
    assert len(nested.members) == 4
    torch.testing.assert_close(nested(x, n_atoms, bonds).born, (3 * out.born + each[0].born) / 4)


def test_averaged_heads_of_one_kind_load_as_copies_with_their_own_weights(tmp_path):
    """Heads of equal hyper-parameters are built once when loaded and copied (their code shared):
    each copy still holds its own weights, and the average predicts what was saved."""
    from vgnn_core.training.born import load_heads, save_heads

    irreps = o3.Irreps("16x0e + 8x1o + 4x2e")
    members = [random_heads(irreps, seed, "layer") for seed in (5, 6, 7)]
    n_atoms = torch.tensor([3, 4])
    x, bonds = random_batch(irreps, n_atoms)
    save_heads(BornHeadsEnsemble(members), tmp_path / "avg.pt")
    loaded, _ = load_heads(tmp_path / "avg.pt")
    storages = [{p.data_ptr() for p in m.parameters()} for m in loaded.members]
    assert all(not storages[i] & storages[j] for i in range(3) for j in range(i))
    loaded = loaded.double()
    for mine, theirs in zip(loaded.members, members):
        torch.testing.assert_close(mine(x, n_atoms, bonds).born, theirs(x, n_atoms, bonds).born.detach(),
                                   atol=1e-5, rtol=1e-5)
    assert not torch.allclose(loaded.members[0](x, n_atoms, bonds).born, loaded.members[1](x, n_atoms, bonds).born)


def test_bond_term_needs_bonds():
    heads = BornHeads("4x0e + 2x1o")
    with pytest.raises(ValueError, match="bond term"):
        heads(torch.randn(2, 10), torch.tensor([2]))
    with pytest.raises(ValueError, match="pass messages over bonds"):
        BornHeads("4x0e + 2x1o", bond_hidden=0, interactions=1)(torch.randn(2, 10), torch.tensor([2]))
    # the layers' gate puts scalars first: compressed features in another order are refused
    with pytest.raises(ValueError, match="scalars first"):
        BornHeads("4x0e + 2x1o", mid_irreps="8x1o + 8x0e + 4x2e", interactions=1)
    no_bonds = BornHeads("4x0e + 2x1o", bond_hidden=0)
    assert no_bonds(torch.randn(2, 10), torch.tensor([2])).born.shape == (2, 3, 3)


def test_head_options_are_strict_and_recorded():
    """Options away from their defaults are written to ``hyper`` (what a checkpoint rebuilds the
    heads from); at their defaults they are left out, so heads saved before the options existed
    read the same; an unknown way of taking out the net charge is refused."""
    assert "neutrality" not in BornHeads("4x0e + 2x1o").hyper
    assert "crystal_context" not in BornHeads("4x0e + 2x1o").hyper
    hyper = BornHeads("4x0e + 2x1o", crystal_context=True, neutrality="weighted").hyper
    assert hyper["crystal_context"] is True and hyper["neutrality"] == "weighted"
    with pytest.raises(ValueError, match="neutrality must be"):
        BornHeads("4x0e + 2x1o", neutrality="proportional")


def test_weighted_neutrality_moves_each_atom_along_the_net_charge():
    """With ``neutrality="weighted"`` Z*_i = z_i − s_i Σ_j z_j (shares s_i > 0, Σ s_i = 1); the same
    heads with ``"uniform"`` give z_i − Σ_j z_j / n. So the two differ, atom by atom, by
    (1/n − s_i) times one and the same tensor: every difference is parallel to the net charge."""
    heads = random_heads(o3.Irreps("4x0e + 2x1o"), 5, "context-weighted")
    uniform = BornHeads(o3.Irreps("4x0e + 2x1o"), **{**VARIANTS["context-weighted"], "neutrality": "uniform"}).double()
    uniform.load_state_dict({k: v for k, v in heads.state_dict().items() if not k.startswith("share_mlp")})
    n_atoms = torch.tensor([4])
    x = torch.randn(4, 10, dtype=torch.float64)
    src, dst = (torch.tensor(c) for c in zip(*[(i, j) for i in range(4) for j in range(4) if i != j]))
    bonds = (src, dst, 2.0 * torch.randn(len(src), 3, dtype=torch.float64))
    diff = (uniform(x, n_atoms, bonds).born - heads(x, n_atoms, bonds).born).detach().reshape(4, 9)
    assert diff.norm(dim=1).max() > 1e-3  # the learned shares are not all 1/n
    direction = diff[diff.norm(dim=1).argmax()] / diff.norm(dim=1).max()
    np.testing.assert_allclose((diff @ direction).abs(), diff.norm(dim=1), rtol=1e-9)


def per_crystal(model, structures):
    """(Z*, S) per crystal from the heads' raw output, S = log(ε∞ − 1). Random heads on a trained
    backbone can give an S whose exponential overflows float32; S carries the same symmetry
    (S(Rx) = R S Rᵀ), and ε∞ = 1 + exp(S) is checked on its own above."""
    batch = batch_of(structures)
    with torch.no_grad():
        out = model(batch)
    born = np.split(out.born.double().numpy(), np.cumsum(batch.n_atoms.numpy())[:-1])
    return [(z, s) for z, s in zip(born, out.log_epsilon.double().numpy())]


S_TOL = 1e-5  # float32 round-off relative to S's largest entry


def anisotropy(s: np.ndarray) -> float:
    """The largest entry of S's traceless part: the isotropic part is invariant under any rotation
    or permutation, so only this part makes a tolerance on S meaningful (plus float32 round-off
    of the whole, ``S_TOL``)."""
    return float(np.abs(s - np.trace(s) / 3 * np.eye(3)).max())


def s_atol(s: np.ndarray, rel: float) -> float:
    """Tolerance on S: ``rel`` of its anisotropy plus float32 round-off of its largest entry."""
    return rel * anisotropy(s) + S_TOL * np.abs(s).max()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rotation_equivariance_through_the_backbone(backbone, variant):
    model = BornModel(backbone, random_heads(backbone_irreps(backbone), 1, variant).float())
    s = triclinic()
    rot = Rotation.random(random_state=4).as_matrix()
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    (za, sa), (zb, sb) = per_crystal(model, [s, rotated])
    scale, s_scale = np.abs(za).max(), anisotropy(sa)
    assert scale > 0.05 and s_scale > 0.05
    np.testing.assert_allclose(zb, rot @ za @ rot.T, atol=2e-4 * scale)
    np.testing.assert_allclose(sb, rot @ sa @ rot.T, atol=s_atol(sa, 2e-4))
    # Z* is a general tensor: its antisymmetric (1e) part is predicted too
    assert np.abs(za - za.transpose(0, 2, 1)).max() > 1e-3
    # inversion (parity): Z* and ε∞ are even (polar ⊗ polar); the inverted crystal has the same
    inverted = Structure(s.lattice, s.species, -s.frac_coords)
    zc, sc = per_crystal(model, [inverted])[0]
    np.testing.assert_allclose(zc, za, atol=2e-4 * scale)
    np.testing.assert_allclose(sc, sa, atol=s_atol(sa, 2e-4))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_permuting_atoms_permutes_born_charges(backbone, variant):
    model = BornModel(backbone, random_heads(backbone_irreps(backbone), 2, variant).float())
    s = triclinic(1)
    perm = [2, 0, 3, 1]
    shuffled = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    (za, sa), (zb, sb) = per_crystal(model, [s, shuffled])
    scale, s_scale = np.abs(za).max(), anisotropy(sa)
    assert scale > 0.05 and s_scale > 0.05
    np.testing.assert_allclose(zb, za[perm], atol=1e-4 * scale)
    np.testing.assert_allclose(sb, sa, atol=s_atol(sa, 1e-4))
    # a supercell: the same charges on every image, the same ε∞
    big = s.copy()
    big.make_supercell([2, 1, 1])
    zc, sc = per_crystal(model, [big])[0]
    images = [min(range(len(s)), key=lambda i: np.linalg.norm(
        ((big.cart_coords[k] - s.cart_coords[i]) @ np.linalg.inv(s.lattice.matrix) + 0.5) % 1 - 0.5)) for k in range(len(big))]
    np.testing.assert_allclose(zc, za[images], atol=1e-4 * scale)
    np.testing.assert_allclose(sc, sa, atol=s_atol(sa, 1e-4))


def test_a_non_finite_matrix_gives_nan_not_a_failed_batch():
    """exp(S) past float32's range in one crystal of a batch: NaN for it, the others exact."""
    s = torch.tensor([[[0.3, 0.1, 0.0], [0.1, -0.2, 0.0], [0.0, 0.0, 0.5]], [[312.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]],
                     dtype=torch.float32)
    excess = symmetric_expm(s)
    assert not torch.isfinite(excess[1]).all()
    torch.testing.assert_close(symmetric_expm(s[:1]), excess[:1])
    twice = symmetric_expm(excess)  # what the ensemble's average goes through next
    assert torch.isnan(twice[1]).all() and torch.isfinite(twice[0]).all()
    torch.testing.assert_close(twice[0], symmetric_expm(excess[0]))


def test_symmetric_log_and_exp_are_inverse():
    a = np.array([[3.0, 0.4, 0.1], [0.4, 2.0, -0.2], [0.1, -0.2, 5.0]])
    s = symmetric_logm(a)
    np.testing.assert_allclose(symmetric_expm(torch.as_tensor(s)).numpy(), a, atol=1e-12)
    with pytest.raises(ValueError, match="positive definite"):
        symmetric_logm(-np.eye(3))


def test_heads_must_fit_the_backbone(backbone):
    with pytest.raises(ValueError, match="heads expect features"):
        BornModel(backbone, BornHeads("4x0e"))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_elemental_crystals_have_no_born_charge(backbone, variant):
    """Z* = 0 wherever symmetry and neutrality force it, whatever the weights: one-atom cells
    (fcc Al) and cells of equivalent atoms related by inversion (diamond Si, hcp Mg)."""
    model = BornModel(backbone, random_heads(backbone_irreps(backbone), 3, variant).float())
    polar = predict(model, [triclinic()])[0]
    scale = np.abs(polar.born).max()
    si = Structure(Lattice.cubic(5.43), ["Si"] * 8, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0],
                                                    [0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75],
                                                    [0.75, 0.75, 0.25]])
    mg = Structure(Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    al = Structure(Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    for charges in predict(model, [si, mg, al]):
        assert np.abs(charges.born).max() < 1e-4 * scale
        # ≥: random weights can drive exp(S) below float32's range (> 1 is checked in float64 above)
        assert np.linalg.eigvalsh(charges.epsilon).min() >= 1.0 - 1e-12
