"""The build plan: what a build will do, decided once, the same for every executor.

:class:`BuildSettings` holds every number a build uses (mesh density, temperatures, size limits,
shard size). :func:`plan_build` reads every input once into a validated
:class:`~vgnn_core.crystal.crystal.Crystal` (or an :class:`InputFailure` with its cause) and
packs them into shards; :func:`finalize_build` closes the release.
"""

from __future__ import annotations

import hashlib
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from storage.release import finalize_release, release_dir
from storage.writer import write_shard
from vgnn_core import InvalidStructureError
from vgnn_core.crystal.crystal import Crystal

from .sources import SourceItem, resolve_source, source_partition

#: Temperatures (K) of the ``thermo`` table.
THERMO_TEMPERATURES = (0, 50, 100, 150, 200, 250, 298.15, 300, 400, 500, 600, 700, 800, 900, 1000)


@dataclass(frozen=True)
class BuildSettings:
    """Every number a database build uses (one place; recorded with the release)."""

    #: q-mesh density (points per Å⁻¹) of the DOS and thermal properties
    mesh_density: float = 30.0
    #: temperatures (K) of the ``thermo`` table
    temperatures: tuple[float, ...] = THERMO_TEMPERATURES
    #: a shard holds about this many atoms; a crystal above ``large_cell_atoms`` gets its own
    atoms_per_shard: int = 2000
    large_cell_atoms: int = 500
    #: Size limits (atoms per cell), chosen so no shard needs more than a few GB on a 24 GB
    #: machine: above ``bands_max_atoms`` k-MVN's band structure, DOS and thermo are skipped
    #: (one dense eigen-solve of a 3m × 3m complex matrix per q-point: 3,600² takes ~10 s and
    #: 200 MB; the Γ spectrum from MVN is still written) and a ``failures`` row with stage
    #: ``limit`` says so; above ``max_atoms`` the material is refused at ingest.
    bands_max_atoms: int = 1200
    max_atoms: int = 5000

    @property
    def temperature_array(self) -> np.ndarray:
        return np.asarray(self.temperatures, dtype=float)


@dataclass(frozen=True)
class Shard:
    shard_id: str
    material_ids: tuple[str, ...]
    n_atoms: int


@dataclass(frozen=True)
class InputFailure:
    """An input that could not be read or validated: it becomes a ``failures`` row."""

    material_id: str
    error_class: str
    message: str


#: What the plan holds for one material id.
PlannedInput = Crystal | InputFailure


def plan_shards(sizes: dict[str, int], atoms_per_shard: int = BuildSettings.atoms_per_shard,
                large_cell_atoms: int = BuildSettings.large_cell_atoms) -> list[Shard]:
    """Deterministic shards balanced by atom count; the same inputs always give the same plan.

    Materials are taken in id order and packed until a shard reaches ``atoms_per_shard``
    atoms; cells above ``large_cell_atoms`` go alone. A shard's id hashes its members, so a
    finished shard is recognised on a rerun and a changed one is not mistaken for it.
    """
    shards: list[Shard] = []
    current: list[str] = []
    atoms = 0

    def close(ids: list[str], n: int) -> None:
        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:10]
        shards.append(Shard(f"{len(shards):05d}-{digest}", tuple(ids), n))

    for mid in sorted(sizes):
        n = max(1, int(sizes[mid]))
        if n > large_cell_atoms:
            close([mid], n)
            continue
        if current and atoms + n > atoms_per_shard:
            close(current, atoms)
            current, atoms = [], 0
        current.append(mid)
        atoms += n
    if current:
        close(current, atoms)
    return shards


