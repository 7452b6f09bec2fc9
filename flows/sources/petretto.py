"""The ``petretto`` source: the 1,521 structures of the Petretto 2018 DFPT database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .item import SourceItem


def petretto_source(archive: str | Path | None = None) -> Iterator[SourceItem]:
    """The 1,521 structures of the Petretto 2018 DFPT database (cells of the DFPT runs)."""
    from vgnn_core.training.petretto import iter_petretto

    for record in iter_petretto(archive):
        yield SourceItem(record.material_id, structure=record.structure)
