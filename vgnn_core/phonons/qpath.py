"""High-symmetry q-paths for band structures, in the reciprocal basis of the cell you give.

seekpath (HPKOT convention) works in its own standardised primitive cell, possibly rotated
with respect to the input. This module maps its special points back: the Cartesian
wavevector is rotated into the input frame and expressed in the input cell's reciprocal basis,
so the path is right for a primitive cell, a conventional cell or any supercell alike.

Distances are Cartesian, in Å⁻¹ with the 2π included (pymatgen's and seekpath's convention).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from ..crystal.structures import InvalidStructureError, structure_name
from ..crystal.symmetry import spglib_cell
from ..settings import SYMPREC

#: Default sampling: points per Å⁻¹ along each segment.
DEFAULT_LINE_DENSITY = 20.0


@dataclass(frozen=True)
class QPath:
    """A sampled band path.

    ``qpoints`` are fractional in the reciprocal basis of the input cell; every segment holds
    both its end points, so a label that joins two segments appears twice in a row.
    """

    qpoints: np.ndarray  # (n, 3)
    distances: np.ndarray  # (n,) cumulative, Å⁻¹ (2π included), flat across breaks
    labels: list[tuple[int, str]]  # (index, label) at every segment end
    segments: list[tuple[int, int]]  # inclusive index ranges of the segments
    breaks: list[int] = field(default_factory=list)  # first index of each discontinuous jump
    special_points: dict[str, np.ndarray] = field(default_factory=dict)  # input basis
    bravais_lattice: str = ""

    @property
    def n_qpoints(self) -> int:
        return int(self.qpoints.shape[0])

    def segment_labels(self) -> list[tuple[str, str]]:
        lab = dict(self.labels)
        return [(lab[a], lab[b]) for a, b in self.segments]


def reciprocal_lattice(lattice: np.ndarray) -> np.ndarray:
    """Reciprocal vectors (rows, Å⁻¹, 2π included) of a lattice given as rows."""
    return 2.0 * np.pi * np.linalg.inv(lattice).T


def high_symmetry_path(
    structure: Structure,
    line_density: float = DEFAULT_LINE_DENSITY,
    with_time_reversal: bool = True,
    symprec: float = SYMPREC,
) -> QPath:
    """The seekpath (HPKOT) band path of ``structure``, in its own reciprocal basis."""
    import seekpath

    name = structure_name(structure)
    cell = spglib_cell(structure)
    lattice = cell[0]  # rows, Å
    try:
        with warnings.catch_warnings():
            # spglib's notice about its own error-handling mode, raised inside seekpath
            warnings.filterwarnings("ignore", message=".*OLD_ERROR_HANDLING.*")
            res = seekpath.get_path(cell, with_time_reversal=with_time_reversal, symprec=symprec)
    except Exception as exc:  # noqa: BLE001 - seekpath raises several exception types
        raise InvalidStructureError(name, f"seekpath cannot find a band path: {exc}") from exc
    rotation = np.asarray(res["rotation_matrix"], dtype=float)
    # Rows in seekpath's (idealised) frame → rows in the input frame: v_in = v_seek @ R.
    recip_in_frame = np.asarray(res["reciprocal_primitive_lattice"], dtype=float) @ rotation
    _check_same_lattice(name, lattice, np.asarray(res["primitive_lattice"]) @ rotation)
    to_input_basis = recip_in_frame @ lattice.T / (2.0 * np.pi)  # seek-frac → input-frac
    points = {
        label: np.asarray(coord, dtype=float) @ to_input_basis
        for label, coord in res["point_coords"].items()
    }
    return _sample(points, res["path"], lattice, line_density, res.get("bravais_lattice_extended", ""))


def _check_same_lattice(name: str, lattice: np.ndarray, primitive: np.ndarray) -> None:
    # The input cell must be a superlattice of the primitive lattice: integer coefficients.
    coeff = lattice @ np.linalg.inv(primitive)
    if np.abs(coeff - np.rint(coeff)).max() > 1e-3:
        raise InvalidStructureError(
            name, "cannot relate seekpath's primitive cell to the input cell (symmetry too loose?)"
        )


def _sample(
    points: dict[str, np.ndarray],
    path: list[tuple[str, str]],
    lattice: np.ndarray,
    line_density: float,
    bravais: str,
) -> QPath:
    recip = reciprocal_lattice(lattice)
    qs: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    labels: list[tuple[int, str]] = []
    segments: list[tuple[int, int]] = []
    breaks: list[int] = []
    offset = 0.0
    previous_end = None
    for start, end in path:
        a, b = points[start], points[end]
        length = float(np.linalg.norm((b - a) @ recip))
        n = max(2, int(np.ceil(length * line_density)) + 1)
        t = np.linspace(0.0, 1.0, n)
        first = sum(len(q) for q in qs)
        if previous_end is not None and previous_end != start:
            breaks.append(first)
        qs.append(a[None, :] + t[:, None] * (b - a)[None, :])
        dists.append(offset + t * length)
        offset += length
        labels += [(first, start), (first + n - 1, end)]
        segments.append((first, first + n - 1))
        previous_end = end
    return QPath(
        qpoints=np.concatenate(qs),
        distances=np.concatenate(dists),
        labels=labels,
        segments=segments,
        breaks=breaks,
        special_points=points,
        bravais_lattice=bravais,
    )
