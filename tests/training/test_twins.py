"""Structural twins between held-out and training materials."""

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from vgnn_core.crystal.graph import build_graph
from vgnn_core.training import petretto, phonondb
from vgnn_core.training import twins as twins_module
from vgnn_core.training.twins import TWINS_FILE, find_twins, load_twins, twin_free


def _rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_same_crystal_relaxed_differently_is_a_twin_other_polymorphs_are_not():
    primitive = _rocksalt(5.64).get_primitive_structure()
    rotated = primitive.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37))
    strained = _rocksalt(5.70)  # conventional cell, 1 % larger: the same crystal
    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = _rocksalt(6.29)
    kcl.replace_species({"Na": "K"})
    reference = {"train-nacl": primitive, "train-kcl": kcl}
    held_out = {"a": rotated, "b": strained, "c": cscl, "d": _rocksalt(6.29)}
    assert find_twins(held_out, reference) == {"a": "train-nacl", "b": "train-nacl", "d": "train-nacl"}


def test_crystal_graph_structure_round_trip():
    s = _rocksalt(5.64).get_primitive_structure()
    back = build_graph(s, r_max=4.0).structure()
    np.testing.assert_allclose(back.lattice.matrix, s.lattice.matrix)
    np.testing.assert_allclose(back.cart_coords, s.cart_coords, atol=1e-12)
    assert back.species == s.species


def test_committed_twin_list_matches_the_splits(petretto_archive):
    twins = load_twins()
    pet, pdb = petretto.load_split(), phonondb.load_split()
    train = set(pet["train"]) | set(pdb["train"])
    for source, split_ids in (("petretto2018", pet), ("phonondb", pdb)):
        for split, found in twins[source].items():
            assert set(found) <= set(split_ids[split])  # held-out ids of that split
            assert set(found.values()) <= train  # each twin is a training material
            free = twin_free(split_ids[split], source, split)
            assert len(free) == len(split_ids[split]) - len(found)


def test_write_twins_reproduces_the_committed_file(tmp_path, monkeypatch):
    """`python -m vgnn_core.training.twins` rewrites twins.json byte for byte from what
    :func:`held_out_twins` finds (here: the committed list itself, without the hour of matching)."""
    monkeypatch.setattr(twins_module, "held_out_twins", load_twins)
    written = twins_module.write_twins(tmp_path / "twins.json")
    assert written.read_bytes() == TWINS_FILE.read_bytes()
