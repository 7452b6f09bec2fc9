"""The LO–TO correction through the Predictor: given Born charges reproduce phonopy's NAC exactly
on our own force constants; predicted charges (the shipped heads) are neutral with a physical
ε∞ and split LO from TO in a polar crystal; the metal gate; and nothing changes by default."""

import numpy as np
import pytest
import torch
from phonopy.physical_units import get_physical_units
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure

import vgnn_core
from vgnn_core import Predictor, from_phonopy
from vgnn_core.io.phonopy import load_force_sets, read_born_file
from vgnn_core.nn.config import VGNNConfig
from vgnn_core.phonons.nac import BornCharges, NonAnalyticCorrection
from vgnn_core.phonons.result import phonon_properties
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_THZ, THZ_TO_CM1
from vgnn_core.predict import MAX_EPSILON_INF, nac_skip_reason

RESCALE = get_physical_units().DefaultToTHz / EV_ANGSTROM2_AMU_TO_THZ
MESH = (4, 4, 4)


class FixedForceConstants(torch.nn.Module):
    """A k-MVN stand-in whose force constants are given ones, whatever the batch."""

    kind = "kmvn"
    supports_bands = True
    has_force_constants = True

    def __init__(self, fc):
        super().__init__()
        self.fc = fc
        self.config = VGNNConfig(kind="kmvn")
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def force_constants(self, batch):
        return [self.fc for _ in range(batch.n_graphs)]


@pytest.fixture(scope="module")
def nacl(phonopy_examples_dir):
    """NaCl from phonopy's example: the phonopy object with NAC, its short-range force constants
    (ours, from the force sets), its structure and its Born charges."""
    ph = load_force_sets(phonopy_examples_dir / "NaCl")
    ph.symmetrize_force_constants()
    structure = get_pmg_structure(ph.primitive)
    charges = read_born_file(phonopy_examples_dir / "NaCl" / "BORN", structure).neutral()
    factor = 14.4 if charges.factor is None else charges.factor
    ph.nac_params = {"born": charges.born, "dielectric": charges.epsilon, "factor": factor, "method": "gonze"}
    dm = ph.dynamical_matrix
    born = BornCharges(np.array(dm.dielectric_constant), np.array(dm.born), factor)
    supercell = np.rint(np.asarray(ph.supercell.cell) @ np.linalg.inv(ph.primitive.cell))
    short = NonAnalyticCorrection.from_born(structure, born).short_range(from_phonopy(ph), supercell)
    return ph, short, structure, born


def test_given_charges_through_the_predictor_equal_phonopy(nacl):
    ph, short, structure, born = nacl
    predictor = Predictor(FixedForceConstants(short))
    (res,) = predictor.predict_phonons([structure], nac=born, nac_mode="full", mesh=MESH)
    assert res.has_nac
    np.testing.assert_array_equal(res.born_charges, born.born)
    path = res.qpath
    ph.run_band_structure([path.qpoints[a : b + 1] for a, b in path.segments])
    ref = np.vstack(ph.band_structure.frequencies) * THZ_TO_CM1
    ours = np.vstack([res.bands[a : b + 1] for a, b in path.segments]) * RESCALE
    diff = np.abs(ours - ref)
    diff[(np.abs(ours) < 1e-3) & (np.abs(ref) < 1e-3)] = 0
    assert diff.max() < 1e-4
    # LO along x at Γ as phonopy's nac_q_direction, ~100 cm⁻¹ above the TO pair of NaCl
    ph.run_qpoints([[0, 0, 0]], nac_q_direction=[1.0, 0, 0])
    lo = res.gamma_along([1.0, 0, 0])
    np.testing.assert_allclose(lo * RESCALE, ph.qpoints.frequencies[0] * THZ_TO_CM1, atol=1e-4)
    assert lo.max() - res.gamma.max() > 50
    # and the whole result equals the library path on the same force constants
    direct = phonon_properties(short, structure, born=born, mesh=MESH)
    np.testing.assert_allclose(res.thermal.heat_capacity, direct.thermal.heat_capacity, rtol=1e-12)
    # a list with None entries: per structure, None means no correction
    plain, corrected = predictor.predict_phonons([structure, structure], nac=[None, born], nac_mode="full",
                                                 thermal=False)
    assert not plain.has_nac and corrected.has_nac
    np.testing.assert_allclose(corrected.bands, res.bands, atol=1e-9)


