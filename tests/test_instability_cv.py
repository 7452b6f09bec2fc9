"""``benchmarks/instability_cv.py``: its F1 and rules are the shipped ones, its logistic fit finds a
known dependence, its folds are stratified and never read held-out labels, and it scores a decisive
feature perfectly and pure noise like flagging every material."""

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
                     "member_lowest_cm1": member, "spread_cm1": rng.lognormal(1, 0.5),
                     "uncertainty_cm1": rng.lognormal(2, 0.3), "n_atoms": int(rng.integers(2, 60)),
                     "has_hydrogen": bool(rng.random() < 0.1)})
    return rows


def test_f1_is_the_metrics_modules():
    rng = np.random.default_rng(1)
    truth, flag = rng.random(300) < 0.3, rng.random(300) < 0.5
    expected = instability_scores(np.where(flag, -10.0, 0.0), np.where(truth, -10.0, 0.0))["f1"]
    assert np.isclose(cv.f1(truth, flag), expected)


def test_the_rules_are_the_shipped_ones():
    """``likely_unstable`` is the bands or a member alone below −5 cm⁻¹, the bands' own minimum the bands alone."""
    rows = _rows(200, 5, decisive=False)
    bands = np.array([r["bands_min_predicted"] for r in rows])
    member = np.array([r["member_lowest_cm1"] for r in rows])
    truth = np.array([r["bands_min_reference"] for r in rows])
    scores = cv.score_split(rows, repeats=1)["F1"]
    assert ((member < -5) & (bands >= -5)).any()  # rows where only a member is below −5
    assert np.isclose(scores["likely_unstable"], instability_scores(np.minimum(bands, member), truth)["f1"])
    assert np.isclose(scores["bands' own minimum"], instability_scores(bands, truth)["f1"])


def test_logistic_fit_recovers_a_known_slope():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 2))
    y = rng.random(4000) < 1.0 / (1.0 + np.exp(-(0.5 + 2.0 * x[:, 0])))  # x[:, 1] is noise
    prob, _ = cv.fit_logistic(x, y, l2=1e-3)
    probe = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    logit = np.log(prob(probe) / (1 - prob(probe)))
    assert abs(logit[0] - 0.5) < 0.15 and abs(logit[1] - logit[0] - 2.0) < 0.25 and abs(logit[2] - logit[0]) < 0.3


def test_folds_are_stratified():
    y = np.random.default_rng(6).random(103) < 0.3
    fold = cv.stratified_folds(y, 5, np.random.default_rng(0))
    for label in (False, True):
        counts = np.bincount(fold[y == label], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_held_out_labels_are_never_read():
    """Flipping the labels of one fold leaves that fold's flags unchanged."""
    rows = _rows(200, 7, decisive=False)
    x = np.array([cv.features(r) for r in rows])
    y = np.array([r["bands_min_reference"] < -5 for r in rows])
    fold = cv.stratified_folds(y, 5, np.random.default_rng(0))
    flipped = np.where(fold == 0, ~y, y)
    before, after = cv.out_of_fold_flags(x, y, fold), cv.out_of_fold_flags(x, flipped, fold)
    assert np.array_equal(before[fold == 0], after[fold == 0])
    assert not np.array_equal(before[fold != 0], after[fold != 0])  # the other folds did read them


def test_cross_validation_scores_a_decisive_feature_perfectly_and_noise_like_flagging_everything():
    decisive = cv.score_split(_rows(300, 3, decisive=True), repeats=2)["F1"]
    assert decisive["likely_unstable"] == 1.0 and decisive["logistic, frequencies"] == 1.0
    noise = cv.score_split(_rows(300, 4, decisive=False), repeats=2)["F1"]
    # with nothing to learn the best a classifier can do is about "flag every material"
    assert abs(noise["logistic, + size"] - noise["flag every material"]) < 0.08
