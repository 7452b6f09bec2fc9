"""Does a distance from the training data, in the networks' own features, rank the error better?

The uncertainty (:class:`~vgnn_core.nn.uncertainty.UncertaintyModel`) reads the members' spread and a
few properties of the crystal. A crystal unlike any training crystal might be off by more than its
spread says. This script measures that with the shipped k-MVN ensemble's backbones:

* every atom's *fingerprint*: the invariant (0e) channels of the three members' atom features,
  standardised over the training atoms and projected on their first ``--components`` principal axes;
* three distances per crystal: its atoms' largest and mean distance to the nearest training atom, and
  its mean fingerprint's mean distance to the 5 nearest training crystals' (Petretto and phonondb
  ``train``, 1,229 + 8,580 crystals);
* each added as a log term to the shipped terms and cross-validated on the `val` splits exactly as
  ``uncertainty_cv.py`` does (its :func:`fit_out_of_fold`: 5 folds, ``--repeats`` draws), scored
  per split: Spearman with the actual band MAE and the mean error of the 10 % most uncertain against
  the rest. ``ideal`` ranks by the actual error itself: the best any uncertainty could score.

Test materials are never read. Needs the prepared phonondb targets (``vgnn prepare-phonondb``).

    python benchmarks/uncertainty_latent.py [--components 16] [--repeats 10]
    python benchmarks/uncertainty_latent.py --rows PETRETTO.json PHONONDB.json

``--rows`` reads the `val` rows from two ``vgnn evaluate --model kmvn --split val --points path --out``
files (Petretto, then phonondb; ``uncertainty_cv.py``'s checks) instead of evaluating them again, as
``release.sh --benchmarks`` does.

Writes ``benchmarks/results/uncertainty_latent.json`` and prints a table (~3 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from uncertainty_cv import _print, _scores, fit_out_of_fold, read_rows

from vgnn_core import collate
from vgnn_core.nn.uncertainty import design_matrix
from vgnn_core.pretrained.registry import load_pretrained_model, shipped_checkpoints
from vgnn_core.training import phonondb
from vgnn_core.training.evaluation import error_predictors, evaluate
from vgnn_core.training.petretto import load_samples, load_split

RESULTS = Path(__file__).resolve().parent / "results"
#: training crystals whose mean fingerprints a crystal's is compared with
NEAREST_CRYSTALS = 5


def fingerprints(model, graphs, batch_size: int = 32) -> list[np.ndarray]:
    """Each crystal's (atoms, channels) invariant atom features, the members' side by side."""
    from e3nn import o3

    columns = []
    for member in model.members:
        irreps = o3.Irreps(member.backbone.irreps_out)
        columns.append(torch.as_tensor(np.concatenate(
            [np.arange(s.start, s.stop) for s, (_, ir) in zip(irreps.slices(), irreps) if ir.l == 0])))
    out = []
    with torch.inference_mode():
        for start in range(0, len(graphs), batch_size):
            chunk = graphs[start:start + batch_size]
            features = model.encode(collate(chunk, dtype=torch.float32))
            h = torch.cat([f.h[:, c] for f, c in zip(features, columns)], dim=1).numpy()
            ends = np.cumsum([g.n_atoms for g in chunk])
            out += np.split(h, ends[:-1])
    return out


class TrainingDistance:
    """Distances of crystals' fingerprints to those of the training crystals, in ``components`` principal axes."""

    def __init__(self, training: list[np.ndarray], components: int, seed: int = 0, max_rows: int = 50_000):
        atoms = np.concatenate(training)
        self.mean, self.scale = atoms.mean(0), atoms.std(0) + 1e-6
        z = (atoms - self.mean) / self.scale
        rows = np.random.default_rng(seed).choice(len(z), min(len(z), max_rows), replace=False)
        _, singular, axes = np.linalg.svd(z[rows], full_matrices=False)
        self.axes = axes[:components].T
        self.explained = float((singular[:components] ** 2).sum() / (singular ** 2).sum())
        self.atoms = cKDTree(z @ self.axes)
        self.crystals = cKDTree(np.array([self._project(a).mean(0) for a in training]))
        self.n_atoms = len(atoms)

    def _project(self, atoms: np.ndarray) -> np.ndarray:
        return (atoms - self.mean) / self.scale @ self.axes

    def __call__(self, atoms: np.ndarray) -> dict[str, float]:
        """One crystal's atom distances (largest, mean) and its distance to the nearest training crystals."""
        p = self._project(atoms)
        d, _ = self.atoms.query(p, k=1)
        near, _ = self.crystals.query(p.mean(0), k=NEAREST_CRYSTALS)
        return {"atoms, largest": float(d.max()), "atoms, mean": float(d.mean()), "crystals": float(np.mean(near))}


