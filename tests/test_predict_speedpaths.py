"""The batched MVN Γ path against a straightforward per-crystal computation.

The reference runs every ensemble member on one crystal at a time, builds each member's D(Γ)
densely bond by bond in numpy, averages the members' matrices (the ensemble is linear in its
blocks) and diagonalises with numpy: any speed-up of the Predictor (batching, shared work,
grouped eigen-solves) must reproduce it to 1e-3 cm⁻¹.
"""

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH
from vgnn_core import VGNN, Predictor, VGNNEnsemble
from vgnn_core.crystal.graph import build_graph, collate
from vgnn_core.crystal.structures import InvalidStructureError
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_CM1
from vgnn_core.pretrained.registry import load_pretrained_model

TOLERANCE_CM1 = 1e-3


def reference_gamma(model, structure) -> np.ndarray:
    """Signed Γ frequencies (cm⁻¹) of one crystal, one member at a time, dense and in numpy."""
    members = list(model.members) if isinstance(model, VGNNEnsemble) else [model]
    graph = build_graph(structure, model.config.graph_cutoff)
    m = graph.n_atoms
    d = np.zeros((3 * m, 3 * m))
    with torch.inference_mode():
        for member in members:
            (fc,) = member.force_constants(collate([graph]))
            masses = fc.masses.double().numpy()
            for i, j, block in zip(fc.src.numpy(), fc.dst.numpy(), fc.blocks.double().numpy()):
                d[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] += block / np.sqrt(masses[i] * masses[j]) / len(members)
    lam = np.linalg.eigvalsh(0.5 * (d + d.T))
    return np.sign(lam) * np.sqrt(np.abs(lam)) * EV_ANGSTROM2_AMU_TO_CM1


def tiny_ensemble() -> VGNNEnsemble:
    members = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        members.append(VGNN(kind="mvn", full_blocks=True, r_bond=5.0, fc_scale=10.0, **TINY_ARCH))
    return VGNNEnsemble(members)


@pytest.fixture
def crystals(si_primitive, wurtzite_zno, rocksalt_nacl, perovskite_srtio3, monoclinic_zro2):
    return [si_primitive, wurtzite_zno, rocksalt_nacl, perovskite_srtio3, monoclinic_zro2]


@pytest.mark.parametrize("batch_size, max_atoms", [(64, 4096), (2, 4096), (64, 8)])
def test_batched_gamma_matches_the_per_crystal_reference(crystals, batch_size, max_atoms):
    model = tiny_ensemble()
    got = Predictor(model, batch_size=batch_size, max_atoms_per_batch=max_atoms).predict_gamma(crystals)
    for structure, w in zip(crystals, got):
        ref = reference_gamma(model, structure)
        assert w.shape == ref.shape == (3 * len(structure),)
        assert np.abs(w - ref).max() < TOLERANCE_CM1
        assert np.ptp(ref) > 10.0  # a real spectrum, not zeros on both sides
        assert np.sort(np.abs(w))[:3].max() < 1e-2  # the acoustic modes stay exact


def test_shipped_mvn_gamma_matches_the_per_crystal_reference(si_primitive, wurtzite_zno, rocksalt_nacl):
    model = load_pretrained_model("mvn")
    assert isinstance(model, VGNNEnsemble) and len(model.members) >= 3
    crystals = [si_primitive, wurtzite_zno, rocksalt_nacl]
    got = Predictor(model).predict_gamma(crystals)
    for structure, w in zip(crystals, got):
        ref = reference_gamma(model, structure)
        assert np.abs(w - ref).max() < TOLERANCE_CM1
    # silicon's optical mode at Γ: triply degenerate (cubic point group) and near DFPT's 509.7 cm⁻¹
    assert np.ptp(got[0][-3:]) < 1e-3 and abs(got[0][-1] - 509.7) < 60


def shared_pair(seed: int = 5) -> tuple[VGNNEnsemble, VGNNEnsemble]:
    """A k-MVN ensemble and the MVN of the same networks (what ``vgnn ensemble --kind mvn`` ships)."""
    kmvn = []
    for s in (seed, seed + 1):
        torch.manual_seed(s)
        kmvn.append(VGNN(kind="kmvn", full_blocks=True, r_bond=5.0, fc_scale=10.0, **TINY_ARCH))
    mvn = []
    for member in kmvn:
        twin = VGNN(member.config, kind="mvn")
        twin.load_state_dict(member.state_dict())
        mvn.append(twin)
    return VGNNEnsemble(kmvn), VGNNEnsemble(mvn)


