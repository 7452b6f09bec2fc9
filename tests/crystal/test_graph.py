"""The crystal graph against a brute-force neighbour search."""

import itertools

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from vgnn_core import build_graph, collate


def brute_force_bonds(structure, r_max, reach=3):
    lat = structure.lattice.matrix
    pos = structure.cart_coords
    bonds = set()
    for i, j in itertools.product(range(len(structure)), repeat=2):
        for t in itertools.product(range(-reach, reach + 1), repeat=3):
            d = np.linalg.norm(pos[j] + np.array(t) @ lat - pos[i])
            if 1e-8 < d < r_max:
                bonds.add((i, j, *t))
    return bonds


def test_silicon_shells(si_primitive):
    g = build_graph(si_primitive, r_max=4.0)
    # diamond: 4 neighbours at 2.35 Å and 12 at 3.84 Å
    counts = np.bincount(g.edge_src)
    assert counts.tolist() == [16, 16]
    lengths = np.sort(np.linalg.norm(g.edge_vec, axis=1))
    assert lengths[:8] == pytest.approx(np.full(8, 5.43 * np.sqrt(3) / 4))


def test_triclinic_matches_brute_force():
    rng = np.random.default_rng(0)
    lattice = Lattice.from_parameters(3.1, 3.6, 4.2, 71, 83, 104)
    s = Structure(lattice, ["Mg", "O", "Si"], rng.random((3, 3)))
    g = build_graph(s, r_max=4.5)
    ours = {(int(i), int(j), *map(int, t)) for i, j, t in zip(g.edge_src, g.edge_dst, g.edge_shift)}
    assert ours == brute_force_bonds(s, 4.5)
    # edge vectors, reverse bonds and pairs are consistent
    vec = s.cart_coords[g.edge_dst] + g.edge_shift @ s.lattice.matrix - s.cart_coords[g.edge_src]
    np.testing.assert_allclose(g.edge_vec, vec, atol=1e-12)
    r = g.edge_reverse
    np.testing.assert_array_equal(g.edge_src[r], g.edge_dst)
    np.testing.assert_array_equal(g.edge_shift[r], -g.edge_shift)
    np.testing.assert_allclose(g.edge_vec[r], -g.edge_vec, atol=1e-12)
    np.testing.assert_array_equal(g.pairs[g.edge_pair], np.stack([g.edge_src, g.edge_dst], 1))


def test_small_cell_has_self_images():
    s = Structure(Lattice.cubic(2.5), ["Po"], [[0, 0, 0]])
    g = build_graph(s, r_max=4.0)
    # neighbours within 4 Å on a 2.5 Å cubic lattice: 6 + 12 (3.54 Å)
    assert g.n_edges == 18
    assert (g.edge_dst == 0).all() and g.pairs.tolist() == [[0, 0]]


def test_collate_offsets(si_primitive, perovskite_srtio3):
    graphs = [build_graph(si_primitive), build_graph(perovskite_srtio3)]
    b = collate(graphs)
    assert b.n_graphs == 2 and b.numbers.shape[0] == 7
    assert b.edge_src.shape[0] == graphs[0].n_edges + graphs[1].n_edges
    second = slice(graphs[0].n_edges, None)
    assert (b.edge_src[second] >= 2).all() and (b.edge_graph[second] == 1).all()
    assert (b.edge_reverse[second] >= graphs[0].n_edges).all()


def test_bond_lookup_by_table_and_by_sorting_agree(monkeypatch, si_primitive):
    """``find_bonds`` finds every bond of a graph (its reverse too) and reports a bond that is not
    there as E, the same whether it uses a table of every key or sorts them."""
    from vgnn_core.crystal import bonds

    g = build_graph(si_primitive * (2, 1, 1), 6.0)
    rng = np.random.default_rng(0)
    q = rng.integers(0, g.n_edges, 500)
    q_shift = g.edge_shift[q].copy()
    q_shift[::7] += 3  # not bonds of the graph
    args = (g.edge_src, g.edge_dst, g.edge_shift, g.n_atoms, g.edge_src[q], g.edge_dst[q], q_shift)
    table = bonds.find_bonds(*args)
    monkeypatch.setattr(bonds, "DENSE_LOOKUP_MAX", 0)
    sorting = bonds.find_bonds(*args)
    np.testing.assert_array_equal(table, sorting)
    expected = np.where(np.arange(500) % 7 == 0, g.n_edges, q)
    np.testing.assert_array_equal(table, expected)
    assert (bonds.reverse_bond_index(g.edge_src, g.edge_dst, g.edge_shift, g.n_atoms) == g.edge_reverse).all()
    # a bond given twice is found at its first index, and float translations work, either way
    src, dst, shift = np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([[0, 0, 1], [0, 0, 1], [0, 0, -1]])
    for limit in (bonds.DENSE_LOOKUP_MAX, 0):
        monkeypatch.setattr(bonds, "DENSE_LOOKUP_MAX", limit)
        assert bonds.find_bonds(src, dst, shift, 2, np.array([0, 1]), np.array([1, 0]), np.array([[0, 0, 1], [0, 0, 1]])).tolist() == [0, 3]
        assert bonds.find_bonds(src, dst, shift.astype(float), 2, src, dst, shift.astype(float)).tolist() == [0, 0, 2]
