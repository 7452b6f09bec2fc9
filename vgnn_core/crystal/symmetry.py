"""A crystal's symmetry, with one tolerance (:data:`vgnn_core.settings.SYMPREC`; the uncertainty's
count of primitive-cell atoms, :func:`primitive_atoms`, uses a looser one).

:func:`analyse_symmetry` runs spglib once for what a database row names: the space group and the
content hash that is the same for every cell of a crystal (from spglib's standardised cell, as in
phonopy and pymatgen). What relies on a symmetry being exact (the q-mesh's irreducible points,
the inversion centre of a real D(q), the networks' orbits) reads :func:`site_maps`: the
operations that map the cell onto itself within :data:`EXACT_TOLERANCE`, out of moyo's
(:func:`space_group_operations`, in a fifth of spglib's time). On 10,012 of the 10,034 Togo cells
they are the ones spglib's operations gave; on 20, more of them are exact with the best-fitting
translation (an inversion, say), and on 2 the lattice is less symmetric than the atoms, which the
check of the lattice now sees. (The q-path comes from seekpath, which standardises the cell itself.)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from ..settings import PRIMITIVE_SYMPREC, SYMPREC
from .structures import NON_FINITE_CELL, InvalidStructureError, is_finite_cell, structure_name

#: Å: an operation is a true symmetry of the cell (for exact q-mesh reductions) within this.
EXACT_TOLERANCE = 1e-5
#: a cell with more space-group operations than this (a conventional F-centred cubic cell has
#: 4 × 48) keeps one per rotation in :func:`site_maps`: a supercell has N for every
#: rotation, and the orbits' search costs operations × bonds
MAX_SITE_OPERATIONS = 192


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


#: moved atoms looked up at once in :func:`site_maps` (operations × atoms)
_SEARCH_BLOCK = 1_000_000
#: an operation's Cartesian form R = Aᵀ W A⁻ᵀ counts as a rotation (the lattice maps onto itself)
#: when its singular values are 1 within this: relative, ~1e-5 Å on a 10 Å lattice vector
ORTHOGONALITY_TOLERANCE = 1e-6


def cartesian_rotations(lattice: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Cartesian form R = Aᵀ W A⁻ᵀ of fractional rotations W (n, 3, 3) for a lattice A with
    vectors as rows, made exactly orthogonal, and which of them were orthogonal to begin with
    (within :data:`ORTHOGONALITY_TOLERANCE`): (n, 3, 3) float64, (n,) bool."""
    a = np.asarray(lattice, dtype=float)
    cart = a.T @ np.asarray(rotations, dtype=float) @ np.linalg.inv(a.T)
    u, s, vt = np.linalg.svd(cart)
    return u @ vt, np.abs(s - 1.0).max(axis=1) <= ORTHOGONALITY_TOLERANCE


