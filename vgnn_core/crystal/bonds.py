"""Virtual nodes: where VGNN's answers live.

Messages flow from real atoms to virtual nodes only; real atoms never receive from them.

* **k-MVN** — one virtual node ``V_ij^T`` per bond ``(i, j, T)`` within ``r_max``; it yields the
  3×3 force-constant block ``Φ_ij(T)``. These are exactly the edges of the crystal graph, so
  no dense box of ``t·m²`` mostly-empty nodes is ever created.
* **MVN** — one virtual node ``V_ij`` per ordered atom pair with at least one bond; its
  block ``Σ_T Φ_ij(T)`` is the pair's block of ``D(Γ)``. The sum over the pair's bonds is
  linear, so a supercell's MVN nodes reproduce the primitive cell's commensurate ``D(q)``.
* **VVN** — ``3m`` virtual nodes on the cell's body diagonal (:mod:`vgnn_core.nn.readouts`).
"""

from __future__ import annotations

import numpy as np


def bond_keys(
    src: np.ndarray, dst: np.ndarray, shift: np.ndarray, n_atoms: int, bound: int
) -> np.ndarray:
    """One integer per bond (i, j, T), for translations with |T_k| <= bound."""
    span = 2 * bound + 1
    s = shift + bound
    cell = (s[:, 0] * span + s[:, 1]) * span + s[:, 2]
    return (src * n_atoms + dst) * span**3 + cell


def reverse_bond_index(
    src: np.ndarray, dst: np.ndarray, shift: np.ndarray, n_atoms: int
) -> np.ndarray:
    """For each bond ``(i, j, T)`` the index of its reverse ``(j, i, −T)``.

    Every bond within a cutoff has its reverse (same length), so this always exists.
    """
    if len(src) == 0:
        return np.zeros(0, dtype=np.int64)
    bound = int(np.abs(shift).max())
    keys = bond_keys(src, dst, shift, n_atoms, bound)
    rkeys = bond_keys(dst, src, -shift, n_atoms, bound)
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], rkeys), len(src) - 1)
    rev = order[pos]
    if not np.array_equal(keys[rev], rkeys):
        raise RuntimeError("neighbour list is not symmetric: a bond has no reverse bond")
    return rev.astype(np.int64)


def pair_index(src: np.ndarray, dst: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """MVN virtual nodes: the ordered atom pairs ``(i, j)`` that have at least one bond.

    Returns ``(edge_pair, pairs)``: the pair index of every bond and the ``(P, 2)`` pairs.
    """
    key = src * n_atoms + dst
    unique, edge_pair = np.unique(key, return_inverse=True)
    pairs = np.stack([unique // n_atoms, unique % n_atoms], axis=1).astype(np.int64)
    return edge_pair.astype(np.int64).reshape(-1), pairs
