"""The orbits of a crystal graph's atoms and bonds under the cell's exact symmetry operations.

An equivariant network gives an atom that an operation g = (R, t) maps onto another the other's
features rotated, h_g(a) = D(R) h_a, and a bond's force-constant block likewise,
Φ_g(b) = R Φ_b Rᵀ. So a network needs to run on one atom and one bond of each orbit (its
*representative*) only, and the rest are rotations of those: the same numbers up to float
round-off, with the crystal's symmetry exact. In a typical Materials Project cell there are ~3×
as many atoms as orbits and ~5× as many bonds. (A supercell uses one operation per rotation, its
lattice translations left out: :data:`~vgnn_core.crystal.symmetry.MAX_SITE_OPERATIONS`.)

:func:`graph_orbits` finds them from :class:`~vgnn_core.crystal.symmetry.SiteMaps` (the
operations that map the cell onto itself within :data:`~vgnn_core.crystal.symmetry.EXACT_TOLERANCE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .bonds import find_bonds
from .symmetry import SiteMaps, cartesian_rotations

if TYPE_CHECKING:
    from .graph import CrystalGraph

@dataclass(frozen=True)
class GraphOrbits:
    """Where each atom's and bond's network output comes from, for one crystal graph.

    Atom a's features are those of atom ``atom_representative[a]`` rotated by ``rotations[atom_rotation[a]]``;
    bond e's block is that of bond ``edge_representative[e]`` (transposed where ``edge_transposed[e]``)
    rotated by ``rotations[edge_rotation[e]]``: Φ_e = R Φ Rᵀ. A representative is its own orbit,
    with the identity; representative bonds are the first of their (bond, reverse) pair.
    """

    rotations: np.ndarray  # (n, 3, 3) Cartesian, orthogonal (float64); rotations[0] is the identity
    atom_representative: np.ndarray  # (m,) int
    atom_rotation: np.ndarray  # (m,) int, into rotations
    edge_representative: np.ndarray  # (E,) int
    edge_rotation: np.ndarray  # (E,) int
    edge_transposed: np.ndarray  # (E,) bool

    @property
    def n_atom_orbits(self) -> int:
        return int(np.count_nonzero(self.atom_representative == np.arange(len(self.atom_representative))))

    @property
    def n_bond_orbits(self) -> int:
        return int(np.count_nonzero(self.edge_representative == np.arange(len(self.edge_representative))))


def _first_min(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise minimum of (n, k) and the first row that holds it."""
    row = values.argmin(axis=0)
    return values[row, np.arange(values.shape[1])], row


def graph_orbits(graph: CrystalGraph, maps: SiteMaps | None) -> GraphOrbits | None:
    """The atom and bond orbits of ``graph`` under ``maps``, or ``None`` when they would save
    nothing (no bonds, or no operation but the identity).

    Each atom's representative is the lowest-numbered atom an operation maps it onto, each bond's
    the lowest-numbered bond (of either direction) an operation maps it onto; those
    representatives are then computed as themselves. An operation that would map a bond outside
    the graph (a bond at the cutoff, in a cell symmetric only to the tolerance) is not used for it.
    """
    if maps is None or len(maps) < 2 or graph.n_edges == 0:
        return None
    images, shifts, w = maps.images, maps.shifts, maps.rotations
    # rotation 0 is the identity (a representative's own); 1 + k is R_kᵀ, which takes operation k's
    # image of an atom or bond back to it (the site maps keep only rotations of the lattice)
    rotations = cartesian_rotations(graph.lattice, w)[0]
    table = np.concatenate([np.eye(3)[None], rotations.transpose(0, 2, 1)])

    # atoms: a → its lowest image
    atom_rep, g_atom = _first_min(images)
    atom_rotation = 1 + g_atom
    reps = np.unique(atom_rep)
    atom_rep[reps], atom_rotation[reps] = reps, 0

    # bonds (i, j, T) → (g(i), g(j), W T + L_j − L_i), looked up among the graph's bonds
    src, dst, shift, n_edges = graph.edge_src, graph.edge_dst, graph.edge_shift, graph.n_edges
    img_shift = shift @ w.transpose(0, 2, 1) + shifts[:, dst] - shifts[:, src]
    index = find_bonds(src, dst, shift, graph.n_atoms, images[:, src].ravel(), images[:, dst].ravel(),
                       img_shift.reshape(-1, 3)).reshape(len(w), n_edges)  # n_edges: not a bond of the graph
    reverse = np.append(graph.edge_reverse, n_edges)[index]
    edge_rep, g_edge = _first_min(np.minimum(index, reverse))
    cols = np.arange(n_edges)
    edge_transposed = reverse[g_edge, cols] < index[g_edge, cols]
    edge_rotation = 1 + g_edge
    reps = np.unique(edge_rep)
    edge_rep[reps], edge_rotation[reps], edge_transposed[reps] = reps, 0, False
    return GraphOrbits(rotations=table, atom_representative=atom_rep.astype(np.int64), atom_rotation=atom_rotation.astype(np.int64),
                       edge_representative=edge_rep.astype(np.int64), edge_rotation=edge_rotation.astype(np.int64),
                       edge_transposed=edge_transposed)
