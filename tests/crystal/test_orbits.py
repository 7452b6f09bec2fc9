"""Orbits of a crystal graph's atoms and bonds under the cell's exact symmetry operations."""

import numpy as np
import spglib
from pymatgen.core import Lattice, Structure
from pymatgen.io.phonopy import get_pmg_structure

from vgnn_core.crystal.crystal import as_crystal
from vgnn_core.crystal.graph import crystal_graph
from vgnn_core.crystal.orbits import graph_orbits
from vgnn_core.crystal.symmetry import SiteMaps, spglib_cell
from vgnn_core.io.phonopy import load_force_sets

#: the phonopy examples with force sets (Si has none)
EXAMPLES = ["Al2O3", "CaTiO3", "Cr", "MgB2", "MgO", "NaCl", "SiO2-HP", "SnO2", "TiO2-anatase", "ZnO"]


def check_orbits(graph):
    """Every atom and bond is its representative's image: same species, and the stored rotation
    takes the representative's bond vector (reversed for a transposed bond) onto its own."""
    o = graph.orbits
    atoms = np.arange(graph.n_atoms)
    assert (graph.numbers[o.atom_representative] == graph.numbers).all()
    assert (o.atom_representative[o.atom_representative] == o.atom_representative).all()  # representatives are their own
    rep = o.edge_representative
    assert (o.edge_representative[rep] == rep).all() and (graph.edge_reverse[rep] > rep).all()
    ends = np.where(o.edge_transposed[:, None], np.stack([graph.edge_dst[rep], graph.edge_src[rep]], 1),
                    np.stack([graph.edge_src[rep], graph.edge_dst[rep]], 1))
    assert (graph.numbers[ends] == graph.numbers[np.stack([graph.edge_src, graph.edge_dst], 1)]).all()
    r = o.rotations[o.edge_rotation]
    np.testing.assert_allclose(np.einsum("eab,eab->e", r @ r.transpose(0, 2, 1), np.eye(3)[None]), 3.0, atol=1e-12)
    source = np.where(o.edge_transposed[:, None], -graph.edge_vec[rep], graph.edge_vec[rep])
    np.testing.assert_allclose(np.einsum("eab,eb->ea", r, source), graph.edge_vec, atol=1e-5)
    # an atom's bonds are its representative's, rotated: the same multiset of lengths
    for a in atoms[o.atom_representative != atoms]:
        mine = np.sort(np.linalg.norm(graph.edge_vec[graph.edge_src == a], axis=1))
        theirs = np.sort(np.linalg.norm(graph.edge_vec[graph.edge_src == o.atom_representative[a]], axis=1))
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_diamond_has_one_atom_orbit_and_one_bond_orbit_per_neighbour_shell(si_primitive):
    for r_max, shells in ((4.0, 2), (6.0, 5)):  # 2.35, 3.84 | 4.50, 5.43, 5.92 Å
        graph = crystal_graph(as_crystal(si_primitive), r_max)
        check_orbits(graph)
        assert graph.orbits.n_atom_orbits == 1 and graph.orbits.n_bond_orbits == shells
    # a supercell: one operation per rotation (its lattice translations left out, which would
    # multiply the operations by the number of primitive cells), still exact images
    supercell = as_crystal(si_primitive * (3, 3, 3))
    assert supercell.symmetry.operations[0].shape[0] == 27 * 48 and len(supercell.site_maps) == 48
    graph = crystal_graph(supercell, 4.0)
    check_orbits(graph)
    assert graph.orbits.n_atom_orbits <= 10  # of 54 atoms


def test_phonopy_examples_orbits_are_images_of_their_representatives(phonopy_examples_dir):
    atoms = orbits = bonds = bond_orbits = 0
    for name in EXAMPLES:
        structure = get_pmg_structure(load_force_sets(phonopy_examples_dir / name).unitcell)
        graph = crystal_graph(as_crystal(structure), 6.0)
        check_orbits(graph)
        atoms, orbits = atoms + graph.n_atoms, orbits + graph.orbits.n_atom_orbits
        bonds, bond_orbits = bonds + graph.n_edges // 2, bond_orbits + graph.orbits.n_bond_orbits
        # spglib's own count of symmetry-distinct atoms
        dataset = spglib.get_symmetry_dataset(spglib_cell(structure), symprec=1e-5)
        assert graph.orbits.n_atom_orbits == len(set(dataset.equivalent_atoms.tolist()))
    assert bonds > 4 * bond_orbits and atoms > 2 * orbits


def test_a_cell_symmetric_only_to_the_analysis_tolerance_keeps_its_exact_operations(si_primitive):
    distorted = si_primitive.copy()
    distorted.translate_sites([1], [1e-4, 0, 0], frac_coords=False)  # within SYMPREC, not within 1e-5 Å
    crystal = as_crystal(distorted)
    assert crystal.symmetry.spacegroup_number == 227 and 1 < len(crystal.site_maps) < 48
    check_orbits(crystal_graph(crystal, 4.0))  # orbits of the subgroup that is exact (a 2-fold axis along x, ...)


