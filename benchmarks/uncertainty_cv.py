"""Which terms the uncertainty model needs: cross-validated on the shipped ensemble's `val` rows.

The :class:`~vgnn_core.nn.uncertainty.UncertaintyModel` is fitted on the `val` splits pooled (Petretto
and phonondb), and scored there in-sample by ``ship``. To choose its terms without that bias, this
script evaluates the shipped k-MVN ensemble on both `val` splits once, then for each set of terms
fits the model on 4/5 of the materials and predicts the other 1/5 (5 folds, repeated with
different fold draws) and scores the out-of-fold uncertainty per split: Spearman with the actual
band MAE and the mean error of the 10 % most uncertain against the rest. A term is left out of a fit
by giving every material the same value for it (the fit then keeps its exponent at 0). Test
materials are never read.

A second table scores candidate terms the shipped model does not have, added to its terms in the
same folds (``UncertaintyModel.fit``'s own least squares, ``fit_log_mae``): the number of
elements, a per-element error prior (each element's mean log residual over the training folds'
materials holding it, shrunk towards 0 by ``PRIOR_SHRINK`` materials; averaged over the
crystal's elements), the depth of the members' lowest mode, log(1 + max(0, −ω_min)), in place of
the [unstable] flag, and the squared log spread.

    python benchmarks/uncertainty_cv.py [--repeats 10] [--model kmvn]
    python benchmarks/uncertainty_cv.py --rows PETRETTO.json PHONONDB.json

``--rows`` reads two ``vgnn evaluate --model kmvn --split val --points path --out`` files (Petretto,
then phonondb) instead of evaluating again; ``release.sh --benchmarks`` passes the ones it makes for
``instability_cv.py``. Writes ``benchmarks/results/uncertainty_cv.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from vgnn_core.nn.uncertainty import UncertaintyModel, design_matrix, fit_log_mae
from vgnn_core.pretrained.registry import load_pretrained_model, shipped_checkpoints
from vgnn_core.training import phonondb
from vgnn_core.training.evaluation import error_predictors, evaluate
from vgnn_core.training.metrics import uncertainty_scores
from vgnn_core.training.petretto import load_samples, load_split

RESULTS = Path(__file__).resolve().parent / "results"

#: term sets, each: which ErrorPredictors fields the fit may use beyond the spread
TERM_SETS = {
    "spread only": (),
    "spread, ω_max, [H] (release 25)": ("highest_cm1", "has_hydrogen"),
    "+ primitive atoms": ("highest_cm1", "has_hydrogen", "primitive_atoms"),
    "+ [member unstable]": ("highest_cm1", "has_hydrogen", "lowest_cm1"),
    "+ both (release 26)": ("highest_cm1", "has_hydrogen", "primitive_atoms", "lowest_cm1"),
}
#: the value a left-out term takes for every material (constant: exponent 0)
NEUTRAL = {"highest_cm1": 1.0, "has_hydrogen": False, "primitive_atoms": 1, "lowest_cm1": 0.0}
#: materials' worth of a zero residual added to every element's prior
PRIOR_SHRINK = 5.0
#: candidate terms beyond the shipped model's (the first is the shipped terms alone, as a check)
CANDIDATES = ("shipped terms (check: the table above's last row)", "+ number of elements", "+ per-element error prior",
              "lowest mode's depth for [unstable]", "+ (log spread)²")


def val_rows(model_name: str) -> dict[str, list[dict]]:
    """The shipped ensemble's evaluated `val` rows, per source."""
    model = load_pretrained_model(model_name)
    cutoff, r_bond = model.config.graph_cutoff, model.config.r_bond or model.config.r_max
    by_source = {"petretto2018": load_samples(load_split()["val"], r_max=cutoff),
                 "phonondb": phonondb.load_samples(phonondb.load_split()["val"], cutoff, r_bond, evaluation=True)}
    return {source: evaluate(model, samples)["materials"] for source, samples in by_source.items()}


