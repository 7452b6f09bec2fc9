"""One shard of a build: predict its crystals with the build's models and write their rows.

A crystal that cannot be read, graphed or predicted becomes a ``failures`` row with its cause;
every other crystal of the shard is written into the release's working folder. A finished
shard (same content, same models) is skipped on a rerun, so a killed build resumes and
produces the same rows.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storage.release import release_dir
from storage.rows import (
    bands_row,
    dos_row,
    gamma_row,
    nac_columns,
    phonon_method,
    structure_row,
    thermo_row,
)
from storage.writer import read_marker, write_shard
from vgnn_core import InvalidStructureError
from vgnn_core.crystal.crystal import Crystal
from vgnn_core.timing import StageClock, maybe_stage

from .plan import BuildSettings, InputFailure, PlannedInput, Shard

if TYPE_CHECKING:  # the models (torch, e3nn) are imported where they run, not where a build is planned
    from .models import BuildModels, LoadedModel

#: Tables a shard writes (besides ``failures``); a material is in all that apply or in none.
MATERIAL_TABLES = ("structures", "gamma", "bands", "thermo", "dos")


@dataclass
class ShardReport:
    """What one shard did: materials written and failed (or ``skipped``: already complete), its
    wall ``seconds`` and their split by stage (``stage_seconds``, wall s: the prediction's stages of
    :mod:`vgnn_core.timing`, ``rows`` for building the table rows, ``write`` for the Parquet), and
    where and when it ran (``worker``, ``started``, ``finished``: :func:`flows.plan.build_timeline`)."""

    shard_id: str
    written: int = 0
    failed: int = 0
    skipped: bool = False
    seconds: float = 0.0
    worker: str = ""  # host:pid:thread that ran it (one of the cluster's task slots)
    started: float = 0.0  # Unix time (s) of its start and end, for the build's timeline
    finished: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)  # {"name", "sha256", "kind"} used


def _failure(mid: str, stage: str, exc: BaseException, run_id: str) -> dict:
    """A ``failures`` row; for unexpected errors the message ends with where it was raised."""
    message = str(exc)
    if not isinstance(exc, InvalidStructureError) and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        message += f" (raised at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    return {"material_id": mid, "stage": stage, "error_class": type(exc).__name__,
            "message": message[:2000], "run_id": run_id}


@dataclass(frozen=True)
class PredictionWork:
    """Which of a shard's crystals go through which prediction call (:func:`split_work`).

    ``both``: Γ spectrum and bands from one forward pass of the networks the two models share;
    ``gamma``: Γ spectrum alone; ``bands``: bands, DOS and thermo alone; ``too_large_for_bands``:
    where the build has a band model, its crystals above ``BuildSettings.bands_max_atoms`` (no band
    structure; they are in ``gamma`` when the build has a Γ model)."""

    both: list[Crystal]
    gamma: list[Crystal]
    bands: list[Crystal]
    too_large_for_bands: list[Crystal]

    def calls(self) -> list[tuple[str, list[Crystal]]]:
        """The non-empty calls in the order a shard makes them: ``(call, crystals)`` with call
        ``both``, ``gamma`` or ``bands`` (the ``call`` argument of :func:`predict_call`)."""
        return [(call, todo) for call, todo in (("both", self.both), ("gamma", self.gamma), ("bands", self.bands))
                if todo]


def split_work(crystals: Sequence[Crystal], models: BuildModels, settings: BuildSettings) -> PredictionWork:
    """Split ``crystals`` between the build's prediction calls. Where the Γ model runs the band
    model's networks (``models.share_networks``), the crystals within the band limit get both
    tables from one call and only the larger ones a Γ-only call; otherwise every crystal gets a Γ
    call and those within the limit a band call."""
    small = [c for c in crystals if c.n_atoms <= settings.bands_max_atoms]
    large = [c for c in crystals if c.n_atoms > settings.bands_max_atoms] if models.bands is not None else []
    gamma = list(crystals) if models.gamma is not None else []
    bands = small if models.bands is not None else []
    if gamma and bands and models.share_networks:
        return PredictionWork(both=bands, gamma=list(large), bands=[], too_large_for_bands=large)
    return PredictionWork(both=[], gamma=gamma, bands=bands, too_large_for_bands=large)


def predict_shard(
    inputs: Sequence[PlannedInput],
    models: BuildModels,
    run_id: str,
    settings: BuildSettings | None = None,
    clock: StageClock | None = None,
) -> dict[str, list[dict]]:
    """Rows for every table from one shard's planned inputs (``clock``: seconds per stage).

    Where the Γ model runs the band model's networks (``models.share_networks``), the crystals
    within the band limit get both tables from one forward pass per batch and the larger cells Γ
    alone; their Γ batches then differ from a Γ-only pass over the whole shard, which changes Γ
    by float32 round-off only (≤ 1e-4 cm⁻¹ measured; the tolerance everywhere is 1e-3). A crystal
    whose prediction fails gets one ``predict`` failure row and no rows in any table."""
    settings = settings or BuildSettings()
    rows: dict[str, list[dict]] = {t: [] for t in (*MATERIAL_TABLES, "failures")}
    good: list[Crystal] = []
    for x in inputs:
        if isinstance(x, InputFailure):
            rows["failures"].append({"material_id": x.material_id, "stage": "ingest", "error_class": x.error_class,
                                     "message": x.message[:2000], "run_id": run_id})
            continue
        try:
            if x.n_atoms > settings.max_atoms:
                raise InvalidStructureError(
                    x.name, f"{x.n_atoms} atoms in the cell, above the database limit of {settings.max_atoms}")
            rows["structures"].append(structure_row(x, x.name))
            good.append(x)
        except Exception as exc:  # noqa: BLE001 - any failure here is this material's alone
            rows["failures"].append(_failure(x.name, "ingest", exc, run_id))
    work = split_work(good, models, settings)
    for c in work.too_large_for_bands:  # empty without a band model
        rows["failures"].append({
            "material_id": c.name, "stage": "limit", "error_class": "CellTooLargeForBands",
            "message": f"{c.name}: {c.n_atoms} atoms > {settings.bands_max_atoms}: band structure, DOS "
                       "and thermo skipped (Γ spectrum written)", "run_id": run_id})
    outcome: dict[str, tuple[list, list]] = {"gamma": ([], []), "bands": ([], [])}  # (done, failed) per table
    for call, todo in work.calls():
        done, failed = _predict_isolating_failures(todo, models, call, settings, clock)
        if call == "both":  # one forward pass of the shared networks for both tables
            outcome["gamma"][0].extend((c, g) for c, (g, _) in done)
            outcome["bands"][0].extend((c, b) for c, (_, b) in done)
        else:
            outcome[call][0].extend(done)
        outcome["gamma" if call == "both" else call][1].extend(failed)
    order = {c.name: k for k, c in enumerate(good)}
    for model, table in ((models.gamma, "gamma"), (models.bands, "bands")):
        done, failed = outcome[table]
        for mid, exc in failed:
            rows["failures"].append(_failure(mid, "predict", exc, run_id))
        with maybe_stage(clock, "rows"):
            for c, res in sorted(done, key=lambda item: order[item[0].name]):
                try:  # a row that cannot be built loses its material, never the shard
                    made = _result_rows(c, model, res, table)
                except Exception as exc:  # noqa: BLE001
                    rows["failures"].append(_failure(c.name, "predict", exc, run_id))
                    continue
                for t, row in made.items():
                    rows[t].append(row)
    # a material that failed any prediction is not half-written (a size limit is not a failure)
    failed_ids = {f["material_id"] for f in rows["failures"] if f["stage"] != "limit"}
    for table in MATERIAL_TABLES:
        rows[table] = [r for r in rows[table] if r["material_id"] not in failed_ids]
    return rows


def _result_rows(crystal: Crystal, model: LoadedModel, res, table: str) -> dict[str, dict]:
    """The table rows of one material's prediction (Γ spectrum, or bands + thermo + DOS)."""
    mid, name, sha = crystal.name, model.name, model.sha256
    method = phonon_method(model.kind)
    trust = {"uncertainty_cm1": res.uncertainty_cm1, "in_domain": res.in_domain, "method": method,
             "nac": nac_columns(res), "likely_unstable": res.likely_unstable}
    if table == "gamma":
        return {"gamma": gamma_row(mid, name, sha, res.gamma, **trust)}
    return {"bands": bands_row(mid, name, sha, res.qpath, res.bands, **trust),  # a k-MVN PhononResult
            "thermo": thermo_row(mid, name, sha, res.structure, res.mesh, res.thermal, method),
            "dos": dos_row(mid, name, sha, res.mesh, res.dos, method)}