def in_order(rows: list[dict], samples: list, source: str) -> list[dict]:
    """Evaluated ``rows`` in the order of ``samples`` (one row each), or a one-line refusal."""
    by_id = {r["material_id"]: r for r in rows}
    ids = [s.material_id for s in samples]
    if len(by_id) != len(rows) or sorted(by_id) != sorted(ids):
        raise SystemExit(f"--rows: the {source} rows name {len(by_id)} materials, not the {len(ids)} of its val split")
    return [by_id[i] for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", type=int, default=16, help="principal axes of the fingerprints")
    parser.add_argument("--repeats", type=int, default=10, help="fold draws averaged")
    parser.add_argument("--rows", nargs=2, type=Path, metavar=("PETRETTO", "PHONONDB"),
                        help="the val rows of `vgnn evaluate --out` (Petretto, then phonondb) instead of evaluating")
    args = parser.parse_args()
    model = load_pretrained_model("kmvn")
    cutoff, r_bond = model.config.graph_cutoff, model.config.r_bond or model.config.r_max
    petretto, db = load_split(), phonondb.load_split()
    train = load_samples(petretto["train"], r_max=cutoff) + phonondb.load_samples(db["train"], cutoff, r_bond)
    distance = TrainingDistance(fingerprints(model, [s.graph for s in train]), args.components)
    val = {"petretto2018": load_samples(petretto["val"], r_max=cutoff),
           "phonondb": phonondb.load_samples(db["val"], cutoff, r_bond, evaluation=True)}
    given = read_rows(*args.rows, shipped_checkpoints()["kmvn"]["sha256"]) if args.rows else None
    rows, features = [], []
    for source, samples in val.items():
        rows += evaluate(model, samples)["materials"] if given is None else in_order(given[source], samples, source)
        features += [distance(a) for a in fingerprints(model, [s.graph for s in samples])]
    source_of = np.array([source for source, samples in val.items() for _ in samples])
    error = np.array([r["bands_mae"] for r in rows])
    base = design_matrix([error_predictors(r) for r in rows])
    by_source = dict.fromkeys(val)
    table = {"ideal (ranked by the actual error)": _scores(by_source, source_of, error, [error])}
    table["shipped terms"] = _scores(by_source, source_of, error,
                                     (fit_out_of_fold(base, error, seed) for seed in range(args.repeats)))
    for name in features[0]:
        x = np.c_[base, np.log(np.maximum([f[name] for f in features], 1e-3))]
        table[f"+ log distance: {name}"] = _scores(by_source, source_of, error,
                                                   (fit_out_of_fold(x, error, seed) for seed in range(args.repeats)))
    print(f"{args.components} principal axes ({distance.explained:.0%} of the variance), {distance.n_atoms:,} training atoms")
    for name, row in table.items():
        _print(name, row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "uncertainty_latent.json").write_text(json.dumps({
        "model": "kmvn", "checkpoint_sha256": shipped_checkpoints()["kmvn"]["sha256"],
        "components": args.components, "explained_variance": distance.explained,
        "training_atoms": distance.n_atoms, "training_crystals": len(train), "nearest_crystals": NEAREST_CRYSTALS,
        "repeats": args.repeats, "folds": 5, "materials": {s: len(v) for s, v in val.items()},
        "out_of_fold": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
