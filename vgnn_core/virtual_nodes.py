"""Virtual nodes: where VGNN's answers live.

Messages flow from real atoms to virtual nodes only; real atoms never receive from them.

* **k-MVN** — one virtual node ``V_ij^T`` per bond ``(i, j, T)`` within ``r_max``; it yields the
  3×3 force-constant block ``Φ_ij(T)``. These are exactly the edges of the crystal graph, so
  no dense box of ``t·m²`` mostly-empty nodes is ever created.
* **MVN** — one virtual node ``V_ij`` per ordered atom pair with at least one bond; its
  block ``Σ_T Φ_ij(T)`` is the pair's block of ``D(Γ)``. The sum over the pair's bonds is
  linear, so a supercell's MVN nodes reproduce the primitive cell's commensurate ``D(q)``.
* **VVN** — ``3m`` virtual nodes evenly spaced on the cell's body diagonal, each
  receiving from every atom and from the other virtual nodes; one scalar (a frequency) each.
"""

from __future__ import annotations

import numpy as np
import torch


def _bond_keys(
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
    keys = _bond_keys(src, dst, shift, n_atoms, bound)
    rkeys = _bond_keys(dst, src, -shift, n_atoms, bound)
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


def vvn_positions(lattice: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Cartesian positions of the ``3m`` VVN nodes, evenly spaced on the body diagonal.

    Node ``k = 1 … 3m`` sits at ``k / (3m + 1) · (a + b + c)``.
    """
    n = 3 * n_atoms
    frac = torch.arange(1, n + 1, dtype=lattice.dtype, device=lattice.device) / (n + 1)
    return frac[:, None] * lattice.sum(dim=0)[None, :]


def vvn_edges(
    positions: torch.Tensor, lattice: torch.Tensor, vn_positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges into the VVN nodes of one crystal.

    Returns ``(atom_src, atom_vn, atom_vec, vn_vec)``: for every (atom, virtual node) pair the
    atom index, the virtual node index and the vector from the node to the nearest periodic
    image of the atom; and ``vn_vec[k, l]`` the vector from node ``k`` to node ``l``.
    """
    n_vn = vn_positions.shape[0]
    m = positions.shape[0]
    inv = torch.linalg.inv(lattice)
    diff = positions[None, :, :] - vn_positions[:, None, :]  # (n_vn, m, 3)
    frac = diff @ inv
    frac = frac - torch.round(frac)
    atom_vec = (frac @ lattice).reshape(-1, 3)
    atom_vn = torch.arange(n_vn, device=positions.device).repeat_interleave(m)
    atom_src = torch.arange(m, device=positions.device).repeat(n_vn)
    vn_vec = vn_positions[None, :, :] - vn_positions[:, None, :]
    return atom_src, atom_vn, atom_vec, vn_vec
