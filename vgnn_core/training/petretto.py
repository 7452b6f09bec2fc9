"""The Petretto et al. (2018) DFPT phonon database, read straight from its archive.

Each material is one JSON file (``<mp-id>.json``) holding the primitive cell as a CIF string,
the q-points of a high-symmetry path (fractional, in that cell's reciprocal basis) and the
band structure in cm⁻¹ (signed: negative = imaginary). The archive is read member by member
with :mod:`tarfile`; nothing is extracted.
"""

from __future__ import annotations

import json
import tarfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from ..crystal.graph import build_graph, graph_arrays, graph_from_arrays
from ..files import save_npz_atomic
from ..settings import cache_dir, shared_data_dir
from .samples import PhononSample

ARCHIVE_RELATIVE = Path("petretto2018") / "phonon_json.tar.gz"
SPLIT_RELATIVE = Path("petretto2018") / "split.json"


@dataclass
class PhononRecord:
    """One material of the database."""

    material_id: str
    structure: Structure
    qpoints: np.ndarray  # (n_q, 3) fractional
    bands: np.ndarray  # (n_q, 3m) cm⁻¹, sorted per q
    thermo: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def gamma_index(self) -> int | None:
        """Index of the first Γ point of the path (``None`` if the path has none)."""
        hits = np.flatnonzero(np.abs(self.qpoints).max(axis=1) < 1e-8)
        return int(hits[0]) if len(hits) else None


def default_archive() -> Path:
    """``$VGNN_DATA_DIR/petretto2018/phonon_json.tar.gz``; raises when it is absent."""
    root = shared_data_dir()
    if root is None or not (root / ARCHIVE_RELATIVE).is_file():
        raise FileNotFoundError(
            "Petretto 2018 archive not found: set VGNN_DATA_DIR to a folder holding "
            f"{ARCHIVE_RELATIVE} (original: figshare doi:10.6084/m9.figshare.c.3938023)"
        )
    return root / ARCHIVE_RELATIVE


def load_split(path: str | Path | None = None) -> dict[str, list[str]]:
    """The fixed train / val / test / reference_test_subset split by material id."""
    if path is None:
        root = shared_data_dir()
        if root is None:
            raise FileNotFoundError("split.json not found: set VGNN_DATA_DIR")
        path = root / SPLIT_RELATIVE
    data = json.loads(Path(path).read_text())
    return {k: list(v) for k, v in data.items() if isinstance(v, list)}


def parse_record(data: dict) -> PhononRecord:
    """A :class:`PhononRecord` from one decoded JSON file."""
    meta = data["metadata"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF stoichiometry notices
        structure = Structure.from_str(meta["structure"], fmt="cif", primitive=False)
    structure.properties = {"material_id": meta["material_id"]}
    phonon = data["phonon"]
    thermo = {k: np.asarray(v, dtype=float) for k, v in (data.get("thermo") or {}).items() if v}
    return PhononRecord(
        material_id=meta["material_id"],
        structure=structure,
        qpoints=np.asarray(phonon["qpts"], dtype=float),
        bands=np.asarray(phonon["ph_bandstructure"], dtype=float),
        thermo=thermo,
    )


def iter_petretto(
    source: str | Path | None = None, ids: Iterable[str] | None = None, limit: int | None = None
) -> Iterator[PhononRecord]:
    """Records from a ``.tar(.gz)`` archive or a folder of ``<mp-id>.json`` files.

    In archive (or sorted file) order, optionally only ``ids``; ``source`` defaults to
    :func:`default_archive`.
    """
    wanted = set(ids) if ids is not None else None
    count = 0
    for material_id, load in _json_members(Path(source or default_archive())):
        if wanted is not None and material_id not in wanted:
            continue
        yield parse_record(load())
        count += 1
        if limit is not None and count >= limit:
            return


def _json_members(source: Path):
    if source.is_dir():
        for path in sorted(source.rglob("*.json")):
            yield path.stem, (lambda p=path: json.loads(p.read_text()))
        return
    with tarfile.open(source, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                data = tar.extractfile(member).read()
                yield Path(member.name).stem, (lambda d=data: json.loads(d))


# --- training samples: graphs + targets, cached on disk -------------------------------------

#: Bump when graph construction or target extraction changes: invalidates caches.
SAMPLE_FORMAT_VERSION = 1


def to_sample(record: PhononRecord, r_max: float) -> PhononSample:
    gi = record.gamma_index
    cv = None
    if "C_v" in record.thermo and "temperature" in record.thermo:
        cv = float(np.interp(300.0, record.thermo["temperature"], record.thermo["C_v"]))
    return PhononSample(
        material_id=record.material_id,
        graph=build_graph(record.structure, r_max=r_max),
        qpoints=record.qpoints,
        bands=record.bands,
        gamma=None if gi is None else record.bands[gi],
        cv_300k=cv,
    )


def load_samples(
    ids: Iterable[str] | None = None,
    r_max: float = 4.0,
    archive: str | Path | None = None,
    use_cache: bool = True,
) -> list[PhononSample]:
    """Training samples for ``ids`` (all when ``None``), in the order of ``ids``.

    The whole archive is converted once per (archive, r_max, format version) and cached as one
    ``.npz`` of plain arrays (read without pickle), so later runs never rebuild graphs.
    """
    import hashlib

    archive = Path(archive or default_archive())
    stat = archive.stat()
    key = hashlib.sha256(
        f"{archive.name}|{stat.st_size}|{r_max}|{SAMPLE_FORMAT_VERSION}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"petretto_samples_{key}.npz"
    samples: dict[str, PhononSample] | None = None
    if use_cache and path.is_file():
        samples = _read_samples(path)
    if samples is None:
        samples = {r.material_id: to_sample(r, r_max) for r in iter_petretto(archive)}
        if use_cache:
            save_npz_atomic(path, _sample_arrays(samples.values()))
    if ids is None:
        return list(samples.values())
    missing = [i for i in ids if i not in samples]
    if missing:
        raise KeyError(f"{len(missing)} ids not in the archive, e.g. {missing[:3]}")
    return [samples[i] for i in ids]


def _sample_arrays(samples: Iterable[PhononSample]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for s in samples:
        fields = graph_arrays(s.graph) | {"qpoints": s.qpoints, "bands": s.bands,
                                          "cv_300k": np.float64(np.nan if s.cv_300k is None else s.cv_300k)}
        if s.gamma is not None:
            fields["gamma"] = s.gamma
        arrays.update({f"{s.material_id}/{k}": v for k, v in fields.items()})
    return arrays


def _read_samples(path: Path) -> dict[str, PhononSample]:
    out: dict[str, dict] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            material_id, field_name = key.split("/", 1)
            out.setdefault(material_id, {})[field_name] = z[key]
    samples = {}
    for material_id, f in out.items():
        cv = float(f["cv_300k"])
        samples[material_id] = PhononSample(
            material_id=material_id, graph=graph_from_arrays(material_id, f), qpoints=f["qpoints"],
            bands=f["bands"], gamma=f.get("gamma"), cv_300k=None if np.isnan(cv) else cv)
    return samples
