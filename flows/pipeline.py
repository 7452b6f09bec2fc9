"""The build, as plain functions: plan shards → predict a shard → write it → finalize.

The Prefect flow (``flows.build_flow``) runs exactly these functions as tasks on Dask
workers; keeping them plain makes every step testable and runnable without an orchestrator.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from storage.release import finalize_release, release_dir
from storage.rows import (
    THERMO_TEMPERATURES,
    bands_row,
    dos_row,
    gamma_row,
    structure_row,
    thermo_row,
)
from storage.writer import shard_complete, write_shard
from vgnn_core import InvalidStructureError, Predictor, as_structure

#: q-mesh density (points per Å⁻¹) of the database's DOS and thermal properties.
MESH_DENSITY = 30.0
#: Tables a shard writes (besides ``failures``); a material is in all that apply or in none.
MATERIAL_TABLES = ("structures", "gamma", "bands", "thermo", "dos")

#: A shard holds about this many atoms; a crystal larger than LARGE_CELL_ATOMS gets its own.
ATOMS_PER_SHARD = 2000
LARGE_CELL_ATOMS = 500
#: Size limits (atoms per cell), chosen so no shard needs more than a few GB on a 24 GB machine:
#: above BANDS_MAX_ATOMS k-MVN's band structure, DOS and thermo are skipped (one dense eigen-
#: solve of a 3m × 3m complex matrix per q-point: 3,600² takes ~10 s and 200 MB; the Γ spectrum
#: from MVN is still written) and a ``failures`` row with stage ``limit`` says so; above
#: MAX_ATOMS the material is refused at ingest (its Γ solve alone would need > 2 GB).
BANDS_MAX_ATOMS = 1200
MAX_ATOMS = 5000


@dataclass(frozen=True)
class Shard:
    shard_id: str
    material_ids: tuple[str, ...]
    n_atoms: int


@dataclass
class ShardReport:
    shard_id: str
    written: int = 0
    failed: int = 0
    skipped: bool = False
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)  # {"name", "sha256", "kind"} used


def plan_shards(sizes: dict[str, int], atoms_per_shard: int = ATOMS_PER_SHARD,
                large_cell_atoms: int = LARGE_CELL_ATOMS) -> list[Shard]:
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


def _failure(mid: str, stage: str, exc: BaseException, run_id: str) -> dict:
    """A ``failures`` row; for unexpected errors the message ends with where it was raised."""
    message = str(exc)
    if not isinstance(exc, InvalidStructureError) and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        message += f" (raised at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    return {"material_id": mid, "stage": stage, "error_class": type(exc).__name__,
            "message": message[:2000], "run_id": run_id}


def predict_shard(
    items: Sequence[tuple[str, object]],
    gamma_model: tuple[str, str, Predictor] | None,
    bands_model: tuple[str, str, Predictor] | None,
    run_id: str,
) -> dict[str, list[dict]]:
    """Rows for every table from one shard's (material_id, structure or path) items.

    ``*_model`` is ``(name, sha256, predictor)``. A structure that cannot be read, graphed or
    predicted becomes a ``failures`` row with its cause; every other structure is written.
    """
    rows: dict[str, list[dict]] = {t: [] for t in (*MATERIAL_TABLES, "failures")}
    good: list[tuple[str, object]] = []
    for mid, obj in items:
        try:
            s = as_structure(obj, name=mid)
            if len(s) > MAX_ATOMS:
                raise InvalidStructureError(mid, f"{len(s)} atoms in the cell, above the database limit of {MAX_ATOMS}")
            rows["structures"].append(structure_row(s, mid))
            good.append((mid, s))
        except InvalidStructureError as exc:
            rows["failures"].append(_failure(mid, "ingest", exc, run_id))
        except Exception as exc:  # noqa: BLE001 - any reader crash is this material's failure
            rows["failures"].append(_failure(mid, "ingest", exc, run_id))
    for model, table in ((gamma_model, "gamma"), (bands_model, "bands")):
        if model is None or not good:
            continue
        name, sha, predictor = model
        todo = good
        if table == "bands":
            todo = [(mid, s) for mid, s in good if len(s) <= BANDS_MAX_ATOMS]
            for mid, s in good:
                if len(s) > BANDS_MAX_ATOMS:
                    rows["failures"].append({
                        "material_id": mid, "stage": "limit", "error_class": "CellTooLargeForBands",
                        "message": f"{mid}: {len(s)} atoms > {BANDS_MAX_ATOMS}: band structure, DOS and thermo "
                                   "skipped (Γ spectrum written)", "run_id": run_id})
        if not todo:
            continue
        ok_ids, results, failed = _predict_isolating_failures(todo, predictor, table)
        for mid, exc in failed:
            rows["failures"].append(_failure(mid, "predict", exc, run_id))
        for mid, res in zip(ok_ids, results):
            try:  # a row that cannot be built loses its material, never the shard
                made = _result_rows(mid, name, sha, res, table)
            except Exception as exc:  # noqa: BLE001
                rows["failures"].append(_failure(mid, "predict", exc, run_id))
                continue
            for t, row in made.items():
                rows[t].append(row)
    # a material that failed any prediction is not half-written (a size limit is not a failure)
    failed_ids = {f["material_id"] for f in rows["failures"] if f["stage"] != "limit"}
    for table in MATERIAL_TABLES:
        rows[table] = [r for r in rows[table] if r["material_id"] not in failed_ids]
    return rows


def _result_rows(mid: str, name: str, sha: str, res, table: str) -> dict[str, dict]:
    """The table rows of one material's prediction (Γ spectrum, or bands + thermo + DOS)."""
    trust = {"uncertainty_cm1": res.uncertainty_cm1, "in_domain": res.in_domain}
    if table == "gamma":
        return {"gamma": gamma_row(mid, name, sha, res.gamma, **trust)}
    return {"bands": bands_row(mid, name, sha, res.qpath, res.bands, **trust),  # a k-MVN PhononResult
            "thermo": thermo_row(mid, name, sha, res.structure, res.mesh, res.thermal),
            "dos": dos_row(mid, name, sha, res.mesh, res.dos)}