def build_nac(model: LoadedModel, settings: BuildSettings) -> bool | None:
    """The ``nac`` a build passes to ``model``'s predictions: ``True`` (predicted charges) for a
    k-MVN with Born heads that fit it (the shipped k-MVN) when ``settings.nac``, else ``None``."""
    if not (settings.nac and model.predictor.model.supports_bands):
        return None
    if model.predictor.predicts_born_charges:
        return True
    warnings.warn(f"{model.name}: no Born heads fit this k-MVN, its rows are written without the LO–TO "
                  "splitting (has_nac false)", stacklevel=2)
    return None


def predict_call(crystals: list[Crystal], models: BuildModels, call: str, settings: BuildSettings,
                 clock: StageClock | None = None) -> list:
    """One prediction call of a build over ``crystals`` (``call`` from :meth:`PredictionWork.calls`):
    ``gamma`` (Γ results), ``bands`` (band structure, DOS and thermo results) or ``both`` (the
    networks the two models share run once: a list of ``(Γ result, band result)``). Mesh density,
    temperatures and LO–TO (:func:`build_nac`) come from ``settings``."""
    names = [c.name for c in crystals]
    mesh = dict(density=settings.mesh_density, temperatures=settings.temperature_array, clock=clock)
    if call == "both":
        gamma, bands = models.gamma, models.bands
        results, gammas = bands.predictor.predict_phonons_and_gamma(
            gamma.predictor, crystals, names=names, nac=build_nac(bands, settings), **mesh)
        return list(zip(gammas, results))
    if call == "gamma":
        model = models.gamma
        return model.predictor.predict_phonons(crystals, names=names, bands=False, thermal=False,
                                               nac=build_nac(model, settings), clock=clock)
    if call == "bands":
        return models.bands.predictor.predict_phonons(crystals, names=names, nac=build_nac(models.bands, settings),
                                                      **mesh)
    raise ValueError(f"unknown prediction call {call!r}: gamma, bands or both")