def test_a_cell_without_symmetry_has_no_orbits(si_primitive):
    triclinic = Structure(Lattice.from_parameters(4.1, 4.7, 5.3, 81, 97, 103), ["Si", "O", "O"],
                          [[0.05, 0.11, 0.02], [0.37, 0.21, 0.58], [0.71, 0.64, 0.19]])
    crystal = as_crystal(triclinic)
    assert len(crystal.site_maps) == 1 and crystal_graph(crystal, 6.0).orbits is None
    graph = crystal_graph(as_crystal(si_primitive), 4.0, orbits=False)
    assert graph.orbits is None and graph_orbits(graph, None) is None


def test_mesh_rotations_and_inversion_come_from_the_same_site_maps(rocksalt_nacl, wurtzite_zno):
    nacl, zno = as_crystal(rocksalt_nacl), as_crystal(wurtzite_zno)
    assert len(nacl.site_maps) == 48 and len(nacl.mesh_rotations) == 48
    assert nacl.inversion is not None and zno.inversion is None
    maps = zno.site_maps
    lattice, frac = zno.structure.lattice.matrix, zno.structure.frac_coords
    for rot, trans, image, shift in zip(maps.rotations, maps.translations, maps.images, maps.shifts):
        np.testing.assert_allclose(frac @ rot.T + trans, frac[image] + shift, atol=1e-5 / np.linalg.norm(lattice, axis=1).min())


def test_a_point_group_that_is_not_closed_reduces_no_mesh(si_primitive):
    maps = as_crystal(si_primitive).site_maps
    assert len(maps.point_group()) == 48
    some = SiteMaps(maps.rotations[:7], maps.translations[:7], maps.images[:7], maps.shifts[:7])
    closed = {r.tobytes() for r in maps.rotations[:7]} >= {
        (a @ b).tobytes() for a in maps.rotations[:7] for b in maps.rotations[:7]}
    assert (some.point_group() is None) == (not closed) and not closed


def test_moyos_operations_are_spglibs_and_spglib_stands_in_where_moyo_gives_up(phonopy_examples_dir, si_primitive, monkeypatch):
    """The site maps read moyo's operations: the same space group as spglib's (each operation's
    translation compared modulo a lattice vector), for the examples and a supercell."""
    import moyopy

    from vgnn_core.crystal.symmetry import analyse_symmetry, space_group_operations
    from vgnn_core.settings import SYMPREC

    def operations(ops):
        return sorted((np.asarray(r, dtype=np.int64).tobytes(), tuple(np.round(np.mod(t + 1e-9, 1.0), 6) % 1.0))
                      for r, t in zip(*ops))

    cells = [get_pmg_structure(load_force_sets(phonopy_examples_dir / n).unitcell) for n in EXAMPLES]
    for structure in cells + [si_primitive * (2, 2, 1)]:
        ours = space_group_operations(structure)
        dataset = spglib.get_symmetry_dataset(spglib_cell(structure), symprec=SYMPREC)
        assert operations(ours) == operations((dataset.rotations, dataset.translations))

    def gives_up(*args, **kwargs):
        raise ValueError("Primitive symmetry search failed")

    class PanicException(BaseException):  # what pyo3 raises for a panic in Rust
        pass

    def panics(*args, **kwargs):
        raise PanicException("index out of bounds")

    for failure in (gives_up, panics):
        monkeypatch.setattr(moyopy, "MoyoDataset", failure)
        fallback = space_group_operations(si_primitive)
        assert operations(fallback) == operations(analyse_symmetry(si_primitive).operations) and len(fallback[0]) == 48


def test_a_supercell_whose_lattice_breaks_operations_keeps_the_rest_without_noise(rocksalt_nacl, caplog):
    """A 3×1×1 supercell of primitive NaCl: its lattice keeps 12 of the 48 rotations (as spglib
    counts), moyo leaves the others out without its warning reaching the log, and every kept
    operation maps the cell onto itself exactly."""
    import logging

    from vgnn_core.crystal.symmetry import space_group_operations

    supercell = rocksalt_nacl * (3, 1, 1)
    with caplog.at_level(logging.DEBUG, logger="moyo"):
        ops = space_group_operations(supercell)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    maps = as_crystal(supercell).site_maps
    assert len({r.tobytes() for r in maps.rotations}) == 12
    lattice, frac = supercell.lattice.matrix, supercell.frac_coords
    for rot, trans, image, shift in zip(maps.rotations, maps.translations, maps.images, maps.shifts):
        assert np.abs((frac @ rot.T + trans - frac[image] - shift) @ lattice).max() <= 1e-5
    assert len(ops[0]) >= len(maps)


def test_an_operation_must_map_the_lattice_onto_itself_too():
    """One atom at the origin is mapped onto itself by every rotation; in a cell 9e-4 Å from cubic
    (within the analysis tolerance) only the tetragonal ones keep the lattice, and only they are
    exact: the q-mesh is not reduced by rotations the lattice lacks."""
    for b, rotations in ((3.0, 48), (3.0009, 16)):
        crystal = as_crystal(Structure(Lattice.from_parameters(3.0, b, 3.0, 90, 90, 90), ["Cu"], [[0, 0, 0]]))
        assert len(crystal.site_maps) == rotations and len(crystal.mesh_rotations) == rotations
