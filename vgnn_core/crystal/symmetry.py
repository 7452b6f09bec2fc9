"""A crystal's symmetry, with one tolerance (:data:`vgnn_core.settings.SYMPREC`).

:func:`analyse_symmetry` runs spglib once for what a database row names: the space group and the
content hash that is the same for every cell of a crystal (from spglib's standardised cell, as in
phonopy and pymatgen). What relies on a symmetry being exact (the q-mesh's irreducible points,
the inversion centre of a real D(q), the networks' orbits) reads :func:`site_maps`: the
operations that map the cell onto itself within :data:`EXACT_TOLERANCE`, out of moyo's
(:func:`space_group_operations`: the same operations as spglib's on 1,000 Togo cells, in a fifth
of the time). (The q-path comes from seekpath, which standardises the cell itself.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from ..settings import SYMPREC
from .structures import NON_FINITE_CELL, InvalidStructureError, is_finite_cell, structure_name

#: Å: an operation is a true symmetry of the cell (for exact q-mesh reductions) within this.
EXACT_TOLERANCE = 1e-5
#: a cell with more space-group operations than this (a conventional F-centred cubic cell has
#: 4 × 48) keeps one per rotation in :func:`site_maps`: a supercell has N for every
#: rotation, and the orbits' search costs operations × bonds
MAX_SITE_OPERATIONS = 192
#: lattice points in a standardised conventional cell, by the centring letter of its symbol
_LATTICE_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}


def image_distances(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray, rotation: np.ndarray,
                    translation: np.ndarray) -> np.ndarray:
    """(m, m) Å: from the image of atom a under x → R x + t (fractional) to the nearest lattice
    image of atom b, ``inf`` where a and b are different species. An operation maps the cell onto
    itself within ``tol`` when every row's minimum is ≤ ``tol``; the row's argmin is a's image."""
    diff = (frac @ np.asarray(rotation).T + translation)[:, None, :] - frac[None, :, :]
    diff -= np.rint(diff)
    dist = np.linalg.norm(diff @ lattice, axis=-1)
    dist[numbers[:, None] != numbers[None, :]] = np.inf
    return dist


@dataclass(frozen=True, eq=False)
class Inversion:
    """An inversion centre of a cell, as a map of its atoms: the operation x → t − x takes atom i
    onto atom ``partner[i]`` in the cell translated by ``lattice_shift[i]``,
    t − x_i = x_partner[i] + L_i (fractional; ``partner`` is its own inverse, L_partner[i] = L_i).

    With it every D(q) is unitarily equivalent to a real symmetric matrix
    (:func:`~vgnn_core.phonons.centrosymmetric.centrosymmetric_matrices`): time reversal and
    inversion together act on D(q) as complex conjugation."""

    partner: np.ndarray  # (m,) int
    lattice_shift: np.ndarray  # (m, 3) int


@dataclass(frozen=True, eq=False)
class SiteMaps:
    """Space-group operations that map a cell onto itself, as maps of its atoms: operation g,
    x → W_g x + t_g (fractional), takes atom i onto atom ``images[g, i]`` in the cell translated
    by ``shifts[g, i]``: W_g x_i + t_g = x_images[g, i] + L_g,i. The identity is among them."""

    rotations: np.ndarray  # (n, 3, 3) int, W_g on fractional positions
    translations: np.ndarray  # (n, 3) fractional
    images: np.ndarray  # (n, m) int
    shifts: np.ndarray  # (n, m, 3) int

    def __len__(self) -> int:
        return len(self.rotations)

    def point_group(self) -> np.ndarray | None:
        """The distinct rotations (k, 3, 3) int when they form a group (closed under products),
        else ``None``: in a cell symmetric only to the analysis tolerance some rotations of its
        point group may be exact and others not, and a q-mesh reduced by a set that is not a
        group would weigh its points wrongly."""
        rotations = np.unique(self.rotations, axis=0)
        known = {r.tobytes() for r in rotations}
        products = np.einsum("aij,bjk->abik", rotations, rotations).reshape(-1, 3, 3)
        return rotations if all(p.tobytes() in known for p in products) else None

    def inversion(self) -> Inversion | None:
        """The first operation with W = −1 whose atom map is its own inverse, as an :class:`Inversion`."""
        minus_one = -np.eye(3, dtype=np.int64)
        for rot, image, shift in zip(self.rotations, self.images, self.shifts):
            if np.array_equal(rot, minus_one) and np.array_equal(image[image], np.arange(len(image))):
                return Inversion(partner=image, lattice_shift=shift)
        return None