def _predict_isolating_failures(crystals, models, call, settings, clock=None):
    """Batch prediction; if the batch fails, one by one so only the culprit is lost."""
    try:
        return list(zip(crystals, predict_call(crystals, models, call, settings, clock))), []
    except Exception:  # noqa: BLE001
        done, failed = [], []
        for c in crystals:
            try:
                done.append((c, predict_call([c], models, call, settings, clock)[0]))
            except Exception as exc:  # noqa: BLE001
                failed.append((c.name, exc))
        return done, failed


def run_shard(
    shard: Shard,
    inputs: Sequence[PlannedInput],
    out: Path,
    release: str,
    source: str,
    models: BuildModels,
    run_id: str,
    settings: BuildSettings | None = None,
) -> ShardReport:
    """Predict and write one shard, unless it is already complete (resumable, idempotent).

    A shard is complete when its marker exists and was written with the same models; a
    skipped shard reports the counts its marker recorded.
    """
    t0, started = time.perf_counter(), time.time()
    rdir = release_dir(out, release)
    identities = models.identities()
    marker = read_marker(rdir, source, shard.shard_id)
    if marker is not None and marker.get("models") == identities:
        return ShardReport(shard.shard_id, written=marker.get("written", 0), failed=marker.get("failed", 0),
                           skipped=True, models=identities)
    clock = StageClock()
    try:
        rows = predict_shard(inputs, models, run_id, settings, clock)
    except Exception as exc:  # noqa: BLE001 - never lose the shard's other materials silently
        rows = {t: [] for t in MATERIAL_TABLES}
        rows["failures"] = [_failure(x.material_id if isinstance(x, InputFailure) else x.name, "predict", exc, run_id)
                            for x in inputs]
        traceback.print_exc()
    failed = {f["material_id"] for f in rows["failures"] if f["stage"] != "limit"}
    written = len(rows["structures"])
    with clock.stage("write"):
        write_shard(rdir, source, shard.shard_id, rows,
                    meta={"models": identities, "written": written, "failed": len(failed)})
    return ShardReport(shard.shard_id, written=written, failed=len(failed), seconds=time.perf_counter() - t0,
                       stage_seconds=clock.wall_seconds(), failures=rows["failures"], models=identities,
                       worker=f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}", started=started,
                       finished=time.time())
