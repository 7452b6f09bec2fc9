"""Crystal structures in, validated: pymatgen ``Structure``, ASE ``Atoms`` or a file path.

Only ordered, fully occupied, three-dimensionally periodic crystals are accepted. Anything
else raises :class:`InvalidStructureError`, which names the structure and the cause.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure

#: Two atoms closer than this (Å, across periodic images too) are considered overlapping.
MIN_INTERATOMIC_DISTANCE = 0.5
#: Smallest accepted cell volume per atom (Å³); below this the cell is degenerate.
MIN_VOLUME_PER_ATOM = 0.5


class InvalidStructureError(ValueError):
    """A structure that cannot be a phonon calculation's input.

    ``name`` identifies the structure (material id, file name or formula) and ``cause``
    says what is wrong with it.
    """

    def __init__(self, name: str, cause: str):
        self.name = name
        self.cause = cause
        super().__init__(f"{name}: {cause}")


StructureLike = Structure | Any  # pymatgen Structure, ASE Atoms, or a path


def structure_name(structure: Structure, fallback: str = "structure") -> str:
    """A human-readable name: ``properties['material_id']`` if set, else the formula."""
    props = getattr(structure, "properties", None) or {}
    for key in ("material_id", "name", "id"):
        if props.get(key):
            return str(props[key])
    try:
        return structure.composition.reduced_formula or fallback
    except Exception:  # noqa: BLE001 - a broken structure may not even have a formula
        return fallback


def read_structure(path: str | os.PathLike) -> Structure:
    """Read CIF / POSCAR / extxyz / anything pymatgen or ASE can read, validated."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InvalidStructureError(name, f"file not found: {path}")
    if path.stat().st_size == 0:
        raise InvalidStructureError(name, "file is empty")
    errors = []
    structure = None
    try:
        structure = _read_with_pymatgen(path)
    except Exception as exc:  # noqa: BLE001 - fall back to ASE, then report both
        errors.append(f"pymatgen: {type(exc).__name__}: {exc}")
        try:
            from ase.io import read as ase_read

            structure = ase_read(path)
        except Exception as exc2:  # noqa: BLE001
            errors.append(f"ase: {type(exc2).__name__}: {exc2}")
    if structure is None:
        raise InvalidStructureError(name, "cannot be parsed (" + "; ".join(errors) + ")")
    return as_structure(structure, name=name)


#: CIF sites closer than this (fractional) after applying the symmetry operators are one site:
#: coordinates printed with 4 decimals put special positions (x = 0.3333) a few mÅ apart.
CIF_SITE_TOLERANCE = 2e-3


def _read_with_pymatgen(path: Path) -> Structure:
    import warnings

    if path.suffix.lower() in (".cif", ".mcif"):
        from pymatgen.io.cif import CifParser

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stoichiometry and rounding notices
            parser = CifParser(path, site_tolerance=CIF_SITE_TOLERANCE)
            return parser.parse_structures(primitive=False)[0]
    return Structure.from_file(path)


def as_structure(obj: StructureLike, name: str | None = None, check_overlaps: bool = True) -> Structure:
    """Convert and validate one input into a pymatgen ``Structure``.

    Accepts a ``Structure``, an ASE ``Atoms`` or a path. Raises
    :class:`InvalidStructureError` for partial occupancy, vacancies, dummy species, a
    non-periodic or degenerate cell, no atoms, non-finite coordinates or overlapping atoms.
    ``check_overlaps=False`` leaves the overlap test to the caller (the graph builder does it
    from its own neighbour list, saving a second search).
    """
    if isinstance(obj, (str, os.PathLike)):
        return read_structure(obj)
    structure = _to_pymatgen(obj, name)
    name = name or structure_name(structure)
    _validate(structure, name, check_overlaps)
    if name and "material_id" not in (structure.properties or {}):
        structure.properties = {**(structure.properties or {}), "name": name}
    return structure


def _is_ase_atoms(obj: Any) -> bool:
    return type(obj).__name__ == "Atoms" and hasattr(obj, "get_cell")


def _to_pymatgen(obj: Any, name: str | None) -> Structure:
    label = name or type(obj).__name__
    if isinstance(obj, Structure):
        return obj.copy()
    if _is_ase_atoms(obj):
        pbc = np.asarray(obj.get_pbc(), dtype=bool)
        if len(obj) == 0:
            raise InvalidStructureError(label, "structure has no atoms")
        if not pbc.all():
            raise InvalidStructureError(
                label, f"not periodic in all three directions (pbc={pbc.tolist()})"
            )
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(obj)
    if type(obj).__name__ in ("Molecule", "IMolecule"):
        raise InvalidStructureError(label, "a Molecule is not periodic; a crystal is required")
    raise InvalidStructureError(
        label, f"unsupported input type {type(obj).__name__}: expected Structure, Atoms or a path"
    )


def _validate(structure: Structure, name: str, check_overlaps: bool = True) -> None:
    if len(structure) == 0:
        raise InvalidStructureError(name, "structure has no atoms")
    if not structure.is_ordered:
        bad = [i for i, site in enumerate(structure) if not site.is_ordered]
        raise InvalidStructureError(
            name, f"partial occupancy / disorder at site(s) {bad[:5]}: only ordered crystals"
        )
    for i, site in enumerate(structure):
        occupancy = sum(site.species.values())
        if abs(occupancy - 1.0) > 1e-6:
            raise InvalidStructureError(
                name, f"site {i} has total occupancy {occupancy:g} (vacancy); must be 1"
            )
        sp = next(iter(site.species))
        if not isinstance(getattr(sp, "element", sp), Element):
            raise InvalidStructureError(name, f"site {i} holds {sp!s}, not a chemical element")
    pbc = getattr(structure.lattice, "pbc", (True, True, True))
    if not all(pbc):
        raise InvalidStructureError(name, f"not periodic in all directions (pbc={tuple(pbc)})")
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(structure.frac_coords)):
        raise InvalidStructureError(name, "lattice or coordinates contain NaN or infinity")
    volume = abs(np.linalg.det(matrix))
    if volume < MIN_VOLUME_PER_ATOM * len(structure):
        raise InvalidStructureError(
            name, f"degenerate cell: volume {volume:.3g} Å^3 for {len(structure)} atoms"
        )
    if check_overlaps:
        centers, neighbors, _, distances = structure.get_neighbor_list(
            MIN_INTERATOMIC_DISTANCE, exclude_self=True
        )
        raise_on_overlap(name, centers, neighbors, distances)


def raise_on_overlap(name: str, centers, neighbors, distances) -> None:
    """Raise :class:`InvalidStructureError` if any neighbour distance is below the minimum."""
    if len(distances) and float(np.min(distances)) < MIN_INTERATOMIC_DISTANCE:
        k = int(np.argmin(distances))
        raise InvalidStructureError(
            name,
            f"atoms {int(centers[k])} and {int(neighbors[k])} overlap "
            f"({distances[k]:.3f} Å apart, minimum {MIN_INTERATOMIC_DISTANCE} Å)",
        )