def test_gamma_mode_adds_the_lo_to_jump_alone_to_full_force_constants(nacl):
    """The default for network force constants: phonopy's full force constants with only the jump at
    Γ added give phonopy's LO at Γ (with NAC) exactly, its TO, and every q ≠ 0 untouched."""
    from vgnn_core.phonons.force_constants import from_phonopy

    ph, _, structure, born = nacl
    full = from_phonopy(ph)
    predictor = Predictor(FixedForceConstants(full))
    (res,) = predictor.predict_phonons([structure], nac=born, thermal=False)  # nac_mode="gamma"
    (plain,) = predictor.predict_phonons([structure], thermal=False)
    assert res.has_nac
    at_gamma = np.abs(res.qpath.qpoints).max(axis=1) < 1e-9
    np.testing.assert_array_equal(res.bands[~at_gamma], plain.bands[~at_gamma])
    np.testing.assert_allclose(res.gamma, plain.gamma, atol=1e-9)  # TO: D(Γ) of the full force constants
    ph.run_qpoints([[0, 0, 0]], nac_q_direction=[1.0, 0, 0])
    np.testing.assert_allclose(res.gamma_along([1.0, 0, 0]) * RESCALE, ph.qpoints.frequencies[0] * THZ_TO_CM1,
                               atol=1e-4)
    # the path's Γ points carry the split of their segment: some LO above every TO
    assert (res.bands[at_gamma].max(axis=1) > plain.gamma.max() + 50).all()


def test_default_is_off_and_unchanged(nacl):
    _, short, structure, born = nacl
    predictor = Predictor(FixedForceConstants(short))
    default, off, false = (predictor.predict_phonons([structure], mesh=MESH, **kw)[0]
                           for kw in ({}, {"nac": None}, {"nac": False}))
    for r in (default, off, false):
        assert not r.has_nac and r.born_charges is None and r.epsilon_inf is None
        np.testing.assert_array_equal(r.bands, default.bands)
    np.testing.assert_array_equal(default.bands, phonon_properties(short, structure, mesh=MESH).bands)
    with pytest.raises(ValueError, match="2 structures but 1 Born charges"):
        predictor.predict_phonons([structure, structure], nac=[born], thermal=False)
    with pytest.raises(ValueError, match="Born charges of shape"):
        predictor.predict_phonons([structure], nac=BornCharges(born.epsilon, born.born[:1]), thermal=False)


def test_predicted_charges_from_the_shipped_heads(rocksalt_nacl, wurtzite_zno):
    predictor = vgnn_core.load_pretrained("kmvn")
    nacl, zno = predictor.predict_phonons([rocksalt_nacl, wurtzite_zno], nac=True, thermal=False)
    for r in (nacl, zno):
        assert r.has_nac
        z, eps = r.born_charges, r.epsilon_inf
        np.testing.assert_allclose(z.sum(axis=0), 0, atol=1e-5)  # charge neutrality
        np.testing.assert_allclose(eps, eps.T, atol=1e-10)
        assert np.linalg.eigvalsh(eps).min() > 1.0
    # Na carries a positive charge near its DFPT value (~1.1 e), Zn in ZnO ~2.1 e
    na = [k for k, s in enumerate(rocksalt_nacl) if s.specie.symbol == "Na"][0]
    assert 0.7 < np.trace(nacl.born_charges[na]) / 3 < 1.5
    zn = [k for k, s in enumerate(wurtzite_zno) if s.specie.symbol == "Zn"][0]
    assert 1.5 < np.trace(zno.born_charges[zn]) / 3 < 2.7
    # the LO mode splits from the TO pair at Γ
    assert nacl.lo_to_splitting([1.0, 0, 0]).max() > 30
    # the same charges as asking for them alone (one batch or another: the same numbers)
    (alone,) = predictor.predict_born_charges([rocksalt_nacl])
    np.testing.assert_allclose(alone.born, nacl.born_charges, atol=1e-6)


