"""The batched MVN Γ path against a straightforward per-crystal computation.

The reference runs every ensemble member on one crystal at a time, builds each member's D(Γ)
densely bond by bond in numpy, averages the members' matrices (the ensemble is linear in its
blocks) and diagonalises with numpy: any speed-up of the Predictor (batching, shared work,
grouped eigen-solves) must reproduce it to 1e-3 cm⁻¹.
"""

import numpy as np
import pytest
import torch

from tests.conftest import TINY_ARCH
from vgnn_core import VGNN, Predictor, VGNNEnsemble
from vgnn_core.crystal.graph import build_graph, collate
from vgnn_core.phonons.units import EV_ANGSTROM2_AMU_TO_CM1
from vgnn_core.pretrained.registry import load_pretrained_model

TOLERANCE_CM1 = 1e-3


def reference_gamma(model, structure) -> np.ndarray:
    """Signed Γ frequencies (cm⁻¹) of one crystal, one member at a time, dense and in numpy."""
    members = list(model.members) if isinstance(model, VGNNEnsemble) else [model]
    graph = build_graph(structure, model.config.graph_cutoff)
    m = graph.n_atoms
    d = np.zeros((3 * m, 3 * m))
    with torch.inference_mode():
        for member in members:
            (fc,) = member.force_constants(collate([graph]))
            masses = fc.masses.double().numpy()
            for i, j, block in zip(fc.src.numpy(), fc.dst.numpy(), fc.blocks.double().numpy()):
                d[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] += block / np.sqrt(masses[i] * masses[j]) / len(members)
    lam = np.linalg.eigvalsh(0.5 * (d + d.T))
    return np.sign(lam) * np.sqrt(np.abs(lam)) * EV_ANGSTROM2_AMU_TO_CM1


def tiny_ensemble() -> VGNNEnsemble:
    members = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        members.append(VGNN(kind="mvn", full_blocks=True, r_bond=5.0, fc_scale=10.0, **TINY_ARCH))
    return VGNNEnsemble(members)


@pytest.fixture
def crystals(si_primitive, wurtzite_zno, rocksalt_nacl, perovskite_srtio3, monoclinic_zro2):
    return [si_primitive, wurtzite_zno, rocksalt_nacl, perovskite_srtio3, monoclinic_zro2]


@pytest.mark.parametrize("batch_size, max_atoms", [(64, 4096), (2, 4096), (64, 8)])
def test_batched_gamma_matches_the_per_crystal_reference(crystals, batch_size, max_atoms):
    model = tiny_ensemble()
    got = Predictor(model, batch_size=batch_size, max_atoms_per_batch=max_atoms).predict_gamma(crystals)
    for structure, w in zip(crystals, got):
        ref = reference_gamma(model, structure)
        assert w.shape == ref.shape == (3 * len(structure),)
        assert np.abs(w - ref).max() < TOLERANCE_CM1
        assert np.ptp(ref) > 10.0  # a real spectrum, not zeros on both sides
        assert np.sort(np.abs(w))[:3].max() < 1e-2  # the acoustic modes stay exact


def test_shipped_mvn_gamma_matches_the_per_crystal_reference(si_primitive, wurtzite_zno, rocksalt_nacl):
    model = load_pretrained_model("mvn")
    assert isinstance(model, VGNNEnsemble) and len(model.members) >= 3
    crystals = [si_primitive, wurtzite_zno, rocksalt_nacl]
    got = Predictor(model).predict_gamma(crystals)
    for structure, w in zip(crystals, got):
        ref = reference_gamma(model, structure)
        assert np.abs(w - ref).max() < TOLERANCE_CM1
    # silicon's optical mode at Γ: triply degenerate (cubic point group) and near DFPT's 509.7 cm⁻¹
    assert np.ptp(got[0][-3:]) < 1e-3 and abs(got[0][-1] - 509.7) < 60
