"""The training domain of a model: which crystals its predictions can be trusted for.

A crystal is *in domain* when every element, the cell size and every nearest-neighbour
element pair (its bonding) occurred in the model's training data. Outside it the network
extrapolates and even its ensemble spread may be over-confident, so every prediction says
which it is, with the reason when it is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .graph import CrystalGraph

#: Neighbours within this factor of an atom's shortest bond count as its bonding partners.
BOND_TOLERANCE = 1.15


def bonded_pairs(graph: CrystalGraph) -> set[tuple[int, int]]:
    """Element pairs (Z_small, Z_large) of every atom's nearest neighbours in ``graph``."""
    if graph.n_edges == 0:
        return set()
    length = np.linalg.norm(graph.edge_vec, axis=1)
    shortest = np.full(graph.n_atoms, np.inf)
    np.minimum.at(shortest, graph.edge_src, length)
    near = length <= BOND_TOLERANCE * shortest[graph.edge_src]
    z_i, z_j = graph.numbers[graph.edge_src[near]], graph.numbers[graph.edge_dst[near]]
    return {(int(a), int(b)) for a, b in zip(np.minimum(z_i, z_j), np.maximum(z_i, z_j))}


@dataclass(frozen=True)
class TrainingDomain:
    """Elements, largest cell and nearest-neighbour element pairs seen in training."""

    elements: frozenset[int]
    max_atoms: int
    bond_pairs: frozenset[tuple[int, int]]

    @classmethod
    def from_graphs(cls, graphs: Iterable[CrystalGraph]) -> TrainingDomain:
        elements: set[int] = set()
        pairs: set[tuple[int, int]] = set()
        max_atoms = 0
        for g in graphs:
            elements |= {int(z) for z in g.numbers}
            pairs |= bonded_pairs(g)
            max_atoms = max(max_atoms, g.n_atoms)
        return cls(frozenset(elements), max_atoms, frozenset(pairs))

    def to_dict(self) -> dict:
        return {"elements": sorted(self.elements), "max_atoms": self.max_atoms,
                "bond_pairs": sorted([list(p) for p in self.bond_pairs])}

    @classmethod
    def from_dict(cls, d: dict) -> TrainingDomain:
        unknown = set(d) - {"elements", "max_atoms", "bond_pairs"}
        if unknown:
            raise ValueError(f"unknown training-domain keys {sorted(unknown)}; known: elements, max_atoms, bond_pairs")
        return cls(frozenset(int(z) for z in d["elements"]), int(d["max_atoms"]),
                   frozenset((int(a), int(b)) for a, b in d["bond_pairs"]))

    def why_outside(self, graph: CrystalGraph, primitive_atoms: Callable[[], int] | None = None) -> str | None:
        """``None`` when ``graph`` is in domain, else a short reason. The training cells were
        primitive, so a larger cell is compared by its primitive cell's atoms, ``primitive_atoms()``
        (asked only then: it needs a symmetry search), and a supercell of a trained-on size stays in."""
        from pymatgen.core.periodic_table import Element

        unseen = sorted({int(z) for z in graph.numbers} - self.elements)
        if unseen:
            return "elements never trained on: " + ", ".join(Element.from_Z(z).symbol for z in unseen)
        if graph.n_atoms > self.max_atoms:
            atoms = graph.n_atoms if primitive_atoms is None else primitive_atoms()
            if atoms > self.max_atoms:
                where = "atoms" if atoms == graph.n_atoms else "atoms in the primitive cell"
                return f"{atoms} {where}, above the largest training cell ({self.max_atoms})"
        pairs = sorted(bonded_pairs(graph) - self.bond_pairs)
        if pairs:
            names = ", ".join(f"{Element.from_Z(a).symbol}-{Element.from_Z(b).symbol}" for a, b in pairs[:4])
            return f"bonds never trained on: {names}"
        return None

    def contains(self, graph: CrystalGraph) -> bool:
        return self.why_outside(graph) is None
