"""Predicted force constants as a phonopy object, so any phonopy analysis runs on a prediction.

phonopy stores force constants for a supercell and, at a general q, sums each
(atom, supercell atom) constant over its *shortest* images. The export is therefore exact at
every q when each bond is the unique shortest image within the supercell: the supercell is
chosen so that every non-zero superlattice vector is longer than twice the longest bond.
Then ``phonon.run_qpoints(q)`` reproduces :func:`~vgnn_core.phonons.dynamical_matrix.band_frequencies`.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import torch

from ..phonons.force_constants import ForceConstants
from ..phonons.units import THZ_TO_CM1

#: Extra length (Å) a superlattice vector must have beyond twice the longest bond.
SUPERCELL_MARGIN: float = 0.1


def bond_lengths(fc: ForceConstants, structure) -> np.ndarray:
    """Length (Å) of every bond ``r_j + T − r_i``."""
    frac = np.asarray(structure.frac_coords, dtype=float)
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    src, dst, shift = fc.src.numpy(), fc.dst.numpy(), fc.shift.numpy()
    return np.linalg.norm((frac[dst] + shift - frac[src]) @ lattice, axis=1)


def shortest_lattice_vector(lattice: np.ndarray) -> float:
    """Length of the shortest non-zero vector of a lattice (rows, Å)."""
    from pymatgen.core import Lattice

    reduced = Lattice(lattice).get_lll_reduced_lattice().matrix
    combos = np.array([c for c in itertools.product(range(-2, 3), repeat=3) if any(c)], dtype=float)
    return float(np.linalg.norm(combos @ reduced, axis=1).min())


def covering_supercell(structure, max_bond: float) -> np.ndarray:
    """The smallest diagonal supercell whose superlattice vectors are all > 2·max_bond."""
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    need = 2.0 * max_bond + SUPERCELL_MARGIN
    n = np.ones(3, dtype=int)
    while shortest_lattice_vector(lattice * n[:, None]) <= need:
        lengths = np.linalg.norm(lattice * n[:, None], axis=1)
        n[int(np.argmin(lengths))] += 1
    return np.diag(n)


def to_phonopy(fc: ForceConstants, structure, supercell_matrix: np.ndarray | None = None):
    """A ``phonopy.Phonopy`` of ``structure`` holding the predicted force constants.

    ``fc`` must belong to ``structure`` (same atoms, in order). Without ``supercell_matrix``
    the covering supercell is used (exact at every q); a smaller one is exact only at its
    commensurate q-points.
    """
    import phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    if fc.n_atoms != len(structure):
        raise ValueError(f"force constants for {fc.n_atoms} atoms but the structure has {len(structure)}")
    fc = fc.to(torch.float64).coalesced()
    if supercell_matrix is None:
        supercell_matrix = covering_supercell(structure, float(bond_lengths(fc, structure).max(initial=0.0)))
    unitcell = PhonopyAtoms(
        symbols=[site.specie.symbol for site in structure],
        cell=np.asarray(structure.lattice.matrix, dtype=float),
        scaled_positions=np.asarray(structure.frac_coords, dtype=float),
        masses=fc.masses.numpy(),
    )
    # the cell as given is the primitive cell (phonopy 4 would otherwise search for a smaller one)
    phonon = phonopy.Phonopy(unitcell, supercell_matrix=np.asarray(supercell_matrix), primitive_matrix=np.eye(3),
                             log_level=0)
    supercell = phonon.supercell
    p2s = np.asarray(phonon.primitive.p2s_map)
    s_frac = np.asarray(supercell.scaled_positions)
    smat = np.asarray(phonon.supercell_matrix, dtype=float)
    # supercell fractional coordinates of the image of atom j translated by T
    frac = np.asarray(structure.frac_coords, dtype=float)
    src, dst, shift = fc.src.numpy(), fc.dst.numpy(), fc.shift.numpy()
    target = (frac[dst] + shift) @ np.linalg.inv(smat).T
    key = np.rint(np.mod(target, 1.0) * 1e6).astype(np.int64) % 1_000_000
    lookup = {tuple(k): idx for idx, k in enumerate(np.rint(np.mod(s_frac, 1.0) * 1e6).astype(np.int64) % 1_000_000)}
    try:
        columns = np.array([lookup[tuple(k)] for k in key])
    except KeyError as missing:
        raise ValueError(f"bond image {missing} not found in the supercell") from None
    compact = np.zeros((len(p2s), len(supercell), 3, 3))
    np.add.at(compact, (src, columns), fc.blocks.numpy())
    phonon.force_constants = compact
    return phonon


# --- exact reference phonons from phonopy finite-displacement data (FORCE_SETS) ----------------


def load_force_sets(directory: str | Path, primitive_matrix: str = "auto"):
    """A ``Phonopy`` object with force constants from ``phonopy_disp.yaml`` + ``FORCE_SETS``.

    No non-analytic (LO-TO) correction is applied, as in VGNN.
    """
    import phonopy

    directory = Path(directory)
    for required in ("phonopy_disp.yaml", "FORCE_SETS"):
        if not (directory / required).is_file():
            raise FileNotFoundError(f"{directory.name}: {required} missing in {directory}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # phonopy's notice about its primitive_matrix default
        ph = phonopy.load(
            directory / "phonopy_disp.yaml",
            force_sets_filename=directory / "FORCE_SETS",
            primitive_matrix=primitive_matrix,
            is_nac=False,
            log_level=0,
        )
    ph.produce_force_constants()
    return ph


def phonopy_frequencies_cm1(phonon, qpoints: np.ndarray) -> np.ndarray:
    """phonopy's frequencies (cm⁻¹, imaginary as negative) at fractional ``qpoints``."""
    phonon.run_qpoints(np.asarray(qpoints, dtype=float))
    return np.asarray(phonon.qpoints.frequencies) * THZ_TO_CM1


