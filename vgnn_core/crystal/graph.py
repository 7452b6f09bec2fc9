"""The periodic crystal graph: atoms as nodes, every neighbour within ``r_max`` as an edge.

An edge ``e = (i, j, T)`` points from the centre atom ``i`` to the image of atom ``j`` in the
cell translated by the integer lattice vector ``T``; its vector is
``r_e = x_j + T·A − x_i`` (Å, ``A`` the lattice with vectors as rows). Messages in the real
graph flow ``j → i``. The same bonds are the k-MVN virtual nodes (see
:mod:`vgnn_core.crystal.bonds`), so the neighbour list is computed once per structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from pymatgen.core import Structure

from .bonds import pair_index, reverse_bond_index
from .crystal import Crystal
from .orbits import GraphOrbits, graph_orbits
from .structures import raise_on_overlap, structure_name

#: Default neighbour cutoff in Å (as in the VGNN paper).
DEFAULT_R_MAX = 4.0


@dataclass(frozen=True)
class CrystalGraph:
    """Graph of one crystal, in numpy, independent of any model."""

    name: str
    numbers: np.ndarray  # (m,) atomic numbers
    masses: np.ndarray  # (m,) amu
    positions: np.ndarray  # (m, 3) Cartesian, Å
    lattice: np.ndarray  # (3, 3) lattice vectors as rows, Å
    edge_src: np.ndarray  # (E,) centre atom i
    edge_dst: np.ndarray  # (E,) neighbour atom j
    edge_shift: np.ndarray  # (E, 3) integer lattice translation T of j's image
    edge_vec: np.ndarray  # (E, 3) r_e = x_j + T·A − x_i, Å
    edge_reverse: np.ndarray  # (E,) index of the reverse bond (j, i, −T)
    edge_pair: np.ndarray  # (E,) index of the ordered atom pair (i, j): the MVN virtual node
    pairs: np.ndarray  # (P, 2) the ordered atom pairs (i, j) with at least one bond
    r_max: float
    #: the atoms' and bonds' orbits under the cell's exact symmetry (:func:`~vgnn_core.crystal.orbits.graph_orbits`):
    #: a network then runs once per orbit; ``None``: on every atom and bond
    orbits: GraphOrbits | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    def structure(self) -> Structure:
        """The crystal as a pymatgen structure (Cartesian positions, Å; its masses are the
        elements' own)."""
        return Structure(self.lattice, self.numbers.tolist(), self.positions, coords_are_cartesian=True)


def build_graph(structure: Structure, r_max: float = DEFAULT_R_MAX) -> CrystalGraph:
    """Neighbour list of a (validated) structure within ``r_max`` Å.

    Uses pymatgen's compiled periodic neighbour search; all images of every atom, including
    an atom's own periodic images, are edges. Overlapping atoms raise
    :class:`~vgnn_core.crystal.structures.InvalidStructureError`.
    """
    src, dst, shift, dist = structure.get_neighbor_list(r_max, exclude_self=True)
    raise_on_overlap(structure_name(structure), src, dst, dist)
    src = src.astype(np.int64)
    dst = dst.astype(np.int64)
    shift = np.rint(shift).astype(np.int64).reshape(-1, 3)
    # Sort edges deterministically (by centre, neighbour, translation): batch results and
    # reverse-edge look-ups then never depend on the neighbour search's internal order.
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], dst, src))
    src, dst, shift = src[order], dst[order], shift[order]
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)
    positions = np.array(structure.cart_coords, dtype=np.float64)
    vec = positions[dst] + shift @ lattice - positions[src]
    m = len(structure)
    edge_pair, pairs = pair_index(src, dst, m)
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    masses = np.array([float(site.specie.atomic_mass) for site in structure], dtype=np.float64)
    return CrystalGraph(
        name=structure_name(structure),
        numbers=numbers,
        masses=masses,
        positions=positions,
        lattice=lattice,
        edge_src=src,
        edge_dst=dst,
        edge_shift=shift,
        edge_vec=vec,
        edge_reverse=reverse_bond_index(src, dst, shift, m),
        edge_pair=edge_pair,
        pairs=pairs,
        r_max=float(r_max),
    )


