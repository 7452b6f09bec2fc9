"""``benchmarks/instability_cv.py``: its F1 is the metrics module's, its logistic fit finds a
known dependence, and its cross-validation scores a decisive feature perfectly and noise near chance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from vgnn_core.training.metrics import instability_scores

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("instability_cv", ROOT / "benchmarks" / "instability_cv.py")
cv = importlib.util.module_from_spec(_spec)
sys.modules["instability_cv"] = cv
_spec.loader.exec_module(cv)


def _rows(n: int, seed: int, decisive: bool) -> list[dict]:
    """Evaluated rows; with ``decisive`` the predicted lowest ω tells stable from unstable exactly."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        unstable = bool(rng.random() < 0.4)
        member = (-30.0 if unstable else 2.0) + rng.normal(0, 1) if decisive else rng.normal(0, 20)
        bands = member + 1.0 if decisive else rng.normal(0, 20)
        rows.append({"bands_min_reference": -20.0 if unstable else 0.0, "bands_min_predicted": bands,
                     "member_lowest_cm1": member, "spread_cm1": rng.lognormal(1, 0.5), "uncertainty_cm1": rng.lognormal(2, 0.3),
                     "n_atoms": int(rng.integers(2, 60)), "primitive_atoms": int(rng.integers(2, 30)),
                     "has_hydrogen": bool(rng.random() < 0.1)})
    return rows


def test_f1_is_the_metrics_modules():
    rng = np.random.default_rng(1)
    truth, flag = rng.random(300) < 0.3, rng.random(300) < 0.5
    expected = instability_scores(np.where(flag, -10.0, 0.0), np.where(truth, -10.0, 0.0))["f1"]
    assert np.isclose(cv.f1(truth, flag), expected)


def test_logistic_fit_recovers_a_known_slope():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 2))
    y = rng.random(4000) < 1.0 / (1.0 + np.exp(-(0.5 + 2.0 * x[:, 0])))  # x[:, 1] is noise
    prob = cv.fit_logistic(x, y, l2=1e-3)
    probe = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    logit = np.log(prob(probe) / (1 - prob(probe)))
    assert abs(logit[0] - 0.5) < 0.15 and abs(logit[1] - logit[0] - 2.0) < 0.25 and abs(logit[2] - logit[0]) < 0.3


def test_cross_validation_scores_a_decisive_feature_perfectly_and_noise_at_chance():
    decisive = cv.score_split(_rows(300, 3, decisive=True), repeats=2)
    assert decisive["F1 likely_unstable"] == 1.0 and decisive["F1 logistic, frequencies"] == 1.0
    noise = cv.score_split(_rows(300, 4, decisive=False), repeats=2)
    # with nothing to learn the best a classifier can do is about "flag every material"
    assert noise["F1 logistic, + size"] <= noise["F1 flag every material"] + 0.05
