"""The one thing every source yields: a material id and its structure or the file holding it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Structure

from vgnn_core.crystal.crystal import Crystal, as_crystal


class EmptySourceError(FileNotFoundError):
    """A source that yields no input at all: a build of it would be an empty release."""


class SourceSpecError(ValueError):
    """A ``--source`` spec that names no source, or whose parameters cannot be read."""


@dataclass(frozen=True)
class SourceItem:
    """One input of a build: ``structure`` in memory or ``path`` to read (then reduced to
    its primitive cell when ``primitive``, as for conventional zeolite cells).

    ``index`` picks one structure of a file that holds several (a CIF data block, an xyz frame;
    see :func:`~vgnn_core.crystal.structures.structure_labels`). ``error`` marks an input known
    to be bad when the source was listed (a dangling link, a symbolic-link loop): reading it
    raises with that cause, so it becomes the material's failure row.
    """

    material_id: str
    structure: Structure | None = None
    path: Path | None = None
    primitive: bool = False
    index: int | None = None
    error: str | None = None

    def __post_init__(self):
        if (self.structure is None) == (self.path is None):
            raise ValueError(f"{self.material_id}: a source item holds a structure or a path, not both or neither")

    @property
    def origin(self) -> str:
        """Where the input comes from, for messages: the file (and structure number) or ``in memory``."""
        if self.path is None:
            return "in memory"
        return self.path.name + ("" if self.index is None else f" (structure {self.index})")

    def read(self) -> Crystal:
        """The validated crystal (raises :class:`~vgnn_core.InvalidStructureError` or the
        reader's error, naming the material)."""
        from vgnn_core import InvalidStructureError

        if self.error is not None:
            raise InvalidStructureError(self.path.name if self.path else self.material_id, self.error)
        if self.structure is not None:
            crystal = as_crystal(self.structure, name=self.material_id, check_overlaps=True)  # validated, one copy
        else:
            from vgnn_core import read_structure

            structure = read_structure(self.path, index=self.index)  # validated by the reader
            if self.primitive:
                from .files import primitive_cell

                structure = primitive_cell(structure)
            crystal = Crystal(self.material_id, structure)
        crystal.structure.properties = {**(crystal.structure.properties or {}), "material_id": self.material_id}
        return crystal
