"""Togo's phonondb finite-displacement force sets as training data (VASP PBEsol).

Each material of ``togo_phonondb/force_sets.tar.xz`` is phonopy's type-1 data set in arrays:
the unit cell, phonopy's ``DIM`` and ``PRIMITIVE_AXIS``, and the forces on every supercell atom
for each displaced atom. From it phonopy produces force constants (symmetrised: exact acoustic
sum rule and index-permutation symmetry), and from those this module derives, in the primitive
cell the networks see:

* **commensurate frequencies** — ω at the q-points commensurate with the supercell. There the
  supercell force constants define D(q) exactly: no interpolation, no choice of images;
* **force-constant blocks** Φ_ij(T) (eV/Å², general 3×3) of the bonds whose shortest image in
  the supercell is unique and shorter than the bond cutoff: those are what the supercell
  measured, up to the (small) blocks of images one supercell away;
* for evaluation splits, the band structure along the high-symmetry path interpolated by
  phonopy from the DFT force constants (no non-analytic correction), as phonondb shows it.

Samples are cached as one ``.npz`` per material (arrays only, nothing executable), keyed by the
archive, the graph cutoff and :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data_paths import shared_data_dir
from .files import save_npz_atomic
from .force_constants import phonopy_bonds
from .graph import CrystalGraph, build_graph, graph_arrays, graph_from_arrays
from .phonopy_reference import phonopy_frequencies_cm1

FORCE_SETS_RELATIVE = Path("togo_phonondb") / "force_sets.tar.xz"
#: Bump when a target's definition changes: invalidates the on-disk samples.
FORMAT_VERSION = 1
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

    smat = np.linalg.inv(phonon.primitive_matrix) @ phonon.supercell_matrix
    return np.asarray(get_commensurate_points(np.rint(smat).astype(int)), dtype=float)


def block_targets(phonon, graph: CrystalGraph, r_bond: float) -> tuple[np.ndarray, np.ndarray]:
    """Graph edges whose Φ_ij(T) the supercell defines without ambiguity, and those blocks.

    An off-site bond qualifies when its image is the unique shortest one in the supercell and
    it is shorter than ``r_bond``. Returns ``(edge_index (K,), blocks (K, 3, 3) eV/Å²)``.
    """
    bonds = phonopy_bonds(phonon)
    lattice = graph.lattice
    vec = graph.positions[bonds["dst"]] + bonds["shift"] @ lattice - graph.positions[bonds["src"]]
    length = np.linalg.norm(vec, axis=1)
    keep = (bonds["multiplicity"] == 1) & (length < r_bond) & (length > 1e-8)
    key_edges = _keys(graph.edge_src, graph.edge_dst, graph.edge_shift, graph.n_atoms)
    key_bonds = _keys(bonds["src"][keep], bonds["dst"][keep], bonds["shift"][keep], graph.n_atoms)
    lookup = {k: e for e, k in enumerate(key_edges)}
    edges, targets = [], []
    for k, block in zip(key_bonds, bonds["blocks"][keep]):
        e = lookup.get(k)
        if e is not None:
            edges.append(e)
            targets.append(block)
    return np.array(edges, dtype=np.int64), np.array(targets, dtype=float).reshape(-1, 3, 3)


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
        from .qpath import high_symmetry_path

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


# --- on-disk cache: one npz per material -------------------------------------------------------

def save_targets(t: ForceSetTargets, path: Path) -> None:
    """Write ``t`` as a plain ``.npz`` (atomically: a temporary file, then a rename)."""
    arrays = graph_arrays(t.graph)
    arrays.update(comm_qpoints=t.comm_qpoints, comm_bands=t.comm_bands, block_edges=t.block_edges,
                  block_values=t.block_values)
    if t.path_qpoints is not None:
        arrays.update(path_qpoints=t.path_qpoints, path_bands=t.path_bands)
    save_npz_atomic(path, arrays)


def load_targets(material_id: str, path: Path) -> ForceSetTargets:
    """Read a file written by :func:`save_targets` (no pickle: ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        graph = graph_from_arrays(material_id, z)
        has_path = "path_qpoints" in z.files
        return ForceSetTargets(
            material_id=material_id, graph=graph, comm_qpoints=z["comm_qpoints"], comm_bands=z["comm_bands"],
            block_edges=z["block_edges"], block_values=z["block_values"],
            path_qpoints=z["path_qpoints"] if has_path else None, path_bands=z["path_bands"] if has_path else None,
        )


def targets_cache_dir(archive: Path, r_max: float, r_bond: float, cache_root: Path) -> Path:
    """The cache folder of one (archive, cutoffs, format) combination."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.name}|{stat.st_size}|{r_max}|{r_bond}|{FORMAT_VERSION}".encode()).hexdigest()[:16]
    return cache_root / f"phonondb_targets_{key}"


def prepare_targets(
    ids_with_path: Sequence[str],
    r_max: float,
    r_bond: float,
    archive: str | Path | None = None,
    cache_root: Path | None = None,
    ids: Iterable[str] | None = None,
    progress=None,
) -> dict[str, str]:
    """Compute and cache the targets of every material (or ``ids``); returns failures by id.

    Resumable: materials already cached are skipped. Materials in ``ids_with_path`` also get
    their DFT path bands (the evaluation splits). A material that phonopy cannot process is
    recorded in ``failures.json`` with its one-line cause and left out.
    """
    from .dataset import cache_dir

    archive = Path(archive or default_force_sets())
    folder = targets_cache_dir(archive, r_max, r_bond, cache_root or cache_dir())
    with_path = set(ids_with_path)
    failures_file = folder / "failures.json"
    failures: dict[str, str] = json.loads(failures_file.read_text()) if failures_file.is_file() else {}
    done = {p.stem for p in folder.glob("*.npz")} if folder.is_dir() else set()
    wanted = set(ids) if ids is not None else None
    n = 0
    for fs in iter_force_sets(archive, ids=wanted):
        if fs.material_id in done or fs.material_id in failures:
            continue
        try:
            t = force_set_targets(fs, r_max, r_bond, with_path=fs.material_id in with_path)
        except Exception as exc:  # one bad material must not stop the others
            failures[fs.material_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            folder.mkdir(parents=True, exist_ok=True)
            failures_file.write_text(json.dumps(failures, indent=1, sort_keys=True))
            continue
        save_targets(t, folder / f"{fs.material_id}.npz")
        n += 1
        if progress and n % 200 == 0:
            progress(f"{n} materials prepared ({fs.material_id})")
    return failures


# --- the fixed split ----------------------------------------------------------------------------

SPLIT_FILE = Path(__file__).with_name("phonondb_split.json")
SPLIT_SEED = 20261201


def make_split(ids: Sequence[str], always_train: Iterable[str] = (), fractions=(0.90, 0.05, 0.05),
               seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """A seeded train / val / test split of ``ids`` by material id.

    ``always_train`` (the Petretto ``train`` materials the pack shares) stay in train, so that
    val and test hold only crystals no shipped or published model was trained on.
    """
    ids = sorted(set(ids))
    forced = sorted(set(always_train) & set(ids))
    free = [i for i in ids if i not in set(forced)]
    order = np.random.default_rng(seed).permutation(len(free))
    n_val = round(fractions[1] * len(ids))
    n_test = round(fractions[2] * len(ids))
    val = sorted(free[k] for k in order[:n_val])
    test = sorted(free[k] for k in order[n_val : n_val + n_test])
    train = sorted(forced + [free[k] for k in order[n_val + n_test :]])
    return {"train": train, "val": val, "test": test}


def load_split(path: str | Path | None = None) -> dict[str, list[str]]:
    """The committed split of the phonondb force sets (train / val / test by material id)."""
    data = json.loads(Path(path or SPLIT_FILE).read_text())
    return {k: list(v) for k, v in data.items() if isinstance(v, list)}


def load_samples(
    ids: Sequence[str], r_max: float, r_bond: float, evaluation: bool = False,
    archive: str | Path | None = None, cache_root: Path | None = None,
):
    """:class:`~vgnn_core.dataset.PhononSample` of ``ids`` from the prepared cache.

    Training samples (``evaluation=False``) carry the commensurate frequencies and the
    force-constant blocks; evaluation samples the DFT path bands (prepared for val / test).
    Materials that phonopy could not process (``failures.json``) are left out; a material
    neither prepared nor failed raises, naming :func:`prepare_targets`.
    """
    from .dataset import PhononSample, cache_dir

    archive = Path(archive or default_force_sets())
    folder = targets_cache_dir(archive, r_max, r_bond, cache_root or cache_dir())
    failures_file = folder / "failures.json"
    failed = set(json.loads(failures_file.read_text())) if failures_file.is_file() else set()
    out = []
    for material_id in ids:
        if material_id in failed:
            continue
        path = folder / f"{material_id}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{material_id}: phonondb targets not prepared in {folder}; run "
                                    "`vgnn prepare-phonondb` (vgnn_core.phonondb.prepare_targets)")
        t = load_targets(material_id, path)
        if evaluation:
            if t.path_qpoints is None:
                raise ValueError(f"{material_id}: prepared without path bands (not an evaluation material)")
            q, bands = t.path_qpoints, t.path_bands
        else:
            q, bands = t.comm_qpoints, t.comm_bands
        at_gamma = np.flatnonzero(np.abs(q).max(axis=1) < 1e-8)
        out.append(PhononSample(
            material_id=material_id, graph=t.graph, qpoints=q, bands=bands,
            gamma=bands[at_gamma[0]] if len(at_gamma) else None,
            block_edges=None if evaluation else t.block_edges,
            block_values=None if evaluation else t.block_values,
            source="phonondb",
        ))
    return out
