"""Which terms the uncertainty model needs: cross-validated on the shipped ensemble's `val` rows.

The :class:`~vgnn_core.nn.uncertainty.UncertaintyModel` is fitted on the `val` splits pooled (Petretto
and phonondb), and scored there in-sample by ``ship``. To choose its terms without that bias, this
script evaluates the shipped k-MVN ensemble on both `val` splits once, then for each set of terms
fits the model on 4/5 of the materials and predicts the other 1/5 (5 folds, repeated with
different fold draws) and scores the out-of-fold uncertainty per split: Spearman with the actual
band MAE and the mean error of the 10 % most uncertain against the rest. A term is left out of a fit
by giving every material the same value for it (the fit then keeps its exponent at 0). Test
materials are never read.

    python benchmarks/uncertainty_cv.py [--repeats 10] [--model kmvn]

Writes ``benchmarks/results/uncertainty_cv.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from vgnn_core.nn.uncertainty import UncertaintyModel
from vgnn_core.pretrained.registry import load_pretrained_model
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


def val_rows(model_name: str) -> dict[str, list[dict]]:
    """The shipped ensemble's evaluated `val` rows, per source."""
    model = load_pretrained_model(model_name)
    cutoff, r_bond = model.config.graph_cutoff, model.config.r_bond or model.config.r_max
    petretto = evaluate(model, load_samples(load_split()["val"], r_max=cutoff))
    db = evaluate(model, phonondb.load_samples(phonondb.load_split()["val"], cutoff, r_bond, evaluation=True))
    return {"petretto2018": petretto["materials"], "phonondb": db["materials"]}


def out_of_fold(rows: list[dict], terms: tuple[str, ...], seed: int, folds: int = 5) -> np.ndarray:
    """Each row's uncertainty from a model fitted on the other folds, using only ``terms``."""
    predictors = [replace(error_predictors(r), **{k: v for k, v in NEUTRAL.items() if k not in terms}) for r in rows]
    error = np.array([r["bands_mae"] for r in rows])
    fold = np.random.default_rng(seed).permutation(len(rows)) % folds
    u = np.empty(len(rows))
    for f in range(folds):
        train = np.flatnonzero(fold != f)
        fit = UncertaintyModel.fit([predictors[i] for i in train], error[train])
        u[fold == f] = [fit(predictors[i]) for i in np.flatnonzero(fold == f)]
    return u


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="kmvn", help="shipped ensemble (k-MVN: band MAE)")
    parser.add_argument("--repeats", type=int, default=10, help="fold draws averaged")
    args = parser.parse_args()
    by_source = val_rows(args.model)
    rows = [r for source in by_source.values() for r in source]
    source_of = np.array([s for s, source in by_source.items() for _ in source])
    error = np.array([r["bands_mae"] for r in rows])
    table = {}
    for name, terms in TERM_SETS.items():
        scores = {s: [] for s in by_source}
        for seed in range(args.repeats):
            u = out_of_fold(rows, terms, seed)
            for s in by_source:
                scores[s].append(uncertainty_scores(u[source_of == s], error[source_of == s]))
        table[name] = {s: {k: float(np.mean([x[k] for x in v])) for k in ("spearman", "top_to_rest_ratio")}
                       for s, v in scores.items()}
        print(f"{name:34s} " + "  ".join(f"{s}: Spearman {m['spearman']:.3f}, top 10 % {m['top_to_rest_ratio']:.2f}×"
                                         for s, m in table[name].items()))
    out = {"model": args.model, "repeats": args.repeats, "folds": 5,
           "materials": {s: len(v) for s, v in by_source.items()}, "out_of_fold": table}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "uncertainty_cv.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