def _predict(structures, predictor: Predictor, table: str):
    if table == "gamma":
        return predictor.predict_phonons(structures, bands=False, thermal=False)
    return predictor.predict_phonons(structures, density=MESH_DENSITY, temperatures=THERMO_TEMPERATURES)


def _predict_isolating_failures(good, predictor, table):
    """Batch prediction; if the batch fails, one by one so only the culprit is lost."""
    ids = [m for m, _ in good]
    structures = [s for _, s in good]
    try:
        return ids, _predict(structures, predictor, table), []
    except Exception:  # noqa: BLE001
        ok_ids, results, failed = [], [], []
        for mid, s in good:
            try:
                results.append(_predict([s], predictor, table)[0])
                ok_ids.append(mid)
            except Exception as exc:  # noqa: BLE001
                failed.append((mid, exc))
        return ok_ids, results, failed


def run_shard(
    shard: Shard,
    items: Sequence[tuple[str, object]],
    out: Path,
    release: str,
    source: str,
    gamma_model,
    bands_model,
    run_id: str,
) -> ShardReport:
    """Predict and write one shard, unless it is already complete (resumable, idempotent)."""
    import time

    t0 = time.perf_counter()
    rdir = release_dir(out, release)
    if shard_complete(rdir, source, shard.shard_id):
        return ShardReport(shard.shard_id, skipped=True)
    try:
        rows = predict_shard(items, gamma_model, bands_model, run_id)
    except Exception as exc:  # noqa: BLE001 - never lose the shard's other materials silently
        rows = {t: [] for t in MATERIAL_TABLES}
        rows["failures"] = [_failure(mid, "predict", exc, run_id) for mid, _ in items]
        traceback.print_exc()
    write_shard(rdir, source, shard.shard_id, rows)
    failed = {f["material_id"] for f in rows["failures"] if f["stage"] != "limit"}
    return ShardReport(shard.shard_id, written=len(rows["structures"]), failed=len(failed),
                       seconds=time.perf_counter() - t0, failures=rows["failures"])


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do: its release, run id and shards (the same for every executor)."""

    source: str
    release: str
    run_id: str
    started: object  # datetime (UTC)
    shards: list[Shard]
    structures: dict[str, object]
    source_version: str = ""

    @property
    def source_name(self) -> str:
        return source_partition(self.source)

    def items(self, shard: Shard) -> list[tuple[str, object]]:
        return [(m, self.structures[m]) for m in shard.material_ids]


def plan_build(source: str, release: str | None = None, atoms_per_shard: int = ATOMS_PER_SHARD) -> BuildPlan:
    """Ingest ``source`` and plan its shards; the default release is ``SOURCE-YYYYMMDD``."""
    import datetime as dt
    import uuid

    from .sources import resolve_source

    items, version = resolve_source(source)
    items = read_for_plan(items)
    source_name = source_partition(source)
    return BuildPlan(
        source=source,
        release=release or f"{source_name}-{dt.date.today():%Y%m%d}",
        run_id=uuid.uuid4().hex[:12],
        started=dt.datetime.now(dt.timezone.utc),
        shards=plan_shards(sizes_of(items), atoms_per_shard),
        structures=dict(items),
        source_version=version,
    )


def source_partition(source: str) -> str:
    """The ``source`` partition of a spec: its kind (``dir``, ``mp``, ``zeolites``…)."""
    kind = source.partition(":")[0]
    return "zeolites" if kind == "iza" else kind


def finalize_build(out: Path, plan: BuildPlan, models: list[dict], reports: list[ShardReport]) -> dict:
    """Record the run in the ``runs`` table, write the release's manifest (last), summarise.

    ``models`` are ``{"name", "sha256", "kind"}`` of the models used.
    """
    import datetime as dt

    from storage.release import code_version

    written, failed = sum(r.written for r in reports), sum(r.failed for r in reports)
    write_shard(release_dir(out, plan.release), plan.source_name, f"run-{plan.run_id}", {"runs": [{
        "run_id": plan.run_id, "started_at": plan.started, "finished_at": dt.datetime.now(dt.timezone.utc),
        "code_version": code_version(), "models": [m["name"] for m in models],
        "model_sha256s": [m["sha256"] for m in models], "source_version": plan.source_version or plan.source,
        "n_written": written, "n_failed": failed}]})
    finalize_release(out, plan.release, models=models, extra={"source": plan.source})
    return {"release": plan.release, "shards": len(plan.shards), "skipped_shards": sum(r.skipped for r in reports),
            "written": written, "failed": failed}


def read_for_plan(items: Sequence[tuple[str, object]]) -> list[tuple[str, object]]:
    """Read every input once, for its atom count and for the shard that will predict it.

    An input that cannot be read stays as it is (atom count 1 for planning); its shard
    records the failure with the cause.
    """
    out = []
    for mid, obj in items:
        try:
            structure = obj.read() if hasattr(obj, "read") and not hasattr(obj, "lattice") else obj
            out.append((mid, as_structure(structure, name=mid)))
        except Exception:  # noqa: BLE001 - planning must not fail
            out.append((mid, obj))
    return out


def sizes_of(items: Sequence[tuple[str, object]]) -> dict[str, int]:
    """Atom counts of read structures (1 for inputs that could not be read)."""
    return {mid: len(obj) if hasattr(obj, "lattice") else 1 for mid, obj in items}


