"""``benchmarks/uncertainty_cv.py``: its candidate-term fits must reproduce the shipped terms' own
out-of-fold uncertainty, its per-element prior must find an element that doubles the error, and it
reads the rows of ``vgnn evaluate --out`` files only when they are the `val` paths of an ensemble."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vgnn_core.training.metrics import uncertainty_scores

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("uncertainty_cv", ROOT / "benchmarks" / "uncertainty_cv.py")
cv = importlib.util.module_from_spec(_spec)
sys.modules["uncertainty_cv"] = cv
_spec.loader.exec_module(cv)


def _rows(n: int = 200, hard_element: int | None = None, seed: int = 0) -> list[dict]:
    """Synthetic evaluated rows: a power-law error in the predictors times log-normal noise; with
    ``hard_element``, crystals holding it are off by three times as much."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        spread, highest = rng.lognormal(1.5, 0.6), rng.uniform(100, 1200)
        lowest = float(rng.choice([0.0, -20.0], p=[0.8, 0.2]))
        elements = sorted({int(z) for z in rng.choice([3, 8, 14, 30, 56], size=rng.integers(1, 4))})
        error = 0.8 * spread**0.5 * (highest / 500) ** 0.3 * rng.lognormal(0, 0.3)
        if hard_element in elements:
            error *= 3
        rows.append({"spread_cm1": spread, "member_highest_cm1": highest, "member_lowest_cm1": lowest,
                     "has_hydrogen": bool(rng.random() < 0.1), "primitive_atoms": int(rng.integers(2, 40)),
                     "bands_mae": error, "elements": elements})
    return rows


def test_candidate_fit_reproduces_the_shipped_terms():
    rows = _rows()
    shipped = cv.out_of_fold(rows, cv.TERM_SETS["+ both (release 26)"], seed=3)
    again = cv.candidate_out_of_fold(rows, cv.CANDIDATES[0], seed=3)
    np.testing.assert_allclose(again, shipped, rtol=1e-10)


def test_element_prior_finds_a_hard_element():
    rows = _rows(hard_element=30)
    error = np.array([r["bands_mae"] for r in rows])
    without = uncertainty_scores(cv.candidate_out_of_fold(rows, cv.CANDIDATES[0], seed=1), error)
    prior = uncertainty_scores(cv.candidate_out_of_fold(rows, "+ per-element error prior", seed=1), error)
    assert prior["spearman"] > without["spearman"] + 0.1
    # a crystal's own error never enters its prior, held out or in the training folds
    residual = np.zeros(len(rows))
    residual[0] = 5.0
    train = np.ones(len(rows), dtype=bool)
    held_out = train.copy()
    held_out[0] = False
    assert np.all(cv._element_prior(rows, residual, held_out) == 0.0)
    prior = cv._element_prior(rows, residual, train)
    shares = np.array([bool(set(r["elements"]) & set(rows[0]["elements"])) for r in rows])
    assert prior[0] == 0.0 and np.all(prior[1:][shares[1:]] > 0) and np.all(prior[~shares] == 0.0)


def test_every_candidate_is_scored():
    rows = _rows(n=120)
    for name in cv.CANDIDATES:
        u = cv.candidate_out_of_fold(rows, name, seed=0)
        assert u.shape == (len(rows),) and np.all(np.isfinite(u)) and np.all(u > 0)


def _evaluate_file(path: Path, data: str, rows: list[dict], split: str = "val") -> Path:
    """What ``vgnn evaluate --out`` writes: a summary naming the evaluation, and the rows."""
    path.write_text(json.dumps({"summary": {"data": data, "split": split, "points": "path"}, "materials": rows}))
    return path


def test_rows_are_read_from_the_evaluate_files(tmp_path):
    petretto, pdb = _rows(n=40, seed=1), _rows(n=60, seed=2)
    files = (_evaluate_file(tmp_path / "p.json", "petretto2018", petretto),
             _evaluate_file(tmp_path / "d.json", "phonondb", pdb))
    rows = cv.read_rows(*files)
    assert rows == {"petretto2018": petretto, "phonondb": pdb}
    # the files swapped, a test split, or a single model's rows (no member spread) are refused by name
    with pytest.raises(SystemExit, match="d.json.*not of petretto2018's val path"):
        cv.read_rows(files[1], files[0])
    test_split = _evaluate_file(tmp_path / "t.json", "phonondb", pdb, split="test")
    with pytest.raises(SystemExit, match="t.json.*'split': 'test'"):
        cv.read_rows(files[0], test_split)
    single = _evaluate_file(tmp_path / "s.json", "phonondb", [{"bands_mae": 3.0, "elements": [14]}])
    with pytest.raises(SystemExit, match="s.json: no ensemble rows"):
        cv.read_rows(files[0], single)
