"""Is a structure a bulk crystal? The periodicity of its network of atomic contacts.

A phonon database holds bulk crystals: structures whose atoms form one network that repeats
in all three directions. A molecule or a free atom in a box, a slab with vacuum and a chain in
vacuum are periodic only because the file gives them a cell; their vacuum gaps would be
predicted as zero-stiffness directions.

**The rule.** Two atoms are *in contact* when they are closer than
``max(CONTACT_DISTANCE, COVALENT_SCALE × (r_i + r_j))`` with ``r`` the covalent radii of
Cordero et al. (2008; pymatgen's ``CovalentRadius``). The 6 Å contact distance spans every
van der Waals gap of real layered and molecular crystals — graphite (3.35 Å between layers),
MoS₂ (3.5 Å S–S), black phosphorus, solid Xe (4.3 Å), Cs metal (5.3 Å) — so these stay 3-D,
while a vacuum of more than 6 Å is never bridged. The covalent term only widens the contact
for the largest atoms (Cs–Cs, Fr, Ra), whose bonds may approach 6 Å.

The dimensionality of each connected component of the contact network is the rank of the
lattice translations that join the component to its own periodic images (Larsen et al.,
Phys. Rev. Materials 3, 034003, 2019): 0 a molecule or cluster, 1 a chain, 2 a slab or layer,
3 a framework. A structure is accepted when every component is 3-D periodic; otherwise the
lowest-dimensional component names the cause: ``isolated atom`` (an atom in contact with
nothing, not even its own images), ``molecule``, ``chain`` or ``slab``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Structure

#: Atoms closer than this (Å) are in contact whatever their elements (spans van der Waals gaps).
CONTACT_DISTANCE = 6.0
#: Atoms closer than this multiple of their summed covalent radii are bonded (and in contact).
COVALENT_SCALE = 1.25

#: The name of a component of each periodic dimension (an atom alone is an ``isolated atom``).
DIMENSION_NAMES = {0: "molecule", 1: "chain", 2: "slab", 3: "framework"}


@dataclass(frozen=True)
class Periodicity:
    """The components of a structure's contact network and how many directions each repeats in.

    ``labels[i]`` is atom ``i``'s component; ``dimensions[c]`` the periodic dimension (0–3) of
    component ``c``; ``isolated`` the atoms in contact with no other atom nor any of their own
    images.
    """

    labels: np.ndarray
    dimensions: tuple[int, ...]
    isolated: tuple[int, ...]

    @property
    def dimension(self) -> int:
        """The lowest periodic dimension of any component (3: a bulk crystal)."""
        return min(self.dimensions) if self.dimensions else 0

    @property
    def is_bulk(self) -> bool:
        return self.dimension == 3

    def cause(self) -> str | None:
        """``None`` for a bulk crystal, else one line: what the structure is and why it is refused."""
        if self.is_bulk:
            return None
        if self.isolated:
            atoms = ", ".join(str(i) for i in self.isolated[:5]) + (" …" if len(self.isolated) > 5 else "")
            return (f"isolated atom: atom(s) {atoms} have no other atom within {CONTACT_DISTANCE:g} Å; "
                    "a crystal's atoms must all be connected in 3-D")
        kind = DIMENSION_NAMES[self.dimension]
        c = self.dimensions.index(self.dimension)
        n = int(np.count_nonzero(self.labels == c))
        shape = {"molecule": "a finite cluster", "chain": "a 1-D periodic chain", "slab": "a 2-D periodic layer"}[kind]
        return (f"{kind}: {n} atom(s) form {shape} with more than {CONTACT_DISTANCE:g} Å of vacuum around it; "
                "a crystal's atoms must be connected in 3-D")


def covalent_radii(numbers: np.ndarray) -> np.ndarray:
    """Covalent radii (Å, Cordero 2008) of atomic numbers; 1.5 Å for elements without one."""
    return _covalent_radius_table()[np.asarray(numbers, dtype=np.int64)]


@cache
def _covalent_radius_table() -> np.ndarray:
    """Covalent radius (Å) by atomic number, 0–118 (1.5 Å where Cordero gives none)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core import Element

    table = np.full(119, 1.5)
    for z in range(1, 119):
        table[z] = CovalentRadius.radius.get(Element.from_Z(z).symbol, 1.5)
    table.flags.writeable = False
    return table


