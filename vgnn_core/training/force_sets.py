"""One phonondb force set → the targets a model is trained and judged on (phonopy does the DFT side).

From phonopy's type-1 data set in arrays, phonopy produces force constants (symmetrised: exact
acoustic sum rule and index-permutation symmetry). From those, in the primitive cell the networks
see: the frequencies at the q-points commensurate with the supercell (exact there), the
force-constant blocks of the bonds whose shortest supercell image is unique within the bond
cutoff, and, for evaluation, phonopy's band structure along the high-symmetry path.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..crystal.graph import CrystalGraph, build_graph
from ..io.phonopy import phonopy_frequencies_cm1
from ..phonons.force_constants import phonopy_bonds
from ..settings import shared_data_dir

FORCE_SETS_RELATIVE = Path("togo_phonondb") / "force_sets.tar.xz"
#: Bump when a target's definition changes: invalidates the on-disk samples.
FORMAT_VERSION = 2  # 2: blocks whose supercell pair folds several bonds within r_bond left out
#: Public origin of the data (per-material phonopy archives), for users without the pack.
ORIGIN = "https://github.com/WMD-group/phononDB (phonon_db_tarred/, Togo's phonondb ph20180417, CC BY 4.0)"


@dataclass(frozen=True)
class ForceSet:
    """One material's finite-displacement data set (phonopy's type 1), SI-free phonopy units."""

    material_id: str
    lattice: np.ndarray  # (3, 3) unit-cell vectors as rows, Å
    numbers: np.ndarray  # (n,)
    frac_coords: np.ndarray  # (n, 3)
    supercell_matrix: np.ndarray  # (3, 3) int, phonopy's DIM
    primitive_matrix: np.ndarray  # (3, 3) phonopy's PRIMITIVE_AXIS
    displaced_atoms: np.ndarray  # (n_disp,) supercell index of the displaced atom
    displacements: np.ndarray  # (n_disp, 3) Å
    forces: np.ndarray  # (n_disp, n_supercell, 3) eV/Å

    @classmethod
    def from_npz(cls, material_id: str, data) -> ForceSet:
        return cls(
            material_id=material_id,
            lattice=np.asarray(data["lattice"], dtype=float),
            numbers=np.asarray(data["numbers"], dtype=np.int64),
            frac_coords=np.asarray(data["frac_coords"], dtype=float),
            supercell_matrix=np.asarray(data["supercell_matrix"], dtype=np.int64),
            primitive_matrix=np.asarray(data["primitive_matrix"], dtype=float),
            displaced_atoms=np.asarray(data["displaced_atoms"], dtype=np.int64),
            displacements=np.asarray(data["displacements"], dtype=float),
            forces=np.asarray(data["forces"], dtype=float) * float(data["forces_unit"]),
        )


def default_force_sets() -> Path:
    """``$VGNN_DATA_DIR/togo_phonondb/force_sets.tar.xz``; raises when it is absent."""
    root = shared_data_dir()
    if root is None or not (root / FORCE_SETS_RELATIVE).is_file():
        raise FileNotFoundError(
            f"phonondb force sets not found: set VGNN_DATA_DIR to a folder holding {FORCE_SETS_RELATIVE} "
            f"(origin: {ORIGIN})"
        )
    return root / FORCE_SETS_RELATIVE


def iter_force_sets(source: str | Path | None = None, ids: Iterable[str] | None = None) -> Iterator[ForceSet]:
    """Force sets from the archive (read as one stream, in its order) or a folder of ``.npz``."""
    source = Path(source or default_force_sets())
    wanted = set(ids) if ids is not None else None
    if source.is_dir():
        for path in sorted(source.glob("*.npz")):
            if wanted is None or path.stem in wanted:
                with np.load(path, allow_pickle=False) as data:
                    yield ForceSet.from_npz(path.stem, data)
        return
    with tarfile.open(source, "r:*") as tar:
        for member in tar:
            name = Path(member.name).name
            if not (member.isfile() and name.endswith(".npz")):
                continue
            material_id = name[: -len(".npz")]
            if wanted is not None and material_id not in wanted:
                continue
            with np.load(io.BytesIO(tar.extractfile(member).read()), allow_pickle=False) as data:
                yield ForceSet.from_npz(material_id, data)
            if wanted is not None:
                wanted.discard(material_id)
                if not wanted:  # the stream need not be read to its end
                    return


def phonopy_from_force_set(fs: ForceSet):
    """A ``phonopy.Phonopy`` with symmetrised force constants produced from ``fs``."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    cell = PhonopyAtoms(numbers=fs.numbers, cell=fs.lattice, scaled_positions=fs.frac_coords)
    phonon = Phonopy(cell, supercell_matrix=fs.supercell_matrix, primitive_matrix=fs.primitive_matrix, log_level=0)
    n_super = len(phonon.supercell)
    if fs.forces.shape[1:] != (n_super, 3):
        raise ValueError(f"{fs.material_id}: forces for {fs.forces.shape[1]} atoms, supercell has {n_super}")
    phonon.dataset = {
        "natom": n_super,
        "first_atoms": [
            {"number": int(a), "displacement": d, "forces": f}
            for a, d, f in zip(fs.displaced_atoms, fs.displacements, fs.forces)
        ],
    }
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()
    return phonon


def primitive_structure(phonon, material_id: str):
    """phonopy's primitive cell as a pymatgen ``Structure`` named ``material_id``."""
    from pymatgen.core import Structure

    prim = phonon.primitive
    structure = Structure(prim.cell, prim.numbers, prim.scaled_positions)
    structure.properties = {"material_id": material_id}
    return structure


