"""Structure files: a folder of CIF / POSCAR / extxyz files (``dir:PATH``) and the IZA zeolite
frameworks (``zeolites[:PATH]``), which are conventional cells reduced to primitive ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pymatgen.core import Structure

from vgnn_core.settings import SYMPREC, shared_data_dir

from .item import SourceItem

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz")


def directory_source(path: str | Path, primitive: bool = False) -> Iterator[SourceItem]:
    """Every structure-like file in a folder (sorted), id = file name without suffix."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a folder")
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix.lower() in STRUCTURE_SUFFIXES or f.name.startswith(("POSCAR", "CONTCAR"))):
            yield SourceItem(f.stem if f.suffix else f.name, path=f, primitive=primitive)


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
        yield SourceItem(f"iza-{item.material_id}", path=item.path, primitive=True)
