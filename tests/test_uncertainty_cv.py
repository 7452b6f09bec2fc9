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


SHA = "0" * 64


def _evaluate_file(path: Path, data: str, rows: list[dict], **summary) -> Path:
    """What ``vgnn evaluate --out`` writes: a summary naming the evaluation, and the rows."""
    summary = {"data": data, "split": "val", "points": "path", "twin_free": False, "split_file": None,
               "checkpoint_sha256": SHA} | summary
    path.write_text(json.dumps({"summary": summary, "materials": rows}))
    return path


def test_rows_are_read_from_the_evaluate_files(tmp_path):
    petretto, pdb = _rows(n=40, seed=1), _rows(n=60, seed=2)
    files = (_evaluate_file(tmp_path / "p.json", "petretto2018", petretto),
             _evaluate_file(tmp_path / "d.json", "phonondb", pdb))
    assert cv.read_rows(*files, SHA) == {"petretto2018": petretto, "phonondb": pdb}
    # refused by name: the files swapped, another checkpoint, a test split, twin-free or another split
    # file, a single model's rows (no member spread), rows from before `elements`, not an evaluation
    with pytest.raises(SystemExit, match="d.json.*not of petretto2018's whole val path"):
        cv.read_rows(files[1], files[0], SHA)
    with pytest.raises(SystemExit, match=f"p.json: evaluated by checkpoint {SHA}, not the shipped 1111"):
        cv.read_rows(*files, "1" * 64)
    for name, summary in {"t": {"split": "test"}, "w": {"twin_free": True}, "f": {"split_file": "my.json"}}.items():
        bad = _evaluate_file(tmp_path / f"{name}.json", "phonondb", pdb, **summary)
        with pytest.raises(SystemExit, match=f"{name}.json: an evaluation of .*{list(summary.values())[0]}"):
            cv.read_rows(files[0], bad, SHA)
    single = _evaluate_file(tmp_path / "s.json", "phonondb", [{"bands_mae": 3.0, "elements": [14]}])
    with pytest.raises(SystemExit, match="s.json: rows without has_hydrogen, member_highest_cm1, member_lowest"):
        cv.read_rows(files[0], single, SHA)
    old = _evaluate_file(tmp_path / "o.json", "phonondb", [{k: v for k, v in r.items() if k != "elements"} for r in pdb])
    with pytest.raises(SystemExit, match="o.json: rows without elements "):
        cv.read_rows(files[0], old, SHA)
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="x.json: not a `vgnn evaluate --out` file"):
        cv.read_rows(files[0], tmp_path / "x.json", SHA)


def test_the_cli_evaluation_is_what_the_fits_read(petretto_archive, tmp_path):
    """``vgnn evaluate --out`` of the shipped k-MVN names its checkpoint and gives every row the
    crystal's elements (against pymatgen's composition of the DFPT record) and the keys the fits read."""
    from flows.cli import main
    from vgnn_core.pretrained.registry import shipped_checkpoints
    from vgnn_core.training.petretto import iter_petretto, load_split

    ids = load_split()["val"][:3]
    split_file, out = tmp_path / "split.json", tmp_path / "val.json"
    split_file.write_text(json.dumps({"val": ids}))
    assert main(["evaluate", "--model", "kmvn", "--data", "petretto2018", "--split", "val",
                 "--split-file", str(split_file), "--out", str(out)]) == 0
    sha = shipped_checkpoints()["kmvn"]["sha256"]
    with pytest.raises(SystemExit, match="split.json"):  # a split file of its own is not the whole val
        cv.evaluation_rows(out, "petretto2018", sha)
    result = json.loads(out.read_text())
    result["summary"]["split_file"] = None
    out.write_text(json.dumps(result))
    rows = cv.evaluation_rows(out, "petretto2018", sha)
    elements = {r.material_id: sorted(el.Z for el in r.structure.composition) for r in iter_petretto(ids=ids)}
    assert [r["material_id"] for r in rows] == ids
    assert all(r["elements"] == elements[r["material_id"]] for r in rows)
    assert np.all(np.isfinite(cv.design_matrix([cv.error_predictors(r) for r in rows])))
