"""The one thing every source yields: a material id and its structure or the file holding it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Structure

from vgnn_core.crystal.crystal import Crystal, as_crystal


@dataclass(frozen=True)
class SourceItem:
    """One input of a build: ``structure`` in memory or ``path`` to read (then reduced to
    its primitive cell when ``primitive``, as for conventional zeolite cells)."""

    material_id: str
    structure: Structure | None = None
    path: Path | None = None
    primitive: bool = False

    def __post_init__(self):
        if (self.structure is None) == (self.path is None):
            raise ValueError(f"{self.material_id}: a source item holds a structure or a path, not both or neither")

    def read(self) -> Crystal:
        """The validated crystal (raises :class:`~vgnn_core.InvalidStructureError` or the
        reader's error, naming the material)."""
        if self.structure is not None:
            crystal = as_crystal(self.structure, name=self.material_id, check_overlaps=True)  # validated, one copy
        else:
            from vgnn_core import read_structure

            structure = read_structure(self.path)  # validated by the reader
            if self.primitive:
                from .files import primitive_cell

                structure = primitive_cell(structure)
            crystal = Crystal(self.material_id, structure)
        crystal.structure.properties = {**(crystal.structure.properties or {}), "material_id": self.material_id}
        return crystal
