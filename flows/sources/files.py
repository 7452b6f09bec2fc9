"""Structure files: a folder of CIF / POSCAR / extxyz files (``dir:PATH``) and the IZA zeolite
frameworks (``zeolites[:PATH]``), which are conventional cells reduced to primitive ones.

Every structure in the folder becomes an input with an id unique by construction (see
:func:`directory_source`); nothing is dropped without a failure row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pymatgen.core import Structure

from vgnn_core.settings import SYMPREC, shared_data_dir

from .item import EmptySourceError, SourceItem

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz")


def is_structure_file_name(name: str) -> bool:
    """A CIF / POSCAR / extxyz file name (by suffix, or a ``POSCAR*`` / ``CONTCAR*`` name)."""
    return Path(name).suffix.lower() in STRUCTURE_SUFFIXES or name.startswith(("POSCAR", "CONTCAR"))


def file_ids(names: list[str]) -> dict[str, str]:
    """The base material id of each file name, unique by construction and independent of order:
    the name without its suffix (``NaCl.cif`` → ``NaCl``), but the whole name for ``POSCAR*`` /
    ``CONTCAR*`` files (``POSCAR.a``) and for every file whose stem another file shares
    (``dup.cif`` and ``dup.vasp``). Unprintable characters (a newline in a file name) are written
    as escape sequences, so an id is one line in logs and failure reports; should that make two
    whole names alike, they get ``#1``, ``#2``… in name order."""
    from vgnn_core.crystal.structures import one_line

    whole = {n: one_line(n) for n in names}
    ids = {n: whole[n] if n.startswith(("POSCAR", "CONTCAR")) or not Path(n).suffix else one_line(Path(n).stem)
           for n in names}
    while True:
        counts = Counter(ids.values())
        clashing = [n for n, i in ids.items() if counts[i] > 1 and i != whole[n]]
        if not clashing:
            break
        for n in clashing:
            ids[n] = whole[n]
    counts = Counter(ids.values())
    clashing = sorted(n for n in names if counts[ids[n]] > 1)  # only escaped names can still clash
    taken = {i for i in ids.values() if counts[i] == 1}
    for n in clashing:
        k = 1
        while f"{ids[n]}#{k}" in taken:  # a suffix may be another file's own name
            k += 1
        ids[n] = f"{ids[n]}#{k}"
        taken.add(ids[n])
    return ids


def directory_source(path: str | Path, primitive: bool = False) -> Iterator[SourceItem]:
    """Every structure of every structure file in a folder, in file-name order.

    Ids are :func:`file_ids`; a file holding several structures gives one id per structure,
    ``<id>:<label>`` with the CIF data block's name (its number from 1 when names are missing
    or repeat) or the xyz frame number (from 0). A structure-named entry that cannot be opened
    (a dangling link, a symbolic-link loop, a folder, an unreadable or empty file) is still an
    item, carrying its cause, so it becomes a failure row. A folder without any structure file
    raises :class:`EmptySourceError`.
    """
    from vgnn_core import InvalidStructureError
    from vgnn_core.crystal.structures import structure_labels

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a folder")
    files = sorted(f for f in path.iterdir() if is_structure_file_name(f.name))
    if not files:
        raise EmptySourceError(f"{path}: no structure files (*{', *'.join(STRUCTURE_SUFFIXES)}, POSCAR*, CONTCAR*)")
    ids = file_ids([f.name for f in files])
    for f in files:
        mid = ids[f.name]
        try:
            labels = structure_labels(f)
        except InvalidStructureError as exc:
            yield SourceItem(mid, path=f, primitive=primitive, error=exc.cause)
            continue
        if len(labels) == 1:
            yield SourceItem(mid, path=f, primitive=primitive)
        else:
            for k, label in enumerate(labels):
                yield SourceItem(f"{mid}:{label}", path=f, primitive=primitive, index=k)


def primitive_cell(structure: Structure, symprec: float = SYMPREC) -> Structure:
    """The primitive cell found by spglib (fast even for thousands of atoms); the input when
    spglib finds no smaller cell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        prim = SpacegroupAnalyzer(structure, symprec=symprec).find_primitive()
    except Exception:  # noqa: BLE001 - no symmetry found: keep the cell as given
        prim = None
    if prim is None or len(prim) >= len(structure):
        return structure
    prim.properties = dict(structure.properties)
    return prim


def zeolite_source(path: str | Path | None = None) -> Iterator[SourceItem]:
    """IZA framework CIFs (default ``$VGNN_DATA_DIR/iza_zeolites/cifs``), ids ``iza-XXX``."""
    if path is None:
        root = shared_data_dir()
        if root is None:
            raise FileNotFoundError("zeolite CIFs not found: set VGNN_DATA_DIR or pass a folder")
        path = root / "iza_zeolites" / "cifs"
    for item in directory_source(path, primitive=True):
        yield replace(item, material_id=f"iza-{item.material_id}")