@dataclass(frozen=True)
class NeighborPairs:
    """A structure's atom pairs that can be in contact (pymatgen's neighbour list without an atom's
    zero-shift pair with itself): ``src`` in the home cell, ``dst``'s image in cell ``shift``
    (integers), ``distance`` in Å; ``radii``: each atom's covalent radius (Å)."""

    src: np.ndarray
    dst: np.ndarray
    shift: np.ndarray
    distance: np.ndarray
    radii: np.ndarray


def _search_radius(radii: np.ndarray) -> float:
    """The contact distance, or more between the largest atoms (Å)."""
    return float(max(CONTACT_DISTANCE, COVALENT_SCALE * 2 * radii.max(initial=0.0)))


def contact_pairs(structure: Structure) -> NeighborPairs:
    """The pairs :func:`periodicity` needs: every pair that can be in contact (see the module doc).
    Validation checks them for overlapping atoms too, saving a second search."""
    numbers = np.fromiter((site.specie.Z for site in structure), dtype=np.int64, count=len(structure))
    radii = covalent_radii(numbers)
    src, dst, shift, dist = structure.get_neighbor_list(_search_radius(radii), exclude_self=True)
    return NeighborPairs(src, dst, np.rint(shift).astype(np.int64), dist, radii)


def contact_pairs_bound(structure: Structure) -> float:
    """An upper estimate of how many pairs :func:`contact_pairs` can list: every atom pair times
    the lattice translations T that can bring them within the search radius (|T| below the
    largest elements' radius plus twice the cell's edge sum, counted by volume). Atoms stacked on
    one point of a thin cell make it huge; an ordinary crystal's is below a few million."""
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    reach = _search_radius(_covalent_radius_table()) + 2 * float(np.linalg.norm(matrix, axis=1).sum())
    translations = 4 / 3 * np.pi * reach**3 / abs(float(np.linalg.det(matrix))) + 1
    return float(len(structure)) ** 2 * translations


def periodicity(structure: Structure, pairs: NeighborPairs | None = None) -> Periodicity:
    """The contact network's components and their periodic dimensions (see the module doc), from
    the structure's ``pairs`` (:func:`contact_pairs`, searched here when not given).

    The structure must already be sane (finite, non-degenerate lattice of a few hundred Å at
    most): the neighbour search runs to ``CONTACT_DISTANCE`` or more.
    """
    pairs = pairs if pairs is not None else contact_pairs(structure)
    src, dst, dist, radii = pairs.src, pairs.dst, pairs.distance, pairs.radii
    limit = np.maximum(CONTACT_DISTANCE, COVALENT_SCALE * (radii[src] + radii[dst]))
    near = (dist < limit) & (dist > 1e-8)  # two atoms on one site are refused as an overlap, not a contact
    return network_periodicity(len(structure), src[near], dst[near], pairs.shift[near])