#: what the fits read from every evaluated row
ROW_KEYS = ("bands_mae", "spread_cm1", "member_lowest_cm1", "member_highest_cm1", "has_hydrogen", "primitive_atoms",
            "elements")


def evaluation_rows(path: Path, source: str, sha256: str) -> list[dict]:
    """The rows of one ``vgnn evaluate --out`` file, refused (one line naming the file) unless it is the
    whole `val` path of ``source`` evaluated by the checkpoint ``sha256`` with every key the fits need."""
    try:
        result = json.loads(Path(path).read_text())
        summary, rows = result["summary"], result["materials"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{path}: not a `vgnn evaluate --out` file ({type(error).__name__}: {error})") from None
    want = {"data": source, "split": "val", "points": "path", "twin_free": False, "split_file": None}
    got = {k: summary.get(k) for k in want}
    if got != want:
        raise SystemExit(f"{path}: an evaluation of {got}, not of {source}'s whole val path")
    if summary.get("checkpoint_sha256") != sha256:
        raise SystemExit(f"{path}: evaluated by checkpoint {summary.get('checkpoint_sha256')}, not the shipped {sha256}")
    missing = sorted({k for r in rows for k in ROW_KEYS if k not in r})
    if not rows or missing:
        raise SystemExit(f"{path}: rows without {', '.join(missing) or 'materials'} (a k-MVN ensemble's, from this code)")
    return rows


def read_rows(petretto: Path, phonondb_rows: Path, sha256: str) -> dict[str, list[dict]]:
    """What :func:`val_rows` returns, from the two evaluate files (Petretto's, then phonondb's)."""
    return {"petretto2018": evaluation_rows(petretto, "petretto2018", sha256),
            "phonondb": evaluation_rows(phonondb_rows, "phonondb", sha256)}


def fold_of(n: int, seed: int, folds: int = 5) -> np.ndarray:
    """Each of ``n`` rows' fold (0 … folds − 1), drawn with ``seed``: the same for every term set."""
    return np.random.default_rng(seed).permutation(n) % folds


def fit_out_of_fold(x: np.ndarray, error: np.ndarray, seed: int, folds: int = 5) -> np.ndarray:
    """Each row's uncertainty from :func:`fit_log_mae` on design matrix ``x`` of the other folds' rows."""
    fold = fold_of(len(error), seed, folds)
    u = np.empty(len(error))
    for f in range(folds):
        u[fold == f] = np.exp(x[fold == f] @ fit_log_mae(x[fold != f], error[fold != f]))
    return u


def out_of_fold(rows: list[dict], terms: tuple[str, ...], seed: int, folds: int = 5) -> np.ndarray:
    """Each row's uncertainty from a model fitted on the other folds, using only ``terms``."""
    predictors = [replace(error_predictors(r), **{k: v for k, v in NEUTRAL.items() if k not in terms}) for r in rows]
    error = np.array([r["bands_mae"] for r in rows])
    fold = fold_of(len(rows), seed, folds)
    u = np.empty(len(rows))
    for f in range(folds):
        train = np.flatnonzero(fold != f)
        fit = UncertaintyModel.fit([predictors[i] for i in train], error[train])
        u[fold == f] = [fit(predictors[i]) for i in np.flatnonzero(fold == f)]
    return u


def _element_prior(rows: list[dict], residual: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Each crystal's mean over its elements of their shrunk mean residual on the ``train`` rows; a
    ``train`` row's own residual is left out of its prior, so the fit sees what a held-out row sees."""
    total: dict[int, float] = {}
    count: dict[int, int] = {}
    for i in np.flatnonzero(train):
        for z in rows[i]["elements"]:
            total[z] = total.get(z, 0.0) + residual[i]
            count[z] = count.get(z, 0) + 1
    own = np.where(train, residual, 0.0)
    return np.array([np.mean([(total.get(z, 0.0) - own[i]) / (count.get(z, 0) - train[i] + PRIOR_SHRINK)
                              for z in r["elements"]]) for i, r in enumerate(rows)])


def candidate_out_of_fold(rows: list[dict], candidate: str, seed: int, folds: int = 5) -> np.ndarray:
    """Each row's uncertainty from the shipped terms plus ``candidate``, fitted on the other folds."""
    base = design_matrix([error_predictors(r) for r in rows])
    error = np.array([r["bands_mae"] for r in rows])
    lowest = np.array([r["member_lowest_cm1"] for r in rows])
    extra = {"+ number of elements": np.array([[len(r["elements"])] for r in rows], dtype=float),
             "+ (log spread)²": base[:, 1:2] ** 2}
    if candidate == "lowest mode's depth for [unstable]":
        x = np.c_[base[:, :-1], np.log1p(np.maximum(0.0, -lowest))]
    else:
        x = np.c_[base, extra.get(candidate, np.empty((len(rows), 0)))]
    if candidate != "+ per-element error prior":
        return fit_out_of_fold(x, error, seed, folds)
    fold = fold_of(len(rows), seed, folds)
    u = np.empty(len(rows))
    for f in range(folds):  # the prior: residuals of the shipped terms, training folds only
        train = fold != f
        # plain least squares (an intercept column): the residuals' mean is 0, what the prior shrinks to
        beta = np.linalg.lstsq(base[train], np.log(error[train]), rcond=None)[0]
        xf = np.c_[base, _element_prior(rows, np.log(error) - base @ beta, train)]
        u[fold == f] = np.exp(xf[fold == f] @ fit_log_mae(xf[fold != f], error[fold != f]))
    return u


def _scores(by_source: dict, source_of: np.ndarray, error: np.ndarray, draws) -> dict:
    scores = {s: [] for s in by_source}
    for u in draws:
        for s in by_source:
            scores[s].append(uncertainty_scores(u[source_of == s], error[source_of == s]))
    return {s: {k: float(np.mean([x[k] for x in v])) for k in ("spearman", "top_to_rest_ratio")} for s, v in scores.items()}


def _print(name: str, row: dict) -> None:
    print(f"{name:50s} " + "  ".join(f"{s}: Spearman {m['spearman']:.3f}, top 10 % {m['top_to_rest_ratio']:.2f}×"
                                     for s, m in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="kmvn", help="shipped ensemble (k-MVN: band MAE)")
    parser.add_argument("--repeats", type=int, default=10, help="fold draws averaged")
    parser.add_argument("--rows", nargs=2, type=Path, metavar=("PETRETTO", "PHONONDB"),
                        help="`vgnn evaluate --out` files of --model on the val paths, read instead of evaluating")
    args = parser.parse_args()
    sha256 = shipped_checkpoints()[args.model]["sha256"]
    by_source = read_rows(*args.rows, sha256) if args.rows else val_rows(args.model)
    rows = [r for source in by_source.values() for r in source]
    source_of = np.array([s for s, source in by_source.items() for _ in source])
    error = np.array([r["bands_mae"] for r in rows])
    table, candidates = {}, {}
    for name, terms in TERM_SETS.items():
        table[name] = _scores(by_source, source_of, error, (out_of_fold(rows, terms, seed) for seed in range(args.repeats)))
        _print(name, table[name])
    print("candidate terms, not in the shipped model:")
    for name in CANDIDATES:
        candidates[name] = _scores(by_source, source_of, error,
                                   (candidate_out_of_fold(rows, name, seed) for seed in range(args.repeats)))
        _print(name, candidates[name])
    out = {"model": args.model, "checkpoint_sha256": sha256,
           "repeats": args.repeats, "folds": 5,
           "materials": {s: len(v) for s, v in by_source.items()}, "out_of_fold": table,
           "candidates": {"prior_shrink": PRIOR_SHRINK, "out_of_fold": candidates}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "uncertainty_cv.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
