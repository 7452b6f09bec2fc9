"""Togo's phonondb finite-displacement force sets as training data (VASP PBEsol): cache, split, samples.

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
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..crystal.graph import graph_arrays, graph_from_arrays
from ..files import save_npz_atomic, write_text_atomic
from ..settings import cache_dir
from .force_sets import (
    FORMAT_VERSION,
    ForceSetTargets,
    default_force_sets,
    force_set_targets,
    iter_force_sets,
)
from .samples import PhononSample

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
            write_text_atomic(failures_file, json.dumps(failures, indent=1, sort_keys=True))
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
    """:class:`~vgnn_core.training.samples.PhononSample` of ``ids`` from the prepared cache.

    Training samples (``evaluation=False``) carry the commensurate frequencies and the
    force-constant blocks; evaluation samples the DFT path bands (prepared for val / test).
    Materials that phonopy could not process (``failures.json``) are left out; a material
    neither prepared nor failed raises, naming :func:`prepare_targets`.
    """
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
                                    "`vgnn prepare-phonondb` (vgnn_core.training.phonondb.prepare_targets)")
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
            source="phonondb", supercell_cells=len(t.comm_qpoints),
        ))
    return out
