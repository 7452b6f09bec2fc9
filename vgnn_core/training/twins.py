"""Structural twins: held-out materials whose crystal a training set already holds.

Two databases (or two ids of one database) can hold the same crystal: the same compound in the
same structure, relaxed a little differently. A split by id then leaks: a "held-out" material is
a near copy of a training one. :func:`find_twins` finds them with pymatgen's
:class:`~pymatgen.analysis.structure_matcher.StructureMatcher` (its default tolerances: primitive
cells, volumes scaled, so only the arrangement of atoms counts), comparing each held-out crystal
with the training crystals of the same reduced formula.

The committed ``twins.json`` lists, for every held-out split of the shipped models, the ids that
have a twin among the materials those models trained on (Petretto ``train`` and phonondb
``train``); ``vgnn evaluate --twin-free`` leaves them out. :func:`held_out_twins` finds them
again and :func:`write_twins` (``python -m vgnn_core.training.twins [PATH]``, with the data, about
an hour) rewrites the file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from pymatgen.core import Structure

TWINS_FILE = Path(__file__).with_name("twins.json")


def find_twins(held_out: Mapping[str, Structure], reference: Mapping[str, Structure]) -> dict[str, str]:
    """``{held-out id: reference id}`` for every held-out crystal that matches a reference crystal
    (same reduced formula, same structure within StructureMatcher's default tolerances)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    by_formula: dict[str, list[str]] = defaultdict(list)
    for rid, s in reference.items():
        by_formula[s.composition.reduced_formula].append(rid)
    twins = {}
    for hid, s in held_out.items():
        for rid in sorted(by_formula.get(s.composition.reduced_formula, ())):
            if matcher.fit(s, reference[rid]):
                twins[hid] = rid
                break
    return twins


def _phonondb_structures(ids: Iterable[str]) -> dict[str, Structure]:
    from .phonondb import load_samples

    return {s.material_id: s.graph.structure() for s in load_samples(list(ids), 6.0, 6.0)}


def _petretto_structures(ids: Iterable[str]) -> dict[str, Structure]:
    from .petretto import load_samples

    return {s.material_id: s.graph.structure() for s in load_samples(list(ids))}


def held_out_twins() -> dict[str, dict[str, dict[str, str]]]:
    """For each source and held-out split, the ids with a twin in the shipped models' training set
    (Petretto ``train`` ∪ phonondb ``train``), mapped to that twin's id. Needs the data."""
    from . import petretto, phonondb

    pet, pdb = petretto.load_split(), phonondb.load_split()
    reference = _petretto_structures(pet["train"]) | _phonondb_structures(pdb["train"])
    out: dict[str, dict[str, dict[str, str]]] = {"petretto2018": {}, "phonondb": {}}
    for split in ("val", "test", "reference_test_subset"):
        out["petretto2018"][split] = find_twins(_petretto_structures(pet[split]), reference)
    for split in ("val", "test"):
        out["phonondb"][split] = find_twins(_phonondb_structures(pdb[split]), reference)
    return out


def write_twins(path: str | Path | None = None) -> Path:
    """Rebuild the twin list (:func:`held_out_twins`) and write it as ``twins.json`` is written
    (indent 1, sorted keys), atomically; returns the path."""
    from ..files import write_text_atomic

    text = json.dumps(held_out_twins(), indent=1, sort_keys=True) + "\n"
    return write_text_atomic(path or TWINS_FILE, text)


def load_twins(path: str | Path | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """The committed twin list (see :func:`held_out_twins`)."""
    return json.loads(Path(path or TWINS_FILE).read_text())


def twin_free(ids: Iterable[str], source: str, split: str, path: str | Path | None = None) -> list[str]:
    """``ids`` without the held-out materials that have a training twin."""
    twins = load_twins(path).get(source, {}).get(split, {})
    return [i for i in ids if i not in twins]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild the held-out splits' twin list (needs the data).")
    parser.add_argument("path", nargs="?", default=str(TWINS_FILE), help="where to write it (default: %(default)s)")
    print(write_twins(parser.parse_args().path))