def crystal_graph(crystal: Crystal, r_max: float = DEFAULT_R_MAX, orbits: bool = True,
                  min_edges: int = 0) -> CrystalGraph:
    """:func:`build_graph` of a :class:`~vgnn_core.crystal.crystal.Crystal`, with its atoms' and
    bonds' orbits under the cell's exact symmetry (:func:`~vgnn_core.crystal.orbits.graph_orbits`)
    when ``orbits`` and the graph has at least ``min_edges`` edges: a network then runs once per
    orbit."""
    graph = build_graph(crystal.structure, r_max)
    if not orbits or graph.n_edges < min_edges:
        return graph
    return replace(graph, orbits=graph_orbits(graph, crystal.site_maps))


#: The array fields of a :class:`CrystalGraph` (``name`` and ``r_max`` are the others).
GRAPH_ARRAYS = ("numbers", "masses", "positions", "lattice", "edge_src", "edge_dst", "edge_shift",
                "edge_vec", "edge_reverse", "edge_pair", "pairs")


def graph_arrays(graph: CrystalGraph, prefix: str = "graph_") -> dict[str, np.ndarray]:
    """The graph as plain arrays (for ``np.savez``: no pickle needed to read it back), with
    its cutoff as ``r_max``."""
    return {f"{prefix}{k}": getattr(graph, k) for k in GRAPH_ARRAYS} | {"r_max": np.float64(graph.r_max)}


def graph_from_arrays(name: str, arrays, prefix: str = "graph_") -> CrystalGraph:
    """The inverse of :func:`graph_arrays`."""
    return CrystalGraph(name=name, r_max=float(arrays["r_max"]),
                        **{k: np.asarray(arrays[f"{prefix}{k}"]) for k in GRAPH_ARRAYS})


@dataclass
class GraphBatch:
    """Several crystal graphs in one set of tensors (indices offset per crystal)."""

    names: list[str]
    numbers: torch.Tensor  # (N,)
    masses: torch.Tensor  # (N,)
    positions: torch.Tensor  # (N, 3)
    lattices: torch.Tensor  # (B, 3, 3)
    n_atoms: torch.Tensor  # (B,)
    atom_offset: torch.Tensor  # (B,) first atom of each crystal
    edge_src: torch.Tensor  # (E,) global atom index
    edge_dst: torch.Tensor  # (E,)
    edge_shift: torch.Tensor  # (E, 3) integer
    edge_vec: torch.Tensor  # (E, 3)
    edge_reverse: torch.Tensor  # (E,) global edge index of the reverse bond
    edge_graph: torch.Tensor  # (E,) which crystal each edge belongs to
    edge_pair: torch.Tensor  # (E,) global pair index
    pairs: torch.Tensor  # (P, 2) global atom indices of each ordered pair
    n_edges: torch.Tensor  # (B,)
    n_pairs: torch.Tensor  # (B,)
    r_max: float
    orbits: BatchOrbits | None = None  # the graphs' symmetry orbits, where any has them

    @property
    def n_graphs(self) -> int:
        return len(self.names)

    def to(self, device: torch.device | str) -> GraphBatch:
        out = {}
        for k, v in self.__dict__.items():
            out[k] = v.to(device) if isinstance(v, (torch.Tensor, BatchOrbits)) else v
        return GraphBatch(**out)


@dataclass
class BatchOrbits:
    """:class:`~vgnn_core.crystal.orbits.GraphOrbits` of a batch, with global indices (a graph
    without orbits: every atom and bond its own, under the identity)."""

    rotations: torch.Tensor  # (n, 3, 3) float64, Cartesian; the batch's atoms and bonds index them
    atom_representative: torch.Tensor  # (N,)
    atom_rotation: torch.Tensor  # (N,)
    edge_representative: torch.Tensor  # (E,)
    edge_rotation: torch.Tensor  # (E,)
    edge_transposed: torch.Tensor  # (E,) bool
    #: what the batch's networks derive from these once and share (their Wigner matrices, by dtype)
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def representatives(self) -> torch.Tensor:
        """The representative atoms (global indices, ascending)."""
        return torch.nonzero(self.atom_representative == torch.arange(len(self.atom_representative), device=self.atom_representative.device))[:, 0]

    def to(self, device: torch.device | str) -> BatchOrbits:
        return BatchOrbits(**{k: v.to(device) for k, v in self.__dict__.items() if k != "derived"})