class _OmittedOperations(logging.Filter):
    """Drops moyo's warning that the given cell's lattice breaks some of its primitive cell's
    operations, which it leaves out (a supercell of lower lattice symmetry): :func:`site_maps`
    keeps only the operations the lattice allows anyway, and the warning, once per such cell,
    would fill a build's log (Python's last-resort handler prints it to stderr)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Omitted ")


_MOYO_LOG = logging.getLogger("moyo")
_MOYO_LOG.addFilter(_OmittedOperations())


def space_group_operations(structure: Structure, symprec: float = SYMPREC) -> tuple[np.ndarray, np.ndarray] | None:
    """All space-group operations (W int (n, 3, 3), t fractional (n, 3)) of the cell as given, found
    by moyo (``moyopy``) within ``symprec`` Å: the space group spglib finds, at ~5× less time
    (0.3 against 1.6 ms a Togo cell, up to 20× less on the cells spglib is slow on), which matters
    where only the operations are needed (:attr:`~vgnn_core.crystal.crystal.Crystal.site_maps`,
    which checks each one).
    Falls back to spglib where moyo gives up; ``None`` when neither finds any."""
    import moyopy

    lattice, positions, numbers = spglib_cell(structure)
    try:
        ops = moyopy.MoyoDataset(moyopy.Cell(lattice.tolist(), positions.tolist(), list(numbers)), symprec=symprec).operations
        return np.asarray(ops.rotations, dtype=np.int64), np.asarray(ops.translations, dtype=float)
    except BaseException as exc:  # noqa: BLE001 - moyo's errors on cells it cannot reduce, and a panic
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":  # in its Rust (pyo3's
            raise  # PanicException is no Exception); KeyboardInterrupt and the like go on
        return analyse_symmetry(structure, symprec).operations


def lattice_points(structure: Structure, symprec: float = PRIMITIVE_SYMPREC) -> np.ndarray:
    """The cell's lattice points, (k, 3) fractional, the origin first: the translations of moyo's
    space-group operations without rotation, within ``symprec`` Å (default
    :data:`~vgnn_core.settings.PRIMITIVE_SYMPREC`, looser than the space group's, so that noise of a
    few mÅ does not change them: moyo lowers a tolerance at which it finds no consistent group,
    and conventional Si keeps its 4 points with every atom moved 5 mÅ, not 6 mÅ). The origin alone
    when none is found, or when they are not a lattice's points (their number must divide the atoms;
    then those within :data:`~vgnn_core.settings.SYMPREC`)."""
    origin = np.zeros((1, 3))
    operations = space_group_operations(structure, symprec)
    if operations is None:
        return origin
    pure = (np.asarray(operations[0]) == np.eye(3, dtype=np.int64)).all(axis=(1, 2))
    points = np.unique(np.round(np.asarray(operations[1], dtype=float)[pure] % 1.0, 8) % 1.0, axis=0)
    if len(points) < 1 or len(structure) % len(points):  # none found on 10,034 Togo cells
        return origin if symprec <= SYMPREC else lattice_points(structure, SYMPREC)
    return points[np.argsort(np.abs(points).sum(axis=1), kind="stable")]


def primitive_atoms(structure: Structure, symprec: float = PRIMITIVE_SYMPREC) -> int:
    """Atoms in the primitive cell of ``structure``: its atoms over its :func:`lattice_points`. Any
    cell of a crystal gives the same count: a supercell or a centred conventional cell has as many
    more lattice points as it has more atoms."""
    return len(structure) // len(lattice_points(structure, symprec))


def primitive_matrix(points: np.ndarray) -> np.ndarray | None:
    """The integer matrix M with the cell's lattice = M · its primitive cell's (rows, Å; a
    primitive basis of the lattice the cell's vectors and its lattice ``points``, fractional, span),
    or ``None`` for a primitive cell (the origin alone)."""
    n = len(points)
    if n <= 1:
        return None
    # every point times n is an integer vector: the lattice n·(ℤ³ + points) has an integer basis
    generators = np.rint(np.vstack([n * np.eye(3), n * np.asarray(points, dtype=float)])).astype(np.int64)
    basis = _integer_basis(generators) / n  # the primitive vectors, fractional in the cell
    m = np.linalg.inv(basis)  # A_cell = M · A_prim with A_prim = basis · A_cell
    rounded = np.rint(m)
    if np.abs(m - rounded).max() > 1e-6 or round(abs(np.linalg.det(rounded))) != n:
        return None
    return rounded.astype(np.int64)


@dataclass(frozen=True, eq=False)
class PrimitiveSites:
    """How a cell that is not primitive repeats its primitive cell: which primitive atom each of
    its atoms is, and in which primitive cell (:func:`primitive_sites`)."""

    #: M (3, 3) integer: the cell's lattice = M · the primitive cell's (rows, Å)
    matrix: np.ndarray
    #: (p,) the cell's atom that stands for each primitive atom (the first of its kind)
    representatives: np.ndarray
    #: (m,) the primitive atom each of the cell's atoms repeats
    site: np.ndarray
    #: (m, 3) integer: atom i sits at its primitive atom plus this vector of the primitive lattice
    offset: np.ndarray


def primitive_sites(structure: Structure, points: np.ndarray, tol: float = 3 * PRIMITIVE_SYMPREC) -> PrimitiveSites | None:
    """The cell's atoms as repeats of its primitive cell's, from its lattice ``points``
    (:func:`lattice_points`), or ``None`` for a primitive cell or where the atoms do not repeat
    exactly ``len(points)`` times within ``tol`` Å (same element, in the primitive lattice's
    fractional coordinates x = f · M)."""
    m = primitive_matrix(points)
    if m is None:
        return None
    x = structure.frac_coords @ m  # fractional in the primitive basis
    primitive_lattice = np.linalg.inv(m) @ structure.lattice.matrix
    numbers = np.array([site.specie.Z for site in structure])
    reps: list[int] = []
    site = np.empty(len(structure), dtype=np.int64)
    for i in range(len(structure)):
        if reps:
            d = x[i] - x[reps]
            dist = np.linalg.norm((d - np.rint(d)) @ primitive_lattice, axis=1)
            dist[numbers[reps] != numbers[i]] = np.inf
            k = int(np.argmin(dist))
            if dist[k] <= tol:
                site[i] = k
                continue
        site[i] = len(reps)
        reps.append(i)
    representatives = np.asarray(reps, dtype=np.int64)
    if len(structure) != len(reps) * len(points) or (np.bincount(site) != len(points)).any():
        return None
    offset = np.rint(x - x[representatives[site]]).astype(np.int64)
    return PrimitiveSites(matrix=m, representatives=representatives, site=site, offset=offset)


def _integer_basis(vectors: np.ndarray) -> np.ndarray:
    """Three integer rows spanning the same lattice as the integer rows of ``vectors`` (full rank):
    Euclid's algorithm column by column (an echelon form)."""
    rows = [list(map(int, v)) for v in vectors if any(v)]
    basis = []
    for col in range(3):
        while len(live := [r for r in rows if r[col]]) > 1:
            pivot = min(live, key=lambda r: abs(r[col]))
            for r in live:
                if r is not pivot:
                    factor = r[col] // pivot[col]
                    r[:] = [a - factor * b for a, b in zip(r, pivot)]
            rows = [r for r in rows if any(r)]
        pivot = next(r for r in rows if r[col])
        basis.append(pivot)
        rows = [r for r in rows if r is not pivot]
    return np.asarray(basis, dtype=float)


def _into_cell(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into [0, 1) (a round-off 1.0 back to 0, as the periodic tree needs)."""
    wrapped = frac - np.floor(frac)
    wrapped[wrapped >= 1.0] = 0.0
    return wrapped


def site_maps(structure: Structure, operations: tuple[np.ndarray, np.ndarray] | None,
              tol: float = EXACT_TOLERANCE) -> SiteMaps | None:
    """The ``operations`` (W, t) that map ``structure`` onto itself within ``tol`` Å, as maps of the
    cell's atoms (:class:`SiteMaps`), or ``None`` (no operations).

    The analysis tolerance (:data:`~vgnn_core.settings.SYMPREC`) may accept a slightly distorted
    cell as symmetric; what relies on a symmetry being exact (an irreducible q-mesh, a network
    evaluated once per orbit) uses these: W maps the lattice onto itself
    (:func:`cartesian_rotations`) and, with the translation that fits best (t plus the atoms'
    mean offset, kept in the maps), every atom's image lies within ``tol`` of an atom of its
    species, no two on one. Each image is found in a periodic k-d tree of the fractional
    positions, so the search grows as m log m per operation. With more than
    :data:`MAX_SITE_OPERATIONS` operations (a supercell: N for every rotation, in a cell of N
    primitive cells) only the first exact one of each rotation is kept, and no identity with a
    lattice translation.
    """
    from scipy.spatial import cKDTree

    if operations is None or len(operations[0]) == 0:
        return None
    lattice, frac, numbers = spglib_cell(structure)
    numbers = np.asarray(numbers)
    rotations, translations = np.asarray(operations[0], dtype=np.int64), np.asarray(operations[1], dtype=float)
    one_per_rotation = len(rotations) > MAX_SITE_OPERATIONS
    if one_per_rotation:  # the identity stands for the lattice translations
        pure = ~((rotations == np.eye(3, dtype=np.int64)).all(axis=(1, 2)) & (np.abs(translations - np.rint(translations)).max(axis=1) > tol))
        rotations, translations = rotations[pure], translations[pure]
    keys = [r.tobytes() for r in rotations]
    metric_ok = dict(zip(keys, cartesian_rotations(lattice, rotations)[1]))
    # candidates in rounds: every rotation's first operation, then the second of those not yet
    # found exact, ... (a supercell's first operation of each rotation is exact: one round)
    by_rotation: dict[bytes, list[int]] = {}
    for o, key in enumerate(keys):
        if metric_ok[key]:
            by_rotation.setdefault(key, []).append(o)
    depth = max((len(v) for v in by_rotation.values()), default=0) if one_per_rotation else 1
    rounds = [[v[d] for v in by_rotation.values() if d < len(v)] for d in range(depth)] if one_per_rotation \
        else [sorted(o for v in by_rotation.values() for o in v)]
    m = len(frac)
    tree = cKDTree(_into_cell(frac), boxsize=1.0)
    block = max(1, _SEARCH_BLOCK // m)
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    seen: set[bytes] = set()
    for candidates in rounds:
        todo = np.asarray([o for o in candidates if not (one_per_rotation and keys[o] in seen)], dtype=np.int64)
        for start in range(0, len(todo), block):
            ops = todo[start:start + block]
            moved = np.einsum("aj,oij->oai", frac, rotations[ops]) + translations[ops, None, :]  # (k, m, 3)
            image = tree.query(_into_cell(moved).reshape(-1, 3))[1].reshape(len(ops), m)
            offset = frac[image] - moved
            offset -= np.rint(offset)  # (k, m, 3) fractional, each within half a cell
            fit = offset.mean(axis=1)  # the translation's best correction
            error = np.linalg.norm((offset - fit[:, None, :]) @ lattice, axis=-1).max(axis=1)  # Å
            exact = (error <= tol) & (numbers[image] == numbers[None, :]).all(axis=1)
            exact &= (np.diff(np.sort(image, axis=1), axis=1) != 0).all(axis=1)  # a permutation of the atoms
            for k in np.flatnonzero(exact):
                o = int(ops[k])
                if one_per_rotation and keys[o] in seen:
                    continue
                seen.add(keys[o])
                shift = np.rint(moved[k] + fit[k] - frac[image[k]]).astype(np.int64)
                found[o] = (translations[o] + fit[k], image[k], shift)
    if not found:
        return None
    kept = sorted(found)  # in the order the operations were given
    return SiteMaps(rotations=rotations[kept], translations=np.asarray([found[o][0] for o in kept]),
                    images=np.asarray([found[o][1] for o in kept], dtype=np.int64),
                    shifts=np.asarray([found[o][2] for o in kept]))


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