def network_periodicity(n_atoms: int, src: np.ndarray, dst: np.ndarray, shift: np.ndarray) -> Periodicity:
    """Components and periodic dimensions of a periodic graph.

    Edges ``(src, dst, shift)`` join atom ``src`` in the home cell to the image of ``dst`` in
    the cell translated by the integer vector ``shift``. Each component is unfolded by a
    breadth-first search (every atom gets the cell of the image it is first reached in); an edge
    that closes a loop onto a *different* image of an atom is a lattice translation of that
    component, and the rank of those translations is the component's periodic dimension (any
    spanning tree gives the same rank). Components are numbered by their lowest atom.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1, 3)
    # both directions of every edge: atom a reaches the image of b in cell t
    a, b, t = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([shift, -shift])
    offset = np.zeros((n_atoms, 3), dtype=np.int64)  # the cell each atom is reached in
    seen = np.zeros(n_atoms, dtype=bool)
    labels = np.zeros(n_atoms, dtype=np.int64)
    if n_atoms:
        _unfold(0, a, b, t, seen, offset)  # a crystal: one search reaches every atom
    if not seen.all():  # several components: each searched over its own edges
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        adjacency = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n_atoms, n_atoms))
        labels = connected_components(adjacency, directed=False)[1].astype(np.int64)  # by lowest atom
        by = np.argsort(labels[a], kind="stable")
        a, b, t = a[by], b[by], t[by]
        bounds = np.searchsorted(labels[a], np.arange(labels.max() + 2))
        for c, root in enumerate(np.unique(labels, return_index=True)[1]):
            if not seen[root]:
                _unfold(int(root), a[bounds[c]:bounds[c + 1]], b[bounds[c]:bounds[c + 1]],
                        t[bounds[c]:bounds[c + 1]], seen, offset)
    n_comp = int(labels.max()) + 1 if n_atoms else 0
    loops = offset[src] + shift - offset[dst]
    if n_comp == 1:
        dimensions = (integer_rank(loops),)
    else:  # each component's loops, from one sort
        by = np.argsort(labels[src], kind="stable")
        bounds = np.searchsorted(labels[src][by], np.arange(n_comp + 1))
        dimensions = tuple(integer_rank(loops[by[bounds[c]:bounds[c + 1]]]) for c in range(n_comp))
    sizes = np.bincount(labels, minlength=n_comp)
    isolated = np.flatnonzero((sizes[labels] == 1) & (np.asarray(dimensions, dtype=np.int64)[labels] == 0))
    return Periodicity(labels=labels, dimensions=dimensions, isolated=tuple(int(i) for i in isolated))


def _unfold(root: int, a: np.ndarray, b: np.ndarray, t: np.ndarray, seen: np.ndarray, offset: np.ndarray) -> None:
    """Breadth-first search from ``root`` over the directed edges ``a → b`` (into cell ``t``):
    marks the atoms reached in ``seen`` and sets ``offset`` to the cell each is first reached in."""
    seen[root] = True
    frontier = np.zeros(len(seen), dtype=bool)
    level = np.array([root])
    while True:
        frontier[level] = True
        step = np.flatnonzero(frontier[a] & ~seen[b])
        frontier[level] = False
        if len(step) == 0:
            return
        reached, first = np.unique(b[step], return_index=True)  # one edge into each new atom
        edge = step[first]
        offset[reached] = offset[a[edge]] + t[edge]
        seen[reached] = True
        level = reached


def integer_rank(vectors: np.ndarray) -> int:
    """The rank (0–3) of a set of integer 3-vectors, exactly (integer cross and dot products;
    no floating-point tolerance): the number of independent lattice translations among them."""
    vectors = np.asarray(vectors)
    if vectors.size and not np.issubdtype(vectors.dtype, np.integer):
        raise TypeError(f"integer lattice translations expected, got {vectors.dtype}")
    if vectors.size and vectors.shape[-1] != 3:
        raise ValueError(f"3-vectors expected, got an array of shape {vectors.shape}")
    vectors = vectors.astype(np.int64).reshape(-1, 3)
    nonzero = vectors[np.any(vectors != 0, axis=1)]
    if len(nonzero) == 0:
        return 0
    crossed = np.cross(nonzero[0], nonzero)
    independent = np.flatnonzero(np.any(crossed != 0, axis=1))
    if len(independent) == 0:
        return 1
    normal = crossed[independent[0]]  # perpendicular to the plane of the first two
    return 3 if np.any(nonzero @ normal != 0) else 2