def _batch_orbits(graphs: Sequence[CrystalGraph], atom_off: np.ndarray, edge_off: np.ndarray,
                  device: torch.device | str) -> BatchOrbits | None:
    if all(g.orbits is None for g in graphs):
        return None
    rotations, parts = [np.eye(3)[None]], []  # rotation 0: the identity, for graphs without orbits
    n_rot = 1
    for g, a0, e0 in zip(graphs, atom_off, edge_off):
        o = g.orbits
        if o is None:
            parts.append((np.arange(g.n_atoms) + a0, np.zeros(g.n_atoms, dtype=np.int64),
                          np.arange(g.n_edges) + e0, np.zeros(g.n_edges, dtype=np.int64),
                          np.zeros(g.n_edges, dtype=bool)))
            continue
        parts.append((o.atom_representative + a0, o.atom_rotation + n_rot, o.edge_representative + e0, o.edge_rotation + n_rot,
                      o.edge_transposed))
        rotations.append(o.rotations)
        n_rot += len(o.rotations)
    cols = [np.concatenate(c) for c in zip(*parts)]

    def t_long(a):
        return torch.as_tensor(a, dtype=torch.long, device=device)

    return BatchOrbits(
        rotations=torch.as_tensor(np.concatenate(rotations), dtype=torch.float64, device=device),
        atom_representative=t_long(cols[0]), atom_rotation=t_long(cols[1]),
        edge_representative=t_long(cols[2]), edge_rotation=t_long(cols[3]),
        edge_transposed=torch.as_tensor(cols[4], dtype=torch.bool, device=device),
    )


def collate(
    graphs: Sequence[CrystalGraph],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> GraphBatch:
    """Stack graphs into one :class:`GraphBatch` with offset indices."""
    if not graphs:
        raise ValueError("collate() needs at least one graph")
    r_max = {g.r_max for g in graphs}
    if len(r_max) != 1:
        raise ValueError(f"graphs built with different r_max {sorted(r_max)}")
    n_atoms = np.array([g.n_atoms for g in graphs])
    n_edges = np.array([g.n_edges for g in graphs])
    n_pairs = np.array([g.pairs.shape[0] for g in graphs])
    atom_off = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    edge_off = np.concatenate([[0], np.cumsum(n_edges)[:-1]])
    pair_off = np.concatenate([[0], np.cumsum(n_pairs)[:-1]])

    def cat(arrays):
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    def t_long(a):
        return torch.as_tensor(a, dtype=torch.long, device=device)

    def t_float(a):
        return torch.as_tensor(a, dtype=dtype, device=device)

    return GraphBatch(
        names=[g.name for g in graphs],
        numbers=t_long(cat([g.numbers for g in graphs])),
        masses=t_float(cat([g.masses for g in graphs])),
        positions=t_float(cat([g.positions for g in graphs])),
        lattices=t_float(np.stack([g.lattice for g in graphs])),
        n_atoms=t_long(n_atoms),
        atom_offset=t_long(atom_off),
        edge_src=t_long(cat([g.edge_src + o for g, o in zip(graphs, atom_off)])),
        edge_dst=t_long(cat([g.edge_dst + o for g, o in zip(graphs, atom_off)])),
        edge_shift=t_long(cat([g.edge_shift for g in graphs])),
        edge_vec=t_float(cat([g.edge_vec for g in graphs])),
        edge_reverse=t_long(cat([g.edge_reverse + o for g, o in zip(graphs, edge_off)])),
        edge_graph=t_long(np.repeat(np.arange(len(graphs)), n_edges)),
        edge_pair=t_long(cat([g.edge_pair + o for g, o in zip(graphs, pair_off)])),
        pairs=t_long(cat([g.pairs.reshape(-1, 2) + o for g, o in zip(graphs, atom_off)])),
        n_edges=t_long(n_edges),
        n_pairs=t_long(n_pairs),
        r_max=r_max.pop(),
        orbits=_batch_orbits(graphs, atom_off, edge_off, device),
    )