def example_directories(root: str | Path) -> list[Path]:
    """The example crystals under ``root`` that have FORCE_SETS, sorted by name."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if (p / "FORCE_SETS").is_file() and (p / "phonopy_disp.yaml").is_file())


# --- Born effective charges and ε∞ (phonopy's BORN file) ---------------------------------------


def read_born_file(path: str | Path, structure, symprec: float = 1e-5):
    """ε∞ and the Born charges of every atom of ``structure`` from a phonopy BORN file.

    The file lists an optional unit factor (line 1; e²/(4πε₀) in eV·Å, e.g. ``14.400``; a comment
    line means none), ε∞ (9 numbers) and one Z* (9 numbers, e) per symmetry-independent atom of
    ``structure`` (which must be the cell the file was written for, usually phonopy's primitive
    cell); the others are generated by the space group (spglib, ``symprec`` Å). Returns a
    :class:`~vgnn_core.phonons.nac.BornCharges` (charge neutrality not enforced).
    """
    from ..phonons.nac import BornCharges, expand_born_charges

    path = Path(path)
    lines = [line.split() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < 3:
        raise ValueError(f"{path}: BORN file needs a header, ε∞ and at least one Born charge line")
    try:
        factor = float(lines[0][0])
    except ValueError:
        factor = None
    try:
        rows = [np.array([float(x) for x in line], dtype=float) for line in lines[1:]]
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric entry in BORN file ({exc})") from None
    bad = [k + 2 for k, row in enumerate(rows) if row.size != 9]
    if bad:
        raise ValueError(f"{path}: line {bad[0]} of the BORN file does not hold 9 numbers")
    epsilon = rows[0].reshape(3, 3)
    independent = np.array(rows[1:]).reshape(-1, 3, 3)
    try:
        born = expand_born_charges(
            independent,
            np.asarray(structure.lattice.matrix, dtype=float),
            np.asarray(structure.frac_coords, dtype=float),
            [site.specie.Z for site in structure],
            symprec=symprec,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return BornCharges(epsilon=epsilon, born=born, factor=factor)