def test_kmvn_and_its_mvn_from_one_forward_pass_equal_two_separate_predictions(crystals, monkeypatch):
    from vgnn_core.predict import networks_shared

    kmvn, mvn = shared_pair()
    kmvn.checkpoint_metadata = {"uncertainty_model": {"log_scale": 0.4, "spread": 0.6, "frequency": 0.2, "hydrogen": -0.1}}
    mvn.checkpoint_metadata = {"uncertainty_scale": 3.0}
    bands, gamma = Predictor(kmvn, batch_size=2), Predictor(mvn, batch_size=2)
    assert networks_shared(bands, gamma) and networks_shared(gamma, bands)
    options = dict(density=8.0, temperatures=np.array([100.0, 300.0]))
    separate = bands.predict_phonons(crystals, **options), gamma.predict_phonons(crystals, bands=False, thermal=False)
    passes = []
    original = VGNNEnsemble.member_bond_blocks
    monkeypatch.setattr(VGNNEnsemble, "member_bond_blocks", lambda self, *a, **k: passes.append(1) or original(self, *a, **k))
    together = bands.predict_phonons_and_gamma(gamma, crystals, **options)
    assert len(passes) == 3  # one pass per batch of two crystals, for both models
    for ours, ref in zip(together[0], separate[0]):  # the k-MVN: bands, DOS, thermo, trust, bit for bit
        assert np.array_equal(ours.bands, ref.bands) and np.array_equal(ours.gamma, ref.gamma)
        assert np.array_equal(ours.dos.total, ref.dos.total)
        assert np.array_equal(ours.thermal.heat_capacity, ref.thermal.heat_capacity)
        assert (ours.uncertainty_cm1, ours.member_lowest_cm1) == (ref.uncertainty_cm1, ref.member_lowest_cm1)
    for ours, ref in zip(together[1], separate[1]):  # the MVN: its own Γ (pair sums), spread and lowest mode
        assert ours.bands is None and np.array_equal(ours.gamma, ref.gamma)
        assert (ours.uncertainty_cm1, ours.member_lowest_cm1) == (ref.uncertainty_cm1, ref.member_lowest_cm1)
    # the MVN's Γ is its own (pair-summed, projected per pair), not the k-MVN's Γ re-labelled
    assert any(np.abs(a.gamma - b.gamma).max() > 1e-6 for a, b in zip(together[0], together[1]))


def test_models_that_differ_in_one_weight_or_in_batching_do_not_share(crystals):
    from vgnn_core.predict import networks_shared

    kmvn, mvn = shared_pair()
    assert not networks_shared(Predictor(kmvn), Predictor(mvn, batch_size=2))  # other batches: other round-off
    with torch.no_grad():
        next(mvn.members[1].parameters()).view(-1)[0] += 1e-3
    bands, gamma = Predictor(kmvn), Predictor(mvn)
    assert not networks_shared(bands, gamma)
    with pytest.raises(ValueError, match="does not run this k-MVN's networks"):
        bands.predict_phonons_and_gamma(gamma, crystals[:1])
    with pytest.raises(ValueError, match="needs a k-MVN"):
        gamma.predict_phonons_and_gamma(bands, crystals[:1])
    with pytest.raises(ValueError, match="Γ model is an MVN"):
        bands.predict_phonons_and_gamma(bands, crystals[:1])


def test_the_shipped_mvn_runs_the_shipped_kmvn_networks(si_primitive, wurtzite_zno, rocksalt_nacl):
    """The build computes both from one pass because the shipped pair shares its networks; with
    the LO–TO correction (the Born heads read the same backbone pass) and each model's own
    calibration, the results are those of two separate calls, bit for bit."""
    from vgnn_core.predict import networks_shared

    bands, gamma = Predictor(load_pretrained_model("kmvn")), Predictor(load_pretrained_model("mvn"))
    assert networks_shared(bands, gamma) and bands.uncertainty_model != gamma.uncertainty_model
    crystals = [si_primitive, wurtzite_zno, rocksalt_nacl]
    options = dict(density=8.0, temperatures=np.array([300.0]), nac=True)
    together = bands.predict_phonons_and_gamma(gamma, crystals, **options)
    separate = bands.predict_phonons(crystals, **options), gamma.predict_phonons(crystals, bands=False, thermal=False)
    assert together[0][1].has_nac and together[0][2].has_nac  # ZnO and NaCl get the LO–TO jump
    for ours, ref in zip(together[0], separate[0]):
        assert np.array_equal(ours.bands, ref.bands) and ours.has_nac == ref.has_nac
        assert (ours.uncertainty_cm1, ours.in_domain) == (ref.uncertainty_cm1, ref.in_domain)
    for ours, ref in zip(together[1], separate[1]):
        assert np.array_equal(ours.gamma, ref.gamma)
        assert (ours.uncertainty_cm1, ours.member_lowest_cm1, ours.in_domain) == (
            ref.uncertainty_cm1, ref.member_lowest_cm1, ref.in_domain)


def test_names_must_match_the_structures(si_primitive):
    """zip() would silently drop the results of structures without a name: refused instead."""
    predictor = Predictor(VGNN(kind="kmvn", **TINY_ARCH))
    results = predictor.predict_phonons([si_primitive, si_primitive.copy()], names=["a", "b"], thermal=False)
    assert [r.name for r in results] == ["a", "b"]
    with pytest.raises(ValueError, match="1 names for 2 structures"):
        predictor.predict_phonons([si_primitive, si_primitive.copy()], names=["only-one"], thermal=False)
    # a bad structure among several of one formula is refused under the name the caller gave it
    stacked = si_primitive.copy()
    stacked.append("Si", [1.0, 1.0, 1.0])  # on top of the first atom's image
    with pytest.raises(InvalidStructureError, match=r"^mp-BAD: atoms 0 and 2 overlap"):
        predictor.predict_phonons([si_primitive, stacked, si_primitive.copy()], names=["mp-1", "mp-BAD", "mp-3"],
                                  thermal=False)
    # names given as any iterable, as before
    results = predictor.predict_phonons([si_primitive, si_primitive.copy()], names=(n for n in "ab"), thermal=False)
    assert [r.name for r in results] == ["a", "b"]
