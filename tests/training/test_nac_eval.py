"""The NAC measurement's path handling: segments recovered from an unlabelled stored path (corners,
a repeated Γ, a jump), their Γ ends, and the Γ-only correction (LO split at Γ, nothing else moved)."""

import numpy as np
import torch

from vgnn_core.phonons.dynamical_matrix import band_frequencies
from vgnn_core.phonons.force_constants import central_spring_force_constants
from vgnn_core.phonons.nac import BornCharges, NonAnalyticCorrection, path_q_directions
from vgnn_core.training.nac_eval import gamma_ends, gamma_only_frequencies, path_segments


def _line(a, b, n):
    return np.linspace(a, b, n)


def test_segments_of_an_unlabelled_path():
    lattice = np.eye(3) * 4.0
    g, x, m, r = np.zeros(3), np.array([0.5, 0, 0]), np.array([0.5, 0.5, 0]), np.array([0.5, 0.5, 0.5])
    # Γ–X (11 points), X–M sharing X (6 more), M–Γ (11, Γ repeated next), Γ–R (9), jump, X–R (6)
    q = np.vstack([_line(g, x, 11), _line(x, m, 6)[1:], _line(m, g, 11)[1:], _line(g, r, 9), _line(x, r, 6)])
    segs = path_segments(q, lattice)
    assert segs == [(0, 10), (10, 15), (15, 25), (26, 34), (35, 40)]
    ends = gamma_ends(q, segs, fraction=0.1)
    assert [e for e, _ in ends] == [0, 25, 26]
    np.testing.assert_array_equal(ends[0][1], [0, 1])  # 10 % of 11 points, at least Γ and its neighbour
    np.testing.assert_array_equal(ends[1][1], [24, 25])


def test_gamma_only_splits_lo_at_gamma_alone(rocksalt_nacl):
    fc = central_spring_force_constants(rocksalt_nacl, 5.0, r_max=4.5)
    born = BornCharges(np.eye(3) * 2.4, np.array([np.eye(3) * 1.1, -np.eye(3) * 1.1]))
    nac = NonAnalyticCorrection.from_born(rocksalt_nacl, born)
    lattice = np.asarray(rocksalt_nacl.lattice.matrix)
    q = np.vstack([_line(np.zeros(3), [0.5, 0, 0.5], 6)])
    dirs = path_q_directions(q, [(0, 5)], lattice)
    base = band_frequencies([fc], [torch.as_tensor(q)])[0].numpy()
    only = gamma_only_frequencies(fc, nac, q, dirs, base)
    np.testing.assert_array_equal(only[1:], base[1:])  # q ≠ 0 untouched
    # at Γ: one LO mode raised, acoustic and TO ones kept
    np.testing.assert_allclose(only[0, :5], base[0, :5], atol=1e-4)
    assert only[0, 5] - base[0, 5] > 10