def commensurate_qpoints(phonon) -> np.ndarray:
    """The q-points (fractional, primitive reciprocal basis) commensurate with the supercell."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    return np.asarray(get_commensurate_points(supercell_in_primitive(phonon)), dtype=float)


def block_targets(phonon, graph: CrystalGraph, r_bond: float) -> tuple[np.ndarray, np.ndarray]:
    """Graph edges whose Φ_ij(T) the supercell defines without ambiguity, and those blocks.

    A supercell measures, for each pair of atoms, the sum of Φ_ij(T) over every translation T of
    one class modulo the supercell. A bond (i, j, T) qualifies when it is shorter than
    ``r_bond``, its image is the unique shortest one in the supercell, and no other bond of the
    graph within ``r_bond`` folds onto the same supercell pair (so the model predicts exactly
    one block of that sum; the images left out lie beyond the cutoff, where the model's force
    constants vanish). Returns ``(edge_index (K,), blocks (K, 3, 3) eV/Å²)``.
    """
    bonds = phonopy_bonds(phonon)
    lattice = graph.lattice
    vec = graph.positions[bonds["dst"]] + bonds["shift"] @ lattice - graph.positions[bonds["src"]]
    length = np.linalg.norm(vec, axis=1)
    keep = (bonds["multiplicity"] == 1) & (length < r_bond) & (length > 1e-8)
    folded = _folded_edges(graph, supercell_in_primitive(phonon), r_bond)
    key_edges = _keys(graph.edge_src, graph.edge_dst, graph.edge_shift, graph.n_atoms)
    key_bonds = _keys(bonds["src"][keep], bonds["dst"][keep], bonds["shift"][keep], graph.n_atoms)
    lookup = {k: e for e, k in enumerate(key_edges)}
    edges, targets = [], []
    for k, block in zip(key_bonds, bonds["blocks"][keep]):
        e = lookup.get(k)
        if e is not None and not folded[e]:
            edges.append(e)
            targets.append(block)
    return np.array(edges, dtype=np.int64), np.array(targets, dtype=float).reshape(-1, 3, 3)


def supercell_in_primitive(phonon) -> np.ndarray:
    """The supercell's lattice vectors (columns) in the primitive cell's basis: an integer matrix."""
    smat = np.linalg.inv(phonon.primitive_matrix) @ phonon.supercell_matrix
    return np.rint(smat).astype(int)


def _folded_edges(graph: CrystalGraph, supercell: np.ndarray, r_bond: float) -> np.ndarray:
    """``(E,)`` bool: edges shorter than ``r_bond`` that share their supercell pair — atoms i, j and
    T modulo the supercell — with another such edge."""
    within = np.linalg.norm(graph.edge_vec, axis=1) < r_bond
    frac = graph.edge_shift @ np.linalg.inv(supercell).T  # T in the supercell's basis
    residue = np.rint((frac - np.floor(frac + 1e-6)) * 1e6).astype(np.int64) % 1_000_000
    keys = [(int(a), int(b), *map(int, r)) for a, b, r in zip(graph.edge_src, graph.edge_dst, residue)]
    counts: dict[tuple, int] = {}
    for k, w in zip(keys, within):
        if w:
            counts[k] = counts.get(k, 0) + 1
    return np.array([bool(w) and counts[k] > 1 for k, w in zip(keys, within)])


def _sorted_frequencies(phonon, qpoints: np.ndarray) -> np.ndarray:
    return np.sort(phonopy_frequencies_cm1(phonon, qpoints), axis=1)


def _keys(src, dst, shift, n_atoms) -> list[tuple]:
    return [(int(a), int(b), int(t[0]), int(t[1]), int(t[2])) for a, b, t in zip(src, dst, shift)]


@dataclass(frozen=True)
class ForceSetTargets:
    """The training and evaluation targets of one material (all in its primitive cell)."""

    material_id: str
    graph: CrystalGraph
    comm_qpoints: np.ndarray  # (n_c, 3) fractional
    comm_bands: np.ndarray  # (n_c, 3m) cm⁻¹
    block_edges: np.ndarray  # (K,) graph edge index
    block_values: np.ndarray  # (K, 3, 3) eV/Å²
    path_qpoints: np.ndarray | None  # (n_p, 3) fractional, for evaluation splits
    path_bands: np.ndarray | None  # (n_p, 3m) cm⁻¹, phonopy from the DFT force constants


def force_set_targets(fs: ForceSet, r_max: float, r_bond: float, with_path: bool) -> ForceSetTargets:
    """Everything the trainer and the evaluator need from one force set."""
    phonon = phonopy_from_force_set(fs)
    structure = primitive_structure(phonon, fs.material_id)
    graph = build_graph(structure, r_max=r_max)
    comm = commensurate_qpoints(phonon)
    edges, values = block_targets(phonon, graph, r_bond)
    path_q = path_b = None
    if with_path:
        from ..phonons.qpath import high_symmetry_path

        path_q = high_symmetry_path(structure).qpoints
        path_b = _sorted_frequencies(phonon, path_q)
    return ForceSetTargets(
        material_id=fs.material_id,
        graph=graph,
        comm_qpoints=comm,
        comm_bands=_sorted_frequencies(phonon, comm),
        block_edges=edges,
        block_values=values,
        path_qpoints=path_q,
        path_bands=path_b,
    )
