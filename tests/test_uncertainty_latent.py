"""``benchmarks/uncertainty_latent.py``: the fingerprints are the networks' invariant features (the same
for a rotated crystal), and the distances to the training data are zero on it and grow away from it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from scipy.spatial.transform import Rotation

from vgnn_core import build_graph
from vgnn_core.pretrained.registry import load_pretrained_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_load("uncertainty_cv")  # what uncertainty_latent imports
latent = _load("uncertainty_latent")


def test_fingerprints_are_invariant_features(wurtzite_zno):
    model = load_pretrained_model("kmvn")
    cutoff = model.config.graph_cutoff
    turned = Structure(wurtzite_zno.lattice.matrix @ Rotation.from_euler("zyx", [0.3, -1.1, 2.0]).as_matrix().T,
                       wurtzite_zno.species, wurtzite_zno.frac_coords)
    a, b = latent.fingerprints(model, [build_graph(s, cutoff) for s in (wurtzite_zno, turned)])
    channels = sum(ir.dim * mul for m in model.members for mul, ir in m.backbone.irreps_out if ir.l == 0)
    assert a.shape == (len(wurtzite_zno), channels)
    np.testing.assert_allclose(a, b, atol=1e-4)  # invariants: a rotated crystal is the same crystal
    assert np.abs(a).max() > 1e-2


def test_distances_vanish_on_the_training_data_and_grow_away_from_it():
    rng = np.random.default_rng(0)
    training = [rng.normal(size=(int(rng.integers(2, 9)), 12)) for _ in range(40)]
    distance = latent.TrainingDistance(training, components=4)
    assert 0 < distance.explained <= 1 and distance.n_atoms == sum(len(a) for a in training)
    own = distance(training[3])
    assert own["atoms, largest"] == pytest.approx(0, abs=1e-9) and own["atoms, mean"] == pytest.approx(0, abs=1e-9)
    away = [distance(training[3] + shift * distance.scale * distance.axes[:, 0]) for shift in (1.0, 3.0, 10.0)]
    for key in ("atoms, largest", "atoms, mean", "crystals"):
        values = [own[key]] + [d[key] for d in away]
        assert np.all(np.diff(values) > 0), (key, values)
