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


#: :func:`find_bonds` looks bonds up in a table of every possible key when it has at most this many
#: entries per bond given and queried (a typical cell's graph: ~10) and at most
#: :data:`DENSE_LOOKUP_MAX` in all (32 MB), else by sorting the keys
DENSE_LOOKUP_FACTOR = 64
DENSE_LOOKUP_MAX = 1 << 22


def find_bonds(src: np.ndarray, dst: np.ndarray, shift: np.ndarray, n_atoms: int,
               q_src: np.ndarray, q_dst: np.ndarray, q_shift: np.ndarray) -> np.ndarray:
    """The index among the bonds ``(src, dst, shift)`` (E,) of each queried bond ``(q_src, q_dst,
    q_shift)``, or E where it is not one of them."""
    if len(src) == 0:
        return np.zeros(len(q_src), dtype=np.int64)
    bound = int(max(np.abs(shift).max(), np.abs(q_shift).max(initial=0)))
    keys = bond_keys(src, dst, shift, n_atoms, bound)
    wanted = bond_keys(q_src, q_dst, q_shift, n_atoms, bound)
    size = n_atoms * n_atoms * (2 * bound + 1) ** 3
    dense = np.issubdtype(keys.dtype, np.integer) and np.issubdtype(wanted.dtype, np.integer)
    if dense and size <= min(DENSE_LOOKUP_MAX, DENSE_LOOKUP_FACTOR * (len(keys) + len(wanted))):  # no sort
        table = np.full(size, len(src), dtype=np.int64)
        table[keys[::-1]] = np.arange(len(src) - 1, -1, -1)  # a bond given twice: its first index, as below
        return table[wanted]
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], wanted), len(src) - 1)
    index = order[pos]
    return np.where(keys[index] == wanted, index, len(src)).astype(np.int64)


def reverse_bond_index(
    src: np.ndarray, dst: np.ndarray, shift: np.ndarray, n_atoms: int
) -> np.ndarray:
    """For each bond ``(i, j, T)`` the index of its reverse ``(j, i, −T)``.

    Every bond within a cutoff has its reverse (same length), so this always exists.
    """
    rev = find_bonds(src, dst, shift, n_atoms, dst, src, -shift)
    if (rev == len(src)).any():
        raise RuntimeError("neighbour list is not symmetric: a bond has no reverse bond")
    return rev


def pair_index(src: np.ndarray, dst: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """MVN virtual nodes: the ordered atom pairs ``(i, j)`` that have at least one bond.

    Returns ``(edge_pair, pairs)``: the pair index of every bond and the ``(P, 2)`` pairs.
    """
    key = src * n_atoms + dst
    unique, edge_pair = np.unique(key, return_inverse=True)
    pairs = np.stack([unique // n_atoms, unique % n_atoms], axis=1).astype(np.int64)
    return edge_pair.astype(np.int64).reshape(-1), pairs