@dataclass(frozen=True)
class CrystalSymmetry:
    """What spglib found for one crystal (rotations in the cell's fractional basis)."""

    spacegroup_number: int
    spacegroup_symbol: str
    rotations: np.ndarray | None  # (n_ops, 3, 3) int, distinct; None when spglib found none
    operations: tuple[np.ndarray, np.ndarray] | None  # all (rotations, translations) of the space group
    std_lattice: np.ndarray  # standardised conventional cell: rows, Å
    std_positions: np.ndarray  # fractional
    std_numbers: np.ndarray
    symprec: float

    @property
    def primitive_atoms(self) -> int:
        """Atoms in the primitive cell: the standardised cell's atoms over its lattice points
        (spglib keeps rhombohedral crystals in hexagonal axes, three lattice points)."""
        points = _LATTICE_POINTS.get(self.spacegroup_symbol[:1], 1)
        return max(1, len(self.std_numbers) // points)

    def content_hash(self) -> str:
        """A hash of the standardised cell that is the same for every cell of the crystal.

        The standard setting still leaves the origin free (e.g. the two inversion centres of
        diamond): every atom of the rarest species is tried as the origin and the smallest text
        kept. Lattice rounded to 1e-3 Å, positions to 1e-4.
        """
        positions, numbers = np.asarray(self.std_positions, dtype=float), np.asarray(self.std_numbers)
        counts = {z: int((numbers == z).sum()) for z in set(numbers.tolist())}
        anchor = min(counts, key=lambda z: (counts[z], z))
        lattice_text = ",".join(f"{x:.3f}" for x in np.round(np.asarray(self.std_lattice), 3).ravel() + 0.0)
        candidates = []
        for origin in positions[numbers == anchor]:
            p = np.round(np.mod(positions - origin, 1.0), 4) % 1.0
            order = np.lexsort((p[:, 2], p[:, 1], p[:, 0], numbers))
            candidates.append(",".join(str(int(numbers[k])) for k in order) + "|"
                              + ",".join(f"{x:.4f}" for x in p[order].ravel() + 0.0))
        return hashlib.sha256((lattice_text + "|" + min(candidates)).encode()).hexdigest()


#: numbers in one block of the vectorised image search of :func:`site_maps` (operations × atoms² × 3)
_SEARCH_BLOCK = 3_000_000


def space_group_operations(structure: Structure, symprec: float = SYMPREC) -> tuple[np.ndarray, np.ndarray] | None:
    """All space-group operations (W int (n, 3, 3), t fractional (n, 3)) of the cell as given, found
    by moyo (``moyopy``) within ``symprec`` Å: the same operations as spglib's at ~5× less time
    (0.3 against 1.6 ms a Togo cell, up to 20× less on the cells spglib is slow on), which matters
    where only the operations are needed (:attr:`~vgnn_core.crystal.crystal.Crystal.site_maps`).
    Falls back to spglib where moyo gives up; ``None`` when neither finds any."""
    import moyopy

    lattice, positions, numbers = spglib_cell(structure)
    try:
        ops = moyopy.MoyoDataset(moyopy.Cell(lattice.tolist(), positions.tolist(), list(numbers)), symprec=symprec).operations
        return np.asarray(ops.rotations, dtype=np.int64), np.asarray(ops.translations, dtype=float)
    except Exception:  # noqa: BLE001 - moyo raises ValueError / RuntimeError on cells it cannot reduce
        return analyse_symmetry(structure, symprec).operations
    except BaseException as exc:  # a panic in moyo's Rust arrives as pyo3's PanicException, not an Exception
        if type(exc).__name__ != "PanicException":
            raise
        return analyse_symmetry(structure, symprec).operations


def site_maps(structure: Structure, operations: tuple[np.ndarray, np.ndarray] | None,
              tol: float = EXACT_TOLERANCE) -> SiteMaps | None:
    """The ``operations`` (W, t) that map ``structure`` onto itself within ``tol`` Å, as maps of the
    cell's atoms (:class:`SiteMaps`), or ``None`` (no operations).

    The analysis tolerance (:data:`~vgnn_core.settings.SYMPREC`) may accept a slightly distorted
    cell as symmetric; what relies on a symmetry being exact (an irreducible q-mesh, a network
    evaluated once per orbit) uses these. With more than :data:`MAX_SITE_OPERATIONS` operations
    (a supercell: N for every rotation, in a cell of N primitive cells) only the first exact one
    of each rotation is kept, and no identity with a lattice translation.
    """
    if operations is None or len(operations[0]) == 0:
        return None
    lattice, frac, numbers = spglib_cell(structure)
    numbers = np.asarray(numbers)
    rotations, translations = np.asarray(operations[0], dtype=np.int64), np.asarray(operations[1], dtype=float)
    one_per_rotation = len(rotations) > MAX_SITE_OPERATIONS
    if one_per_rotation:  # the identity stands for the lattice translations
        pure = ~((rotations == np.eye(3, dtype=np.int64)).all(axis=(1, 2)) & (np.abs(translations - np.rint(translations)).max(axis=1) > tol))
        rotations, translations = rotations[pure], translations[pure]
    m = len(frac)
    other_species = numbers[:, None] != numbers[None, :]
    block = max(1, _SEARCH_BLOCK // (3 * m * m))
    kept: list[int] = []
    images, shifts = [], []
    seen: set[bytes] = set()
    for start in range(0, len(rotations), block):
        ops = np.arange(start, min(start + block, len(rotations)))
        if one_per_rotation:
            ops = ops[[rotations[o].tobytes() not in seen for o in ops]]
            if len(ops) == 0:
                continue
        moved = np.einsum("aj,oij->oai", frac, rotations[ops]) + translations[ops, None, :]  # (k, m, 3)
        diff = moved[:, :, None, :] - frac[None, None, :, :]
        diff -= np.rint(diff)
        dist = np.linalg.norm(diff @ lattice, axis=-1)  # (k, m, m) Å
        dist[:, other_species] = np.inf
        image = dist.argmin(axis=2)
        exact = np.take_along_axis(dist, image[..., None], axis=2)[..., 0].max(axis=1) <= tol
        exact &= (np.diff(np.sort(image, axis=1), axis=1) != 0).all(axis=1)  # a permutation of the atoms
        for k in np.flatnonzero(exact):
            o = int(ops[k])
            if one_per_rotation and rotations[o].tobytes() in seen:
                continue
            seen.add(rotations[o].tobytes())
            kept.append(o)
            images.append(image[k])
            shifts.append(np.rint(moved[k] - frac[image[k]]).astype(np.int64))
    if not kept:
        return None
    return SiteMaps(rotations=rotations[kept], translations=translations[kept],
                    images=np.asarray(images, dtype=np.int64), shifts=np.asarray(shifts))


def spglib_cell(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(lattice rows Å, fractional positions, atomic numbers)``: the cell as spglib and
    seekpath take it. Raises :class:`~vgnn_core.crystal.structures.InvalidStructureError` for a
    NaN or infinite lattice or position, on which spglib's C code crashes the process."""
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    positions = np.asarray(structure.frac_coords, dtype=float).reshape(-1, 3)
    if not is_finite_cell(lattice, positions):
        raise InvalidStructureError(structure_name(structure), NON_FINITE_CELL)
    return lattice, positions, [site.specie.Z for site in structure]


def analyse_symmetry(structure: Structure, symprec: float = SYMPREC) -> CrystalSymmetry:
    """The crystal's space group, rotations and standardised cell (P1 and the cell as given
    when spglib cannot analyse it)."""
    import spglib

    cell = spglib_cell(structure)
    try:
        data = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # noqa: BLE001 - spglib raises on degenerate cells: no symmetry then
        data = None
    if data is None:
        lattice, positions, numbers = cell
        return CrystalSymmetry(1, "P1", None, None, lattice, positions, np.asarray(numbers), symprec)
    return CrystalSymmetry(
        spacegroup_number=int(data.number),
        spacegroup_symbol=str(data.international),
        rotations=np.unique(np.asarray(data.rotations, dtype=int), axis=0),
        operations=(np.asarray(data.rotations, dtype=int), np.asarray(data.translations, dtype=float)),
        std_lattice=np.asarray(data.std_lattice, dtype=float),
        std_positions=np.asarray(data.std_positions, dtype=float),
        std_numbers=np.asarray(data.std_types),
        symprec=symprec,
    )
