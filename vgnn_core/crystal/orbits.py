"""The orbits of a crystal graph's atoms and bonds under the cell's exact symmetry operations.

An equivariant network gives an atom that an operation g = (R, t) maps onto another the other's
features rotated, h_g(a) = D(R) h_a, and a bond's force-constant block likewise,
Φ_g(b) = R Φ_b Rᵀ. So a network needs to run on one atom and one bond of each orbit (its
*representative*) only, and the rest are rotations of those: the same numbers up to float
round-off, with the crystal's symmetry exact. In a typical Materials Project cell there are ~3×
as many atoms as orbits and ~5× as many bonds.

:func:`graph_orbits` finds them from :class:`~vgnn_core.crystal.symmetry.SiteMaps` (the
operations that map the cell onto itself within :data:`~vgnn_core.crystal.symmetry.EXACT_TOLERANCE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bonds import bond_keys
from .symmetry import SiteMaps

#: an operation's Cartesian rotation is used only when it is orthogonal within this (the lattice
#: itself is then symmetric under it to ~this relative error)
ORTHOGONALITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class GraphOrbits:
    """Where each atom's and bond's network output comes from, for one crystal graph.

    Atom a's features are those of atom ``atom_orbit[a]`` rotated by ``rotations[atom_rotation[a]]``;
    bond e's block is that of bond ``edge_orbit[e]`` (transposed where ``edge_transposed[e]``)
    rotated by ``rotations[edge_rotation[e]]``: Φ_e = R Φ Rᵀ. A representative is its own orbit,
    with the identity; representative bonds are the first of their (bond, reverse) pair.
    """

    rotations: np.ndarray  # (n, 3, 3) Cartesian, orthogonal (float64)
    atom_orbit: np.ndarray  # (m,) int
    atom_rotation: np.ndarray  # (m,) int, into rotations
    edge_orbit: np.ndarray  # (E,) int
    edge_rotation: np.ndarray  # (E,) int
    edge_transposed: np.ndarray  # (E,) bool

    @property
    def n_atom_orbits(self) -> int:
        return int(np.count_nonzero(self.atom_orbit == np.arange(len(self.atom_orbit))))

    @property
    def n_bond_orbits(self) -> int:
        return int(np.count_nonzero(self.edge_orbit == np.arange(len(self.edge_orbit))))


def cartesian_rotations(lattice: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Cartesian form R = Aᵀ W A⁻ᵀ of fractional rotations W (n, 3, 3) for a lattice A with
    vectors as rows, made exactly orthogonal, and which of them were orthogonal to begin with
    (within :data:`ORTHOGONALITY_TOLERANCE`): (n, 3, 3) float64, (n,) bool."""
    a = np.asarray(lattice, dtype=float)
    cart = a.T @ np.asarray(rotations, dtype=float) @ np.linalg.inv(a.T)
    u, s, vt = np.linalg.svd(cart)
    return u @ vt, np.abs(s - 1.0).max(axis=1) <= ORTHOGONALITY_TOLERANCE


def _first_min(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise minimum of (n, k) and the first row that holds it."""
    row = values.argmin(axis=0)
    return values[row, np.arange(values.shape[1])], row


def graph_orbits(graph, maps: SiteMaps | None) -> GraphOrbits | None:
    """The atom and bond orbits of ``graph`` (a :class:`~vgnn_core.crystal.graph.CrystalGraph`)
    under ``maps``, or ``None`` when they would save nothing (no operation but the identity).

    Each atom's representative is the lowest-numbered atom any operation maps it onto, each bond's
    the lowest-numbered bond (of either direction) any operation maps it onto; those
    representatives are then computed as themselves. An operation that would map a bond outside
    the graph (a bond at the cutoff, in a cell symmetric only to the tolerance) is not used for it.
    """
    if maps is None or graph.n_edges == 0:
        return None
    rotations, orthogonal = cartesian_rotations(graph.lattice, maps.rotations)
    usable = np.flatnonzero(orthogonal)
    if len(usable) < 2:
        return None
    images, shifts, w = maps.images[usable], maps.shifts[usable], maps.rotations[usable]
    inverse = rotations[usable].transpose(0, 2, 1)  # what takes an image's output back: R_gᵀ

    # atoms: a → its lowest image; a's features are the representative's under R_gᵀ
    m = graph.n_atoms
    atom_orbit, g_atom = _first_min(images)
    centres = np.zeros(m, dtype=bool)
    centres[atom_orbit] = True
    atom_rotation = g_atom.copy()
    atom_orbit[centres], atom_rotation[centres] = np.flatnonzero(centres), -1  # -1: the identity, below

    # bonds (i, j, T) → (g(i), g(j), W T + L_j − L_i), looked up among the graph's bonds
    src, dst, shift = graph.edge_src, graph.edge_dst, graph.edge_shift
    n_edges = len(src)
    img_src, img_dst = images[:, src], images[:, dst]
    img_shift = shift @ w.transpose(0, 2, 1) + shifts[:, dst] - shifts[:, src]
    bound = int(max(np.abs(shift).max(initial=0), np.abs(img_shift).max(initial=0)))
    keys = bond_keys(src, dst, shift, m, bound)
    order = np.argsort(keys)
    img_keys = bond_keys(img_src.ravel(), img_dst.ravel(), img_shift.reshape(-1, 3), m, bound)
    pos = np.minimum(np.searchsorted(keys[order], img_keys), max(n_edges - 1, 0))
    found = keys[order][pos] == img_keys if n_edges else np.zeros(0, dtype=bool)
    index = np.where(found, order[pos], n_edges).reshape(len(usable), n_edges)  # n_edges: not in the graph
    reverse = np.append(graph.edge_reverse, n_edges)[index]
    candidate = np.minimum(index, reverse)
    edge_orbit, g_edge = _first_min(candidate)
    cols = np.arange(n_edges)
    edge_transposed = reverse[g_edge, cols] < index[g_edge, cols]
    representative = np.zeros(n_edges, dtype=bool)
    representative[edge_orbit] = True
    edge_rotation = g_edge.copy()
    edge_orbit[representative] = np.flatnonzero(representative)
    edge_rotation[representative] = -1
    edge_transposed[representative] = False

    table = np.concatenate([inverse, np.eye(3)[None]])  # the last: the identity (index -1)
    return GraphOrbits(
        rotations=table,
        atom_orbit=atom_orbit.astype(np.int64),
        atom_rotation=np.where(atom_rotation < 0, len(table) - 1, atom_rotation).astype(np.int64),
        edge_orbit=edge_orbit.astype(np.int64),
        edge_rotation=np.where(edge_rotation < 0, len(table) - 1, edge_rotation).astype(np.int64),
        edge_transposed=edge_transposed,
    )
