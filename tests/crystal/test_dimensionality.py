"""Bulk crystals are 3-D periodic in their contact network; molecules, free atoms, slabs and chains
in vacuum are not, and are refused with the cause named."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from vgnn_core import InvalidStructureError, as_structure
from vgnn_core.crystal.dimensionality import (
    CONTACT_DISTANCE,
    integer_rank,
    network_periodicity,
    periodicity,
)


def graphite(c: float = 6.70) -> Structure:
    """AB graphite; its layers are c/2 apart, atom over atom."""
    return Structure(Lattice.hexagonal(2.46, c), ["C"] * 4,
                     [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])


def mos2_bulk() -> Structure:
    return Structure.from_spacegroup("P6_3/mmc", Lattice.hexagonal(3.16, 12.29), ["Mo", "S"],
                                     [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]])


def mos2_monolayer(vacuum_c: float = 25.0) -> Structure:
    """One S–Mo–S layer (S 1.56 Å above and below Mo) in a cell ``vacuum_c`` Å tall."""
    z = 1.56 / vacuum_c
    return Structure(Lattice.hexagonal(3.16, vacuum_c), ["Mo", "S", "S"],
                     [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + z], [2 / 3, 1 / 3, 0.5 - z]])


BULK = {
    "graphite (3.35 Å between layers)": graphite(),
    "2H-MoS2 (van der Waals gap)": mos2_bulk(),
    "black phosphorus": Structure.from_spacegroup("Cmce", Lattice.orthorhombic(3.31, 10.48, 4.38), ["P"],
                                                  [[0, 0.1017, 0.0806]]),
    "fcc Xe (4.3 Å contacts)": Structure(Lattice.cubic(6.13), ["Xe"] * 4,
                                         [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    "bcc Cs primitive cell (5.3 Å)": Structure(Lattice.cubic(6.14), ["Cs"] * 2,
                                               [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure(),
    "solid H2 (a molecular crystal)": Structure(Lattice.hexagonal(3.78, 6.16), ["H"] * 4,
                                                [[1 / 3, 2 / 3, 0.19], [1 / 3, 2 / 3, 0.31],
                                                 [2 / 3, 1 / 3, 0.69], [2 / 3, 1 / 3, 0.81]]),
}


@pytest.mark.parametrize("name", list(BULK))
def test_bulk_crystals_including_van_der_waals_ones_are_3d(name):
    p = periodicity(BULK[name])
    assert p.is_bulk and p.cause() is None and set(p.dimensions) == {3}, (name, p)
    as_structure(BULK[name], name=name)  # accepted by the validation


def test_molecule_in_a_box_is_refused():
    h2 = Structure(Lattice.cubic(20), ["H", "H"], [[0, 0, 0], [0.74 / 20, 0, 0]])
    p = periodicity(h2)
    assert p.dimensions == (0,) and p.isolated == ()
    with pytest.raises(InvalidStructureError, match=r"^H2-in-box: molecule: 2 atom\(s\) form a finite cluster"):
        as_structure(h2, name="H2-in-box")


def test_free_atoms_are_refused_and_named():
    with pytest.raises(InvalidStructureError, match=r"Ar: isolated atom: atom\(s\) 0 have no other atom within 6 Å"):
        as_structure(Structure(Lattice.cubic(15), ["Ar"], [[0, 0, 0]]), name="Ar")
    h2_and_atom = Structure(Lattice.cubic(20), ["H", "H", "Ar"], [[0, 0, 0], [0.037, 0, 0], [0.5, 0.5, 0.5]])
    p = periodicity(h2_and_atom)  # the free atom is named first
    assert p.dimensions == (0, 0) and p.isolated == (2,)
    assert p.cause().startswith("isolated atom: atom(s) 2 ")
    # an atom far from a layer but near its own images is a layer of its own: a slab
    slab_and_atom = mos2_monolayer()
    slab_and_atom.append("Ar", [0, 0, 0.0])  # 12.5 Å from the MoS2 layer, 3.16 Å from its images
    assert periodicity(slab_and_atom).dimensions == (2, 2)


@pytest.mark.parametrize("structure, kind", [
    (mos2_monolayer(), "slab"),
    (Structure(Lattice.hexagonal(2.46, 20), ["C", "C"], [[0, 0, 0.5], [1 / 3, 2 / 3, 0.5]]), "slab"),
    (Structure(Lattice.tetragonal(15, 2.56), ["C", "C"], [[0.5, 0.5, 0], [0.5, 0.5, 0.5]]), "chain"),
    (Structure(Lattice.tetragonal(15, 2.5), ["Cu"], [[0, 0, 0]]), "chain"),
])
def test_slabs_and_chains_in_vacuum_are_refused(structure, kind):
    p = periodicity(structure)
    assert p.dimension == {"slab": 2, "chain": 1}[kind] and p.isolated == ()
    with pytest.raises(InvalidStructureError, match=rf"^x: {kind}: {len(structure)} atom\(s\) form a {p.dimension}-D"):
        as_structure(structure, name="x")


def test_the_gap_threshold_is_the_contact_distance():
    """Graphite pulled apart: 3-D while its layers are closer than 6 Å, a slab beyond."""
    assert CONTACT_DISTANCE == 6.0
    assert periodicity(graphite(c=2 * 5.9)).dimension == 3
    assert periodicity(graphite(c=2 * 6.1)).dimension == 2
    assert periodicity(mos2_monolayer(vacuum_c=3.12 + 5.9)).dimension == 3  # S–S gap 5.9 Å
    assert periodicity(mos2_monolayer(vacuum_c=3.12 + 8.0)).dimension == 2


def test_network_rank_counts_independent_translations():
    one = np.zeros(1, dtype=int)
    for shifts, dim in (([[1, 0, 0]], 1), ([[1, 0, 0], [0, 1, 0]], 2), ([[1, 1, 0], [2, 2, 0]], 1),
                        ([[1, 0, 0], [0, 1, 0], [1, 1, 1]], 3)):
        shifts = np.array(shifts)
        p = network_periodicity(1, np.repeat(one, len(shifts)), np.repeat(one, len(shifts)), shifts)
        assert p.dimensions == (dim,)
    # two atoms joined in the home cell and across +x: a chain; a third atom alone
    p = network_periodicity(3, np.array([0, 1]), np.array([1, 0]), np.array([[0, 0, 0], [1, 0, 0]]))
    assert p.labels[0] == p.labels[1] != p.labels[2] and sorted(p.dimensions) == [0, 1] and p.isolated == (2,)
    # a loop through a tree edge listed only in the reverse direction still unfolds right
    p = network_periodicity(2, np.array([1, 1]), np.array([0, 0]), np.array([[0, 0, 0], [0, 0, 1]]))
    assert p.dimensions == (1,)


def test_network_periodicity_does_not_depend_on_atom_or_edge_order():
    """Whatever spanning tree the search unfolds along, the components and their dimensions are
    the graph's own: renumbering the atoms and shuffling the edges (each possibly listed in the
    other direction) changes nothing but the labels' names. Components are numbered by their
    lowest atom."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        n, e = int(rng.integers(1, 10)), int(rng.integers(0, 20))
        src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
        shift = rng.integers(-1, 2, (e, 3)) * (rng.random((e, 1)) < 0.6)
        p = network_periodicity(n, src, dst, shift)
        assert p.labels[0] == 0 and np.all(np.diff(np.unique(p.labels, return_index=True)[1]) > 0)
        perm = rng.permutation(n)  # atom i becomes perm[i]
        order = rng.permutation(e)
        flip = rng.random(e) < 0.5
        s2, d2 = np.where(flip, dst, src)[order], np.where(flip, src, dst)[order]
        t2 = np.where(flip[:, None], -shift, shift)[order]
        q = network_periodicity(n, perm[s2], perm[d2], t2)
        same = {(a, b) for a, b in zip(p.labels, q.labels[perm])}
        assert len(same) == len(p.dimensions) == len(q.dimensions)  # the same partition
        assert all(p.dimensions[a] == q.dimensions[b] for a, b in same)
        assert sorted(perm[list(p.isolated)].tolist()) == list(q.isolated)


def test_integer_rank_is_exact_and_agrees_with_linear_algebra():
    assert integer_rank(np.zeros((0, 3))) == 0 and integer_rank([[0, 0, 0]]) == 0
    # nearly parallel translations are independent: no floating-point tolerance decides
    assert integer_rank([[1000, 0, 0], [1000, 1, 0]]) == 2
    assert integer_rank([[1000, 0, 0], [0, 1000, 0], [1000, 1000, 1]]) == 3
    assert integer_rank([[2, -4, 6], [-1, 2, -3], [0, 0, 0]]) == 1
    rng = np.random.default_rng(7)
    for _ in range(300):
        basis = rng.integers(-3, 4, size=(rng.integers(1, 4), 3))
        vectors = rng.integers(-2, 3, size=(rng.integers(1, 9), len(basis))) @ basis  # in basis's span
        assert integer_rank(vectors) == np.linalg.matrix_rank(vectors.astype(float))
    with pytest.raises(TypeError, match="integer"):
        integer_rank([[0.5, 0, 0]])  # would truncate to rank 0
    with pytest.raises(ValueError, match="3-vectors"):
        integer_rank(np.ones((2, 6), dtype=int))