def test_metal_and_one_atom_gate(rocksalt_nacl):
    cu3au = Structure(Lattice.cubic(3.75), ["Au", "Cu", "Cu", "Cu"],
                      [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cu = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    predictor = vgnn_core.load_pretrained("kmvn")
    metal, one, salt = predictor.predict_phonons([cu3au, cu, rocksalt_nacl], nac=True, thermal=False)
    assert not metal.has_nac and not one.has_nac and salt.has_nac
    charges = BornCharges(np.eye(3) * 5.0, np.zeros((4, 3, 3)))
    assert "metals" in nac_skip_reason(cu3au, charges)
    assert "one atom" in nac_skip_reason(cu, BornCharges(np.eye(3), np.zeros((1, 3, 3))))
    huge = BornCharges(np.eye(3) * (MAX_EPSILON_INF + 1), np.zeros((2, 3, 3)))
    assert "metallic screening" in nac_skip_reason(rocksalt_nacl, huge)
    overflowed = BornCharges(np.full((3, 3), np.inf), np.zeros((2, 3, 3)))  # exp(S) past float32's range
    assert "not finite" in nac_skip_reason(rocksalt_nacl, overflowed)
    assert "not finite" in nac_skip_reason(rocksalt_nacl, BornCharges(np.eye(3) * 2.4, np.full((2, 3, 3), np.nan)))
    assert nac_skip_reason(rocksalt_nacl, BornCharges(np.eye(3) * 2.4, np.zeros((2, 3, 3)))) is None


def test_heads_that_overflow_leave_nac_out_for_that_crystal_alone(rocksalt_nacl):
    """GaAs squeezed to 1.3 Å bonds passes validation, and the shipped heads' exp(S) overflows float32 there:
    that crystal gets its bands without NAC (ε∞ not finite), the batch's other crystal keeps its NAC."""
    a = 1.3
    squeezed = Structure(Lattice([[0, a, a], [a, 0, a], [a, a, 0]]), ["Ga", "As"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    predictor = vgnn_core.load_pretrained("kmvn")
    (charges,) = predictor.predict_born_charges([squeezed])
    assert not np.isfinite(charges.epsilon).any() and "not finite" in nac_skip_reason(squeezed, charges)
    with pytest.warns(RuntimeWarning, match="squeezed: no LO–TO correction: predicted Z\\* or ε∞ not finite"):
        salt, bad = predictor.predict_phonons([rocksalt_nacl, squeezed], names=["NaCl", "squeezed"], nac=True,
                                              thermal=False)
    assert salt.has_nac and not bad.has_nac
    assert np.isfinite(bad.bands).all() and np.isfinite(bad.gamma).all()
    (alone,) = predictor.predict_phonons([rocksalt_nacl], nac=True, thermal=False)
    np.testing.assert_allclose(salt.bands, alone.bands, atol=1e-3)


class _OverflowingHeads(torch.nn.Module):
    """Born 'heads' whose ε∞ overflows (inf) for every crystal with an O atom, as float32 heads
    far outside their training range can; NaCl's charges are ordinary."""

    def predict(self, batch, features=None):
        out = []
        for numbers in batch.numbers.split(batch.n_atoms.tolist()):
            n = len(numbers)
            born = np.zeros((n, 3, 3))
            born[0], born[1:] = np.eye(3) * 1.1, -np.eye(3) * 1.1 / (n - 1)  # neutral
            epsilon = np.full((3, 3), np.inf) if 8 in numbers.tolist() else np.eye(3) * 2.4
            out.append(BornCharges(epsilon, born))
        return out


def test_one_crystal_with_overflowing_charges_loses_only_its_nac(rocksalt_nacl):
    """A crystal whose predicted ε∞ is not finite gets no NAC; the others in the same call keep theirs."""
    mgo = Structure(Lattice.cubic(4.21), ["Mg", "O"] * 4, [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0],
                                                           [0.5, 0, 0.5], [0, 0, 0.5], [0, 0.5, 0.5], [0.5, 0.5, 0.5]])
    shipped = vgnn_core.load_pretrained("kmvn")
    predictor = Predictor(shipped.model, born_model=_OverflowingHeads())
    salt, oxide = predictor.predict_phonons([rocksalt_nacl, mgo], nac=True, thermal=False)
    assert salt.has_nac and not oxide.has_nac
    assert np.isfinite(salt.bands).all() and np.isfinite(oxide.bands).all()
    plain = predictor.predict_phonons([mgo], thermal=False)[0]
    np.testing.assert_allclose(oxide.bands, plain.bands, atol=1e-4)  # batch round-off: float32 network


def test_nac_needs_a_kmvn(rocksalt_nacl):
    with pytest.raises(ValueError, match="needs a k-MVN"):
        vgnn_core.load_pretrained("mvn").predict_phonons([rocksalt_nacl], nac=True)


def test_born_heads_share_the_backbone_pass(rocksalt_nacl, wurtzite_zno):
    """With nac=True every member's backbone runs once per batch (the Born heads read the same
    features), and the force constants and uncertainty are those of a prediction without NAC."""
    predictor = vgnn_core.load_pretrained("kmvn")
    members = list(predictor.model.members)
    calls: list[int] = []
    hooks = [m.backbone.register_forward_hook(lambda *_, k=k: calls.append(k)) for k, m in enumerate(members)]
    try:
        with_nac = predictor.predict_phonons([rocksalt_nacl, wurtzite_zno], nac=True, thermal=False)
    finally:
        for h in hooks:
            h.remove()
    assert sorted(calls) == list(range(len(members)))  # one batch: each backbone once
    plain = predictor.predict_phonons([rocksalt_nacl, wurtzite_zno], thermal=False)
    alone = predictor.predict_born_charges([rocksalt_nacl, wurtzite_zno])  # the heads' own backbone pass
    for a, b, z in zip(with_nac, plain, alone):
        assert a.has_nac and not b.has_nac
        np.testing.assert_array_equal(a.force_constants.blocks, b.force_constants.blocks)
        assert a.uncertainty_cm1 == b.uncertainty_cm1
        np.testing.assert_allclose(a.born_charges, z.born, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.epsilon_inf, z.epsilon, rtol=0, atol=1e-6)


def test_heads_on_reordered_members_read_the_right_features(rocksalt_nacl, wurtzite_zno):
    """Heads whose backbone lists the ensemble's members in another order (as ``select_members``
    builds it from digests) get each member's own features from the shared pass."""
    from vgnn_core import Predictor
    from vgnn_core.nn.born import (
        BornHeads,
        BornModel,
        backbone_irreps,
        member_digest,
        select_members,
    )

    model = vgnn_core.load_pretrained("kmvn").model
    digests = [member_digest(m) for m in reversed(list(model.members)[:2])]
    torch.manual_seed(0)
    heads = BornHeads(str(backbone_irreps(select_members(model, digests))))
    born = BornModel(model, heads, digests).eval()
    assert born.member_positions(model) == [1, 0]
    shared = Predictor(model, born_model=born)
    results = shared.predict_phonons([rocksalt_nacl, wurtzite_zno], nac=True, thermal=False, mesh=(2, 2, 2))
    alone = shared.predict_born_charges([rocksalt_nacl, wurtzite_zno])
    for r, z in zip(results, alone):
        np.testing.assert_allclose(r.born_charges, z.born, rtol=0, atol=1e-6)


def test_a_kmvn_without_fitting_heads_builds_without_nac(rocksalt_nacl, monkeypatch):
    """A k-MVN the shipped Born heads do not fit (another backbone): the predictor says so once,
    before building the heads (seconds of e3nn code generation in every build worker), and the build
    writes its rows without the LO–TO columns instead of failing them."""
    from flows.models import BuildModels, LoadedModel
    from flows.plan import BuildSettings
    from flows.shard import predict_shard
    from vgnn_core import VGNN, Predictor
    from vgnn_core.crystal.crystal import as_crystal
    from vgnn_core.training import born

    def no_heads(*args):
        raise AssertionError("heads built for a backbone they do not fit")

    monkeypatch.setattr(born, "_heads_from", no_heads)
    torch.manual_seed(1)
    predictor = Predictor(VGNN(kind="kmvn"))
    assert not predictor.predicts_born_charges and not predictor.predicts_born_charges  # remembered
    assert "lacks the backbone member(s)" in predictor._born_error
    with pytest.raises(ValueError, match="shipped k-MVN's backbone"):
        predictor.predict_phonons([rocksalt_nacl], nac=True, thermal=False)
    model = LoadedModel("custom", "0" * 64, predictor)
    with pytest.warns(UserWarning, match="no Born heads fit"):
        rows = predict_shard([as_crystal(rocksalt_nacl, name="nacl")], BuildModels(None, model), "run",
                             BuildSettings(mesh_density=8.0))
    assert not rows["failures"] and rows["bands"][0]["has_nac"] is False
