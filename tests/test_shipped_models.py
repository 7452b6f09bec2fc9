"""Every shipped checkpoint loads (sha256-checked) and still scores what its model card says."""

import json

import numpy as np
import pytest

import vgnn_core
from vgnn_core.checkpoints import shipped_checkpoints
from vgnn_core.dataset import load_samples
from vgnn_core.evaluation import evaluate
from vgnn_core.model_card import CHECKPOINT_DIR

SHIPPED = sorted(shipped_checkpoints())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_matches_its_card(name, petretto_archive, si_primitive):
    predictor = vgnn_core.load_pretrained(name)
    card = json.loads((CHECKPOINT_DIR / f"{name}.card.json").read_text())
    assert card["sha256"] == shipped_checkpoints()[name]["sha256"]
    rows = {r["material_id"]: r for r in card["per_material"]["reference_test_subset"]}
    ids = sorted(rows)[:8]
    result = evaluate(predictor.model, load_samples(ids, r_max=predictor.model.config.graph_cutoff))
    key = "bands_mae" if card["kind"] == "kmvn" else "gamma_mae"
    for row in result["materials"]:
        assert row[key] == pytest.approx(rows[row["material_id"]][key], rel=1e-3, abs=1e-2)
    # the public API answers with physical output
    (gamma,) = predictor.predict_gamma([si_primitive])
    assert gamma.shape == (6,) and np.all(np.diff(gamma) >= 0)
    if card["kind"] != "vvn":
        assert np.sort(np.abs(gamma))[:3].max() < 1e-3
        assert 300 < gamma.max() < 700  # Si's optical mode is ~520 cm⁻¹
