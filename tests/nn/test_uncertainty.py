"""How far to trust a prediction: ensemble spread, calibration, training domain, and the metrics."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from vgnn_core import VGNN, Predictor, VGNNEnsemble, build_graph, collate
from vgnn_core.crystal.crystal import as_crystal
from vgnn_core.crystal.domain import TrainingDomain, bonded_pairs
from vgnn_core.crystal.graph import crystal_graph
from vgnn_core.nn.uncertainty import ErrorPredictors, UncertaintyModel
from vgnn_core.pretrained.registry import load_pretrained_model
from vgnn_core.training.metrics import flag_f1, instability_scores, uncertainty_scores


def members(n=3, kind="kmvn", same=False):
    out = []
    for k in range(n):
        torch.manual_seed(0 if same else 10 + k)
        out.append(VGNN(kind=kind, r_bond=5.0, full_blocks=True).double())
    return out


def test_identical_members_have_zero_spread(rocksalt_nacl, perovskite_srtio3):
    ens = VGNNEnsemble(members(same=True))
    batch = collate([build_graph(s, 5.0) for s in (rocksalt_nacl, perovskite_srtio3)], dtype=torch.float64)
    _, agreement = ens.force_constants_and_agreement(batch)
    assert max(a.spread_cm1 for a in agreement) < 1e-9


def test_spread_is_the_members_disagreement_and_frame_free(monoclinic_zro2):
    ens = VGNNEnsemble(members())
    s = monoclinic_zro2
    r = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    rotated = Structure(s.lattice.matrix @ r.T, s.species, s.frac_coords)
    batch = collate([build_graph(x, 5.0) for x in (s, rotated)], dtype=torch.float64)
    fcs, agreement = ens.force_constants_and_agreement(batch)
    spread = [a.spread_cm1 for a in agreement]
    assert spread[0] > 1.0
    assert spread[1] == pytest.approx(spread[0], rel=1e-6)
    # the returned force constants are the ensemble's own (the mean of the members' blocks)
    ref = ens.force_constants(batch)
    torch.testing.assert_close(fcs[0].blocks, ref[0].blocks)
    # by hand: std over members of each member's own frequencies at Γ + zone boundary
    from vgnn_core.nn.ensemble import UNCERTAINTY_QPOINTS
    from vgnn_core.phonons.dynamical_matrix import band_frequencies

    q = torch.tensor(UNCERTAINTY_QPOINTS, dtype=torch.float64)
    each = torch.stack([band_frequencies(m.force_constants(batch)[:1], [q])[0] for m in ens.members])
    assert spread[0] == pytest.approx(float(each.std(dim=0).mean().detach()), rel=1e-9)
    assert agreement[0].lowest_cm1 == pytest.approx(float(each.min().detach()), rel=1e-9)
    assert agreement[1].lowest_cm1 == pytest.approx(agreement[0].lowest_cm1, rel=1e-6, abs=1e-6)
    assert agreement[0].highest_cm1 == pytest.approx(float(each.max().detach()), rel=1e-9)


def test_agreement_at_the_points_that_differ_under_the_point_group(rocksalt_nacl, perovskite_srtio3,
                                                                    monoclinic_zro2):
    """With each cell's exact rotations the members are solved only at the 2×2×2 grid's points
    that differ under them, weighted by how many each stands for: the same spread and extremes."""
    from vgnn_core.nn.ensemble import uncertainty_qpoints

    crystals = [as_crystal(s) for s in (rocksalt_nacl, perovskite_srtio3, monoclinic_zro2)]
    grids = [uncertainty_qpoints(c.mesh_rotations) for c in crystals]
    # fcc NaCl: Γ, the four L and the three X points; cubic SrTiO3: Γ, X (3), M (3), R; ZrO2 (2/m): 8
    assert [len(q) for q, _ in grids] == [3, 4, 8]
    assert sorted(grids[0][1].tolist()) == [1, 3, 4] and sorted(grids[1][1].tolist()) == [1, 1, 3, 3]
    assert all(w.sum() == 8 for _, w in grids)
    q, w = uncertainty_qpoints()
    assert len(q) == 8 and (w == 1).all()
    ens = VGNNEnsemble(members())
    batch = collate([build_graph(c.structure, 5.0) for c in crystals], dtype=torch.float64)
    _, everywhere = ens.force_constants_and_agreement(batch)
    _, reduced = ens.force_constants_and_agreement(batch, rotations=[c.mesh_rotations for c in crystals])
    for a, b in zip(everywhere, reduced):  # to the cells' own symmetry (positions to ~1e-6)
        assert b.spread_cm1 == pytest.approx(a.spread_cm1, rel=1e-6) and a.spread_cm1 > 0.1
        assert b.lowest_cm1 == pytest.approx(a.lowest_cm1, rel=1e-6, abs=1e-5)
        assert b.highest_cm1 == pytest.approx(a.highest_cm1, rel=1e-6)
    with pytest.raises(ValueError, match="rotations"):
        ens.force_constants_and_agreement(batch, rotations=[None])
    # an MVN measures its members at Γ alone: its predictions do not look for the cell's rotations
    from vgnn_core.crystal.crystal import _Search

    fresh = as_crystal(rocksalt_nacl)
    Predictor(VGNNEnsemble(members(kind="mvn"))).predict_phonons([fresh])
    assert fresh._rotations is _Search.NOT_YET


def test_predictor_reports_calibrated_uncertainty_and_domain(rocksalt_nacl, si_primitive):
    ens = VGNNEnsemble(members())
    domain = TrainingDomain.from_graphs([build_graph(rocksalt_nacl, 5.0)])
    ens.checkpoint_metadata = {"uncertainty_scale": 2.5, "domain": domain.to_dict()}
    p = Predictor(ens)
    nacl, si = p.predict_phonons([rocksalt_nacl, si_primitive], thermal=False)
    crystal = as_crystal(rocksalt_nacl)
    batch = collate([crystal_graph(crystal, 5.0)], dtype=torch.float64)  # as the predictor's, its grid too
    raw = ens.force_constants_and_agreement(batch, rotations=[crystal.mesh_rotations])[1][0].spread_cm1
    assert nacl.uncertainty_cm1 == pytest.approx(2.5 * raw, rel=1e-9)
    assert nacl.in_domain is True and nacl.domain_note is None
    assert si.in_domain is False and "Si" in si.domain_note
    summary = si.summary()
    assert summary["in_domain"] is False and summary["uncertainty_cm1"] > 0
    # a single network has no spread, and a model without a recorded domain says "unknown"
    single = Predictor(members(1)[0]).predict_phonons([rocksalt_nacl], bands=False, thermal=False)[0]
    assert single.uncertainty_cm1 is None and single.in_domain is None
    # MVN ensembles report a Γ spread
    mvn = Predictor(VGNNEnsemble(members(kind="mvn"))).predict_phonons([rocksalt_nacl])[0]
    assert mvn.uncertainty_cm1 > 0 and mvn.bands is None
    assert single.member_lowest_cm1 is None and mvn.member_lowest_cm1 is not None  # MVN members: at Γ
    assert mvn.likely_unstable == (min(mvn.gamma.min(), mvn.member_lowest_cm1) < -5.0)


def lithium_hydride() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.02), ["Li", "H"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def test_predictor_applies_the_fitted_uncertainty_model(rocksalt_nacl, perovskite_srtio3):
    ens = VGNNEnsemble(members())
    model = UncertaintyModel(log_scale=0.7, spread=0.55, frequency=0.25, hydrogen=-0.3, atoms=0.2, unstable=0.4)
    ens.checkpoint_metadata = {"uncertainty_model": model.to_dict()}
    conventional_nacl = rocksalt_nacl.get_primitive_structure().to_conventional()
    crystals = [rocksalt_nacl, perovskite_srtio3, lithium_hydride(), conventional_nacl]
    results = Predictor(ens).predict_phonons(crystals, bands=False, thermal=False)
    batch = collate([crystal_graph(as_crystal(s), 5.0) for s in crystals], dtype=torch.float64)  # as the predictor's
    rotations = [as_crystal(s).mesh_rotations for s in crystals]  # as the predictor measures the agreement:
    cells = [as_crystal(s).primitive_sites for s in crystals]  # the conventional NaCl on its primitive cell
    assert [c is None for c in cells] == [True, True, True, False]
    agreements = ens.force_constants_and_agreement(batch, rotations=rotations, primitive_sites=cells)[1]
    for r, a, h, n in zip(results, agreements, (0, 0, 1, 0), (2, 5, 2, 2)):  # n: atoms of the primitive cell
        unstable = a.lowest_cm1 < -5.0
        by_hand = (np.exp(0.7) * a.spread_cm1 ** 0.55 * a.highest_cm1 ** 0.25 * np.exp(-0.3 * h) * n ** 0.2
                   * np.exp(0.4 * unstable))
        assert r.uncertainty_cm1 == pytest.approx(by_hand, rel=1e-9)


def test_primitive_atoms_is_the_same_for_every_cell_of_a_crystal(si_primitive):
    from vgnn_core.crystal.symmetry import primitive_atoms

    alumina = Structure.from_spacegroup("R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"],
                                        [[0, 0, 0.3523], [0.3064, 0, 0.25]])  # corundum: 10 atoms per primitive cell
    bcc = Structure.from_spacegroup("Im-3m", Lattice.cubic(3.3), ["Nb"], [[0, 0, 0]])
    skewed = si_primitive.copy()
    skewed.lattice = Lattice(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]]) @ si_primitive.lattice.matrix)  # same lattice
    for cells, n in (((si_primitive, si_primitive.to_conventional(), si_primitive * (2, 1, 1), skewed * (1, 3, 1)), 2),
                     ((alumina, alumina.get_primitive_structure()), 10), ((bcc, bcc * 2), 1)):
        assert [primitive_atoms(c) for c in cells] == [n] * len(cells), cells[0].formula
    assert as_crystal(build_graph(si_primitive.to_conventional(), 4.0).structure()).primitive_atoms == 2  # as evaluate() counts


def test_primitive_atoms_and_the_uncertainty_do_not_move_with_noise_of_a_thousandth_of_an_angstrom(si_primitive):
    """Conventional Si with every atom moved 1e-3 Å (CIF coordinates rounded to four decimals move
    them as much): still 2 atoms per primitive cell, although the space group's tolerance now sees
    8, and the uncertainty moves with the spread alone."""
    from vgnn_core.crystal.symmetry import analyse_symmetry, primitive_atoms
    from vgnn_core.settings import PRIMITIVE_SYMPREC, SYMPREC

    conventional = si_primitive.to_conventional()
    step = np.random.default_rng(0).normal(size=(len(conventional), 3))
    noisy = Structure(conventional.lattice, conventional.species,
                      conventional.cart_coords + 1e-3 * step / np.linalg.norm(step, axis=1, keepdims=True),
                      coords_are_cartesian=True)
    assert analyse_symmetry(noisy).spacegroup_symbol == "P1"  # the space group's tolerance breaks
    assert primitive_atoms(noisy, SYMPREC) == 8 and primitive_atoms(noisy) == 2
    # a pseudo-translation beyond the tolerance is a different crystal: one atom off by 2× the tolerance
    distorted = conventional.copy()
    distorted.translate_sites([0], [2 * PRIMITIVE_SYMPREC, 0, 0], frac_coords=False)
    assert primitive_atoms(distorted) == 8

    ens = VGNNEnsemble(members())
    ens.checkpoint_metadata = {"uncertainty_model": UncertaintyModel(log_scale=0.3, spread=0.5, frequency=0.2,
                                                                     atoms=-0.5).to_dict()}
    clean, shaken = Predictor(ens).predict_phonons([conventional, noisy], bands=False, thermal=False)
    assert shaken.uncertainty_cm1 == pytest.approx(clean.uncertainty_cm1, rel=0.02)  # 4^-0.5 = 0.5 if the count moved


def test_every_cell_of_a_crystal_gets_the_primitive_cell_s_uncertainty(si_primitive, perovskite_srtio3):
    """A centred conventional cell, supercells in halves and in thirds, a rhombohedral crystal in
    hexagonal axes: the members' agreement is measured on the primitive cell's modes at its own eight
    points, projected from the cell's D(q) (no folded modes), so the spread, the lowest and highest
    mode and the uncertainty are the primitive cell's (the shipped networks: to 2e-6; on each cell's
    own grid Si's 2-, 4- and 8-atom cells gave 12.2, 11.2 and 10.6 cm⁻¹, and at the primitive cell's
    points folded into the cell, SrTiO₃ 2×2×2 4 % lower and corundum in hexagonal axes 8 % off). A
    conventional cell with 4 mÅ of noise: its primitive sites hold, and its uncertainty is within 0.1 %."""
    from vgnn_core.nn.ensemble import primitive_rotations

    conventional = si_primitive.to_conventional()
    m = as_crystal(conventional).primitive_sites.matrix
    assert abs(round(np.linalg.det(m))) == 4
    basis = np.linalg.inv(m) @ conventional.lattice.matrix  # M⁻¹ times the cell: a basis of the primitive lattice
    assert np.allclose(np.linalg.det(basis), np.linalg.det(si_primitive.lattice.matrix) * np.sign(np.linalg.det(m)))
    assert np.allclose(np.rint(si_primitive.lattice.matrix @ np.linalg.inv(basis)),
                       si_primitive.lattice.matrix @ np.linalg.inv(basis), atol=1e-6)  # the same lattice
    rotations = as_crystal(conventional).mesh_rotations  # Oh: in the primitive basis, integer again
    assert len(rotations) == 48 and primitive_rotations(rotations, m).dtype == np.int64
    assert primitive_rotations(rotations[:1], 2 * np.eye(3, dtype=int)) is not None  # the identity

    step = np.random.default_rng(0).normal(size=(len(conventional), 3))  # 4 mÅ: spglib finds no primitive cell
    noisy = Structure(conventional.lattice, conventional.species,
                      conventional.cart_coords + 4e-3 * step / np.linalg.norm(step, axis=1, keepdims=True),
                      coords_are_cartesian=True)
    assert np.allclose(as_crystal(noisy).primitive_sites.matrix, m)  # the count's lattice points, whose tolerance it keeps
    alumina = Structure.from_spacegroup("R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"],
                                        [[0, 0, 0.3523], [0.3064, 0, 0.25]])
    groups = [[si_primitive, conventional, si_primitive * (2, 1, 1), si_primitive * (2, 2, 2), si_primitive * (3, 1, 1),
               si_primitive * (1, 3, 2), noisy],
              [perovskite_srtio3, perovskite_srtio3 * (2, 2, 2), perovskite_srtio3 * (3, 1, 1)],
              [alumina.get_primitive_structure(), alumina]]
    predictor = Predictor(load_pretrained_model("kmvn"))
    for cells in groups:
        results = predictor.predict_phonons(cells, bands=False, thermal=False)
        first = results[0]
        for cell, r in zip(cells[1:], results[1:]):
            rel = 1e-3 if cell is noisy else 1e-5
            assert r.uncertainty_cm1 == pytest.approx(first.uncertainty_cm1, rel=rel), (cell.formula, len(cell))
            assert r.member_lowest_cm1 == pytest.approx(first.member_lowest_cm1, abs=2e-3), (cell.formula, len(cell))


def test_uncertainty_model_fit_recovers_a_power_law_and_is_calibrated():
    rng = np.random.default_rng(3)
    n = 400
    x = [ErrorPredictors(spread_cm1=s, highest_cm1=w, lowest_cm1=lo, has_hydrogen=bool(h), primitive_atoms=int(m))
         for s, w, lo, h, m in zip(rng.uniform(0.5, 40, n), rng.uniform(100, 3500, n), rng.uniform(-60, 20, n),
                                   rng.random(n) < 0.2, rng.integers(1, 60, n))]
    truth = UncertaintyModel(log_scale=0.3, spread=0.6, frequency=0.2, hydrogen=-0.3, atoms=0.15, unstable=0.35)
    error = np.array([truth(p) for p in x]) * np.exp(rng.normal(0, 0.05, n))
    fit = UncertaintyModel.fit(x, error)
    for name in ("spread", "frequency", "hydrogen", "atoms", "unstable"):
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), abs=0.03), name
    assert np.mean([fit(p) for p in x]) == pytest.approx(error.mean(), rel=1e-9)  # mean uncertainty = mean MAE
    # a term that never varies keeps exponent 0 (no hydrogen at all); non-finite rows are left out
    no_h = [replace(p, has_hydrogen=False) for p in x] + [replace(x[0], spread_cm1=np.nan, has_hydrogen=True)]
    no_h = UncertaintyModel.fit(no_h, np.r_[error, 5.0])
    assert no_h.hydrogen == 0.0 and no_h.spread == pytest.approx(0.6, abs=0.05)
    # unusable materials (negative spread, a non-finite frequency) and non-positive errors change nothing
    bad = [replace(x[0], spread_cm1=-1.0), replace(x[1], lowest_cm1=-np.inf), replace(x[2], highest_cm1=np.nan), x[3]]
    assert [p.usable for p in bad] == [False, False, False, True]
    assert UncertaintyModel.fit(x + bad, np.r_[error, 50.0, 50.0, 50.0, 0.0]) == fit
    # too few materials for a fit: the spread times a factor
    few = UncertaintyModel.fit([replace(x[0], spread_cm1=1.0), replace(x[1], spread_cm1=3.0)], [2.0, 6.0])
    assert few == UncertaintyModel.proportional(2.0)
    # the older checkpoints' calibration is the spread times a factor; older fits lack the last terms
    old = UncertaintyModel.from_metadata({"uncertainty_scale": 2.5})
    assert old(replace(x[0], spread_cm1=4.0)) == pytest.approx(10.0) and UncertaintyModel.from_metadata({}) is None
    assert UncertaintyModel.from_metadata({"uncertainty_model": fit.to_dict()}) == fit
    three_terms = UncertaintyModel.from_dict({"log_scale": 0.1, "spread": 0.5, "frequency": 0.2, "hydrogen": -0.1})
    assert three_terms.atoms == three_terms.unstable == 0.0
    for bad in ({**fit.to_dict(), "volume": 0.1}, {"spread": 0.5}):
        with pytest.raises(ValueError, match="needs log_scale"):
            UncertaintyModel.from_dict(bad)


class SpringMember(VGNN):
    """A k-MVN member whose every bond is a central spring of stiffness ``k`` (eV/Å²)."""

    def __init__(self, k: float):
        super().__init__(kind="kmvn", r_bond=4.0)
        self.k = k

    def bond_blocks(self, batch, features=None):
        u = batch.edge_vec.to(torch.float64)
        u = u / u.norm(dim=1, keepdim=True)
        return -self.k * u[:, :, None] * u[:, None, :]


def test_one_unstable_member_flags_a_crystal_the_mean_calls_stable(rocksalt_nacl):
    from vgnn_core import band_frequencies, central_spring_force_constants

    soft = VGNNEnsemble([SpringMember(2.0).double(), SpringMember(-0.5).double()])  # mean: k = 0.75, stable
    firm = VGNNEnsemble([SpringMember(2.0).double(), SpringMember(1.0).double()])
    r_soft, r_firm = (Predictor(e).predict_phonons([rocksalt_nacl], thermal=False)[0] for e in (soft, firm))
    # the ensemble is the spring model of the mean stiffness: stable, acoustic modes exact
    spring = central_spring_force_constants(rocksalt_nacl, 0.75, r_max=4.0)
    exact = band_frequencies([spring], [torch.as_tensor(r_soft.qpath.qpoints)])[0].numpy()
    np.testing.assert_allclose(r_soft.bands, exact, atol=1e-4)
    assert abs(r_soft.lowest_frequency_cm1) < 1e-3
    # the negative-spring member alone is unstable everywhere off Γ: the crystal is flagged
    assert r_soft.member_lowest_cm1 < -100 and r_soft.likely_unstable
    assert r_soft.summary()["likely_unstable"] is True
    assert r_firm.member_lowest_cm1 > -1e-3 and not r_firm.likely_unstable
    # a single network flags by its own spectrum only
    single = Predictor(SpringMember(-0.5).double()).predict_phonons([rocksalt_nacl], thermal=False)[0]
    assert single.member_lowest_cm1 is None and single.likely_unstable


def test_training_domain_rules(rocksalt_nacl, si_primitive):
    domain = TrainingDomain.from_graphs([build_graph(rocksalt_nacl, 5.0), build_graph(si_primitive, 5.0)])
    assert domain.elements == {11, 14, 17} and domain.max_atoms == 2
    assert domain.bond_pairs == {(11, 17), (14, 14)}
    assert domain.contains(build_graph(rocksalt_nacl * [1, 1, 2], 5.0)) is False  # 4 atoms > 2
    kcl = Structure(rocksalt_nacl.lattice, ["K", "Cl"], rocksalt_nacl.frac_coords)
    assert "K" in domain.why_outside(build_graph(kcl, 5.0))
    nasi = Structure(Lattice.cubic(2.9), ["Na", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # CsCl type
    assert bonded_pairs(build_graph(nasi, 5.0)) == {(11, 14)}
    assert domain.why_outside(build_graph(nasi, 5.0)) == "bonds never trained on: Na-Si"
    # the training cells were primitive: a supercell is sized by its primitive cell, a larger primitive cell is not in
    supercell = rocksalt_nacl * [1, 1, 2]
    assert domain.why_outside(build_graph(supercell, 5.0), lambda: as_crystal(supercell).primitive_atoms) is None
    distorted = supercell.copy()
    distorted.translate_sites([0], [0.0, 0.0, 0.1], frac_coords=False)  # 0.1 Å: 4 atoms in the primitive cell now
    assert (domain.why_outside(build_graph(distorted, 5.0), lambda: as_crystal(distorted).primitive_atoms)
            == "4 atoms, above the largest training cell (2)")
    predictor = Predictor(VGNNEnsemble(members()))
    predictor.model.checkpoint_metadata = {"domain": domain.to_dict()}
    crystals = [as_crystal(s) for s in (supercell, distorted)]
    graphs = [build_graph(s, 5.0) for s in (supercell, distorted)]
    assert predictor.domain_notes(graphs, crystals) == [None, "4 atoms, above the largest training cell (2)"]
    assert predictor.domain_notes(graphs)[0] == "4 atoms, above the largest training cell (2)"  # without the crystals
    assert TrainingDomain.from_dict(domain.to_dict()) == domain
    with pytest.raises(ValueError, match="unknown training-domain keys"):
        TrainingDomain.from_dict({**domain.to_dict(), "cutoff": 6})


def test_instability_scores():
    pred = [-30, -2, -10, 5, -50]
    true = [-20, -40, 1, 3, -6]
    s = instability_scores(pred, true)  # TP: 0, 4; FP: 2; FN: 1
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["n_unstable"] == 3 and s["accuracy"] == pytest.approx(0.6)


def test_uncertainty_scores():
    err = np.arange(1.0, 21.0)
    s = uncertainty_scores(err * 3, err, top=0.1)
    assert s["spearman"] == pytest.approx(1.0)
    assert s["top_mean_error"] == pytest.approx(19.5) and s["rest_mean_error"] == pytest.approx(9.5)
    assert uncertainty_scores(-err, err)["spearman"] == pytest.approx(-1.0)
    # its size: u = 3 × error covers every material; u = error / 1.5 covers none once, all twice
    assert s["mean_uncertainty"] == pytest.approx(31.5) and s["mean_error"] == pytest.approx(10.5)
    assert s["share_within_uncertainty"] == 1.0
    low = uncertainty_scores(err / 1.5, err)
    assert low["share_within_uncertainty"] == 0.0 and low["share_within_twice_uncertainty"] == 1.0
    half = uncertainty_scores(np.full(20, 10.0), err)  # errors 1…20 against 10: ten within, all twenty within 20
    assert half["share_within_uncertainty"] == 0.5 and half["share_within_twice_uncertainty"] == 1.0


def test_database_rows_carry_the_trust_columns():
    from storage.rows import gamma_row
    from storage.schema import to_table, validate_rows

    rows = [gamma_row("mp-1", "kmvn", "0" * 64, np.array([0, 0, 0, 100.0, 110, 120]), 3.2, True, likely_unstable=True),
            gamma_row("mp-2", "kmvn", "0" * 64, np.array([0, 0, 0, 90.0, 95, 99]))]
    validate_rows("gamma", rows)
    table = to_table("gamma", rows)
    assert table.column("uncertainty_cm1").to_pylist() == [pytest.approx(3.2), None]
    assert table.column("in_domain").to_pylist() == [True, None]
    assert table.column("likely_unstable").to_pylist() == [True, None]


def test_vvn_reports_the_training_domain_too(rocksalt_nacl, si_primitive):
    from vgnn_core import VVN

    model = VVN()
    model.checkpoint_metadata = {"domain": TrainingDomain.from_graphs([build_graph(rocksalt_nacl, 5.0)]).to_dict()}
    nacl, si = Predictor(model).predict_phonons([rocksalt_nacl, si_primitive])
    assert nacl.in_domain is True and si.in_domain is False and nacl.uncertainty_cm1 is None
    assert nacl.member_lowest_cm1 is None and nacl.likely_unstable == (nacl.gamma.min() < -5.0)


def test_ship_fits_the_uncertainty_on_val_and_the_card_states_it():
    from vgnn_core.pretrained.cards import render_markdown
    from vgnn_core.training.evaluation import score_uncertainty
    from vgnn_core.training.ship import calibrate_uncertainty

    rng = np.random.default_rng(5)

    def split(n):
        rows = [{"material_id": f"m{k}", "has_hydrogen": bool(rng.random() < 0.1),
                 "spread_cm1": float(rng.uniform(1, 30)), "member_highest_cm1": float(rng.uniform(150, 3000)),
                 "member_lowest_cm1": float(rng.uniform(-10, 0)), "primitive_atoms": int(rng.integers(1, 40))}
                for k in range(n)]
        for r in rows:  # errors that grow with the crystal's frequency scale at equal spread
            r["bands_mae"] = 0.8 * r["spread_cm1"] ** 0.5 * (r["member_highest_cm1"] / 100) ** 0.5 * rng.lognormal(0, 0.2)
        return {"summary": {"uncertainty": {"error": "bands_mae"}}, "materials": rows}

    val, test = split(300), split(300)
    fitted = calibrate_uncertainty([val])
    assert fitted.frequency == pytest.approx(0.5, abs=0.1) and fitted.spread == pytest.approx(0.5, abs=0.1)
    scored = score_uncertainty(val["materials"], "bands_mae", fitted)
    assert np.mean([r["uncertainty_cm1"] for r in val["materials"]]) == pytest.approx(
        np.mean([r["bands_mae"] for r in val["materials"]]))
    # on materials it never saw it ranks the error better than the spread alone
    by_model = score_uncertainty(test["materials"], "bands_mae", fitted)
    by_spread = score_uncertainty(test["materials"], "bands_mae", UncertaintyModel.proportional(1.0))
    assert by_model["spearman"] > by_spread["spearman"] + 0.1 and scored["model"] == fitted.to_dict()
    assert calibrate_uncertainty([{"summary": {}, "materials": []}]) is None  # a single network
    import json

    from vgnn_core.pretrained.registry import CHECKPOINT_DIR

    card = json.loads((CHECKPOINT_DIR / "kmvn.card.json").read_text())
    card.pop("uncertainty_scale", None)
    card["uncertainty_model"] = fitted.to_dict()
    assert f"Uncertainty = {fitted.describe()}" in render_markdown(card)
    # cards written before the fitted model state the factor they were calibrated with
    card.pop("uncertainty_model")
    card["uncertainty_scale"] = 2.13
    assert "Uncertainty = the members' spread × 2.13 (calibrated on val" in render_markdown(card)


def test_flag_f1_counts_and_the_empty_cases():
    flag = np.array([True, True, True, False, False])
    truth = np.array([True, True, False, True, False])  # TP 2, FP 1, FN 1
    assert flag_f1(flag, truth) == pytest.approx(2 * 2 / (3 + 3))
    assert flag_f1(truth, flag) == pytest.approx(2 / 3)  # symmetric
    assert flag_f1(np.ones(4, bool), np.zeros(4, bool)) == 0.0  # flags, but nothing to find
    assert np.isnan(flag_f1(np.zeros(4, bool), np.zeros(4, bool)))  # nothing flagged, nothing true
    assert np.isnan(flag_f1([], []))
    assert np.isnan(instability_scores([1.0, 2.0], [3.0, 4.0])["f1"])  # all stable on both sides