def read_inputs(items: list[SourceItem]) -> dict[str, PlannedInput]:
    """Read and validate every input once: a :class:`Crystal`, or why it cannot be one.

    A material id held by several inputs is a failure for every one of them (keyed
    ``<id>#<n>`` in the plan; the failure row keeps the id and names every origin): no input
    silently replaces another. No inputs at all raise :class:`~flows.sources.EmptySourceError`,
    before anything is written.
    """
    from collections import Counter

    from .sources import EmptySourceError

    if not items:
        raise EmptySourceError("the source has no structures: nothing to build")
    counts = Counter(item.material_id for item in items)
    origins: dict[str, list[str]] = {}
    for item in items:
        origins.setdefault(item.material_id, []).append(item.origin)
    out: dict[str, PlannedInput] = {}
    seen: Counter = Counter()
    for item in items:
        mid = item.material_id
        if counts[mid] > 1:
            seen[mid] += 1
            out[f"{mid}#{seen[mid]}"] = InputFailure(
                mid, "DuplicateMaterialId",
                f"{mid}: duplicate material id, held by {counts[mid]} inputs ({'; '.join(origins[mid])}): "
                f"none of them is built")
            continue
        try:
            out[mid] = item.read()
        except Exception as exc:  # noqa: BLE001 - one bad input is that material's failure row
            message = str(exc)
            if not isinstance(exc, InvalidStructureError) and exc.__traceback__ is not None:
                frame = traceback.extract_tb(exc.__traceback__)[-1]  # where an unexpected reader crash happened
                message += f" (raised at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
            out[mid] = InputFailure(mid, type(exc).__name__, message)
    return out


def sizes_of(inputs: dict[str, PlannedInput]) -> dict[str, int]:
    """Atom counts for the shard plan (1 for inputs that could not be read)."""
    return {mid: x.n_atoms if isinstance(x, Crystal) else 1 for mid, x in inputs.items()}


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do: its release, run id, settings and shards."""

    source: str
    release: str
    run_id: str
    started: object  # datetime (UTC)
    shards: list[Shard]
    inputs: dict[str, PlannedInput]
    settings: BuildSettings = field(default_factory=BuildSettings)
    source_version: str = ""

    @property
    def source_name(self) -> str:
        return source_partition(self.source)

    def items(self, shard: Shard) -> list[PlannedInput]:
        return [self.inputs[m] for m in shard.material_ids]


def plan_build(source: str, release: str | None = None, settings: BuildSettings | None = None) -> BuildPlan:
    """Ingest ``source`` and plan its shards; the default release is ``SOURCE-YYYYMMDD``."""
    import datetime as dt
    import uuid

    settings = settings or BuildSettings()
    items, version = resolve_source(source)
    inputs = read_inputs(items)
    return BuildPlan(
        source=source,
        release=release or f"{source_partition(source)}-{dt.date.today():%Y%m%d}",
        run_id=uuid.uuid4().hex[:12],
        started=dt.datetime.now(dt.timezone.utc),
        shards=plan_shards(sizes_of(inputs), settings.atoms_per_shard, settings.large_cell_atoms),
        inputs=inputs,
        settings=settings,
        source_version=version,
    )


def finalize_build(out: Path, plan: BuildPlan, models: list[dict], reports: list) -> dict:
    """Record the run in the ``runs`` table, write the release's manifest (last), summarise.

    ``models`` are ``{"name", "sha256", "kind"}`` of the models used; ``reports`` the
    :class:`~flows.shard.ShardReport` of every shard.
    """
    import datetime as dt

    from storage.release import code_version

    written, failed = sum(r.written for r in reports), sum(r.failed for r in reports)
    write_shard(release_dir(out, plan.release), plan.source_name, f"run-{plan.run_id}", {"runs": [{
        "run_id": plan.run_id, "started_at": plan.started, "finished_at": dt.datetime.now(dt.timezone.utc),
        "code_version": code_version(), "models": [m["name"] for m in models],
        "model_sha256s": [m["sha256"] for m in models], "source_version": plan.source_version or plan.source,
        "n_written": written, "n_failed": failed}]})
    finalize_release(out, plan.release, models=models, extra={"source": plan.source, "settings": asdict(plan.settings)})
    return {"release": plan.release, "shards": len(plan.shards), "skipped_shards": sum(r.skipped for r in reports),
            "written": written, "failed": failed}
