"""Every shipped checkpoint loads (sha256-checked) and still scores what its model card says."""

import json

import numpy as np
import pytest

import vgnn_core
from vgnn_core.nn.uncertainty import UncertaintyModel
from vgnn_core.pretrained.registry import CHECKPOINT_DIR, shipped_checkpoints
from vgnn_core.training.evaluation import evaluate
from vgnn_core.training.petretto import load_samples

SHIPPED = sorted(shipped_checkpoints())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_matches_its_card(name, petretto_archive, si_primitive):
    predictor = vgnn_core.load_pretrained(name)
    card = json.loads((CHECKPOINT_DIR / f"{name}.card.json").read_text())
    assert card["sha256"] == shipped_checkpoints()[name]["sha256"]
    rows = {r["material_id"]: r for r in card["per_material"]["reference_test_subset"]}
    ids = sorted(rows)[:8]
    samples = load_samples(ids, r_max=predictor.model.config.graph_cutoff)
    result = evaluate(predictor.model, samples)
    key = "bands_mae" if card["kind"] == "kmvn" else "gamma_mae"
    for row in result["materials"]:
        assert row[key] == pytest.approx(rows[row["material_id"]][key], rel=1e-3, abs=1e-2)
        if "member_lowest_cm1" in row:  # an ensemble: its members' own lowest mode, behind likely_unstable
            assert row["member_lowest_cm1"] == pytest.approx(rows[row["material_id"]]["member_lowest_cm1"], abs=1e-2)
            # and the uncertainty the card's metrics were scored with is the one the checkpoint carries
            assert row["uncertainty_cm1"] == pytest.approx(rows[row["material_id"]]["uncertainty_cm1"], rel=1e-3)
    if "uncertainty_cm1" in rows[ids[0]]:  # and a prediction from the structure reports the same
        from pymatgen.core import Lattice, Structure

        g = samples[0].graph
        crystal = Structure(Lattice(g.lattice), g.numbers.tolist(), g.positions, coords_are_cartesian=True)
        (r,) = predictor.predict_phonons([crystal], bands=False, thermal=False)
        assert r.uncertainty_cm1 == pytest.approx(rows[samples[0].material_id]["uncertainty_cm1"], rel=1e-3)
    # the public API answers with physical output
    (gamma,) = predictor.predict_gamma([si_primitive])
    assert gamma.shape == (6,) and np.all(np.diff(gamma) >= 0)
    if card["kind"] != "vvn":
        assert np.sort(np.abs(gamma))[:3].max() < 1e-3
        assert 300 < gamma.max() < 700  # Si's optical mode is ~520 cm⁻¹


def test_shipped_kmvn_heat_capacity_against_dfpt(petretto_archive):
    """C_v(T) from the shipped k-MVN's q-mesh against the DFPT thermo block (per formula unit)
    on the first 10 test materials: the paper's third metric. The whole test split's error is the
    README's and the model card's (`vgnn evaluate --model kmvn --split test --heat-capacity`;
    tests/test_readme_numbers.py checks the README's figure against the card)."""
    from vgnn_core.training.evaluation import evaluate_heat_capacity
    from vgnn_core.training.petretto import iter_petretto, load_split

    records = list(iter_petretto(petretto_archive, ids=load_split()["test"][:10]))
    result = evaluate_heat_capacity(vgnn_core.load_pretrained("kmvn").model, records)
    assert result["summary"]["n_materials"] >= 8
    errors = [m["cv300_relative_error"] for m in result["materials"]]
    assert np.median(errors) < 0.02 and max(errors) < 0.06


@pytest.mark.parametrize("name", ["kmvn", "mvn"])
def test_shipped_models_say_how_far_to_trust_them(name, si_primitive):
    """The default models are ensembles with a calibrated uncertainty and a training domain."""
    from pymatgen.core import Lattice, Structure

    predictor = vgnn_core.load_pretrained(name)
    metadata = predictor.model.checkpoint_metadata
    assert UncertaintyModel.from_metadata(metadata) is not None and len(metadata["domain"]["elements"]) > 60
    (si,) = predictor.predict_phonons([si_primitive], thermal=False)
    assert si.in_domain is True and 0 < si.uncertainty_cm1 < 60
    # an element no training crystal holds (Pu) is flagged
    (pu,) = predictor.predict_phonons([Structure(Lattice.cubic(3.1), ["Pu"], [[0, 0, 0]])], bands=False, thermal=False)
    assert pu.in_domain is False and "Pu" in pu.domain_note


def test_a_build_loads_the_shipped_mvn_on_the_shipped_kmvns_networks(si_primitive):
    """The shipped MVN holds the k-MVN's weights: a build's worker builds the networks once, and
    the MVN still predicts, records and calibrates as the MVN loaded alone."""
    from flows.models import pick_models

    models = pick_models(["mvn", "kmvn"])
    mvn, kmvn = models.gamma.predictor.model, models.bands.predictor.model
    assert (mvn.kind, kmvn.kind) == ("mvn", "kmvn") and models.share_networks
    assert all(a.backbone is b.backbone and a.readout is b.readout for a, b in zip(mvn.members, kmvn.members))
    alone = vgnn_core.load_pretrained("mvn")
    assert models.gamma.sha256 == mvn.checkpoint_sha256 == shipped_checkpoints()["mvn"]["sha256"]
    assert mvn.checkpoint_metadata == alone.model.checkpoint_metadata != kmvn.checkpoint_metadata
    (mine,), (theirs,) = (p.predict_phonons([si_primitive], bands=False, thermal=False)
                          for p in (models.gamma.predictor, alone))
    np.testing.assert_array_equal(mine.gamma, theirs.gamma)
    assert mine.uncertainty_cm1 == theirs.uncertainty_cm1
