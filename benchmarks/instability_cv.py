"""Can a classifier on a row's own numbers flag instabilities better than ``likely_unstable``?

Issue #15 asks for F1 ≥ 0.85 on "lowest ω on the path below −5 cm⁻¹". The shipped flag is a rule
(the bands, or one member alone, below −5 cm⁻¹). This script asks whether a logistic regression on
what every database row already holds does better, cross-validated on `val` only (5 folds, repeated
with different draws; the decision threshold is chosen on the training folds, to maximise F1 there):

* ``frequencies``: the bands' lowest ω and the members' lowest ω (asinh(ω / 5 cm⁻¹));
* ``+ agreement``: and log spread, log uncertainty;
* ``+ size``: and log atoms, log primitive atoms, hydrogen present.

Its input is ``vgnn evaluate --out`` of the shipped k-MVN on each `val` split, e.g.::

    vgnn evaluate --model kmvn --data phonondb --split val --points path --out val_phonondb_path.json
    vgnn evaluate --model kmvn --data phonondb --split val --points commensurate --out val_phonondb_comm.json
    vgnn evaluate --model kmvn --data petretto2018 --split val --out val_petretto.json
    python benchmarks/instability_cv.py val_phonondb_path.json val_phonondb_comm.json val_petretto.json

Writes ``benchmarks/results/instability_cv.json`` and prints a table. Test materials are never read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from vgnn_core.phonons.result import INSTABILITY_THRESHOLD_CM1

RESULTS = Path(__file__).resolve().parent / "results"
FEATURE_SETS = {"frequencies": 2, "+ agreement": 4, "+ size": 7}


def features(row: dict) -> list[float]:
    """The row's numbers a classifier may use, most basic first (see the module docstring)."""
    return [np.arcsinh(row["bands_min_predicted"] / 5.0), np.arcsinh(row["member_lowest_cm1"] / 5.0),
            np.log(row["spread_cm1"] + 1e-3), np.log(row["uncertainty_cm1"]),
            np.log(row["n_atoms"]), np.log(row["primitive_atoms"]), float(row["has_hydrogen"])]


def f1(truth: np.ndarray, flag: np.ndarray) -> float:
    tp = int((truth & flag).sum())
    denominator = truth.sum() + flag.sum()
    return 2 * tp / denominator if denominator else float("nan")


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0):
    """An L2-regularised logistic regression on standardised ``x``; returns the probability function."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    design = np.c_[np.ones(len(x)), (x - mean) / scale]
    target = y.astype(float)

    def loss(w):
        z = design @ w
        p = 1.0 / (1.0 + np.exp(-z))
        penalty = np.r_[0.0, w[1:]] * l2
        return (np.logaddexp(0.0, z) - target * z).sum() + 0.5 * l2 * (w[1:] ** 2).sum(), design.T @ (p - target) + penalty

    w = minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B").x
    return lambda new: 1.0 / (1.0 + np.exp(-(np.c_[np.ones(len(new)), (new - mean) / scale] @ w)))


def folds_of(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified fold number per material."""
    fold = np.zeros(len(y), dtype=int)
    for label in (False, True):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def out_of_fold_f1(x: np.ndarray, y: np.ndarray, seed: int, k: int = 5) -> float:
    flag = np.zeros(len(y), dtype=bool)
    fold = folds_of(y, k, np.random.default_rng(seed))
    thresholds = np.linspace(0.05, 0.95, 19)
    for f in range(k):
        train, held = fold != f, fold == f
        prob = fit_logistic(x[train], y[train])
        in_sample = prob(x[train])
        best = max(thresholds, key=lambda t: f1(y[train], in_sample > t))
        flag[held] = prob(x[held]) > best
    return f1(y, flag)


def score_split(rows: list[dict], repeats: int) -> dict:
    y = np.array([r["bands_min_reference"] < INSTABILITY_THRESHOLD_CM1 for r in rows])
    x = np.array([features(r) for r in rows])
    own = x[:, 0] < np.arcsinh(INSTABILITY_THRESHOLD_CM1 / 5.0)
    rule = np.minimum(x[:, 0], x[:, 1]) < np.arcsinh(INSTABILITY_THRESHOLD_CM1 / 5.0)
    out = {"n": len(y), "n_unstable": int(y.sum()), "F1 bands' own minimum": f1(y, own),
           "F1 likely_unstable": f1(y, rule), "F1 flag every material": f1(y, np.ones_like(y))}
    for name, n in FEATURE_SETS.items():
        scores = [out_of_fold_f1(x[:, :n], y, seed) for seed in range(repeats)]
        out[f"F1 logistic, {name}"] = float(np.mean(scores))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evaluations", nargs="+", type=Path, help="`vgnn evaluate --out` files of `val` splits")
    parser.add_argument("--repeats", type=int, default=10, help="fold draws averaged")
    parser.add_argument("--out", type=Path, default=RESULTS / "instability_cv.json")
    args = parser.parse_args(argv)
    results = {}
    for path in args.evaluations:
        data = json.loads(path.read_text())
        summary = data["summary"]
        if summary.get("split") not in (None, "val"):
            raise SystemExit(f"{path}: split {summary['split']!r}; choose on val only")
        name = f"{summary.get('data', path.stem)} {summary.get('points', 'path')} val"
        results[name] = score_split(data["materials"], args.repeats)
    columns = list(next(iter(results.values())))[2:]
    print("| split (n unstable of n) | " + " | ".join(c.removeprefix("F1 ") for c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, r in results.items():
        print(f"| {name} ({r['n_unstable']} of {r['n']}) | " + " | ".join(f"{r[c]:.2f}" for c in columns) + " |")
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
