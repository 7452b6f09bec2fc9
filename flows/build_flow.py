"""The main job as a Prefect flow on Dask: ingest → shard plan → one task per shard → release.

Each task calls :func:`flows.shard.run_shard`; models are loaded once per Dask worker
process and reused by every shard it runs. Shards already complete in the output are
skipped, so a crashed or killed build resumes where it stopped and produces the same rows.

Clusters (``cluster=``): ``local`` (a ``distributed.LocalCluster``, the default), a scheduler
address (``tcp://host:8786``), ``cuda`` (``dask_cuda.LocalCUDACluster``: one worker per GPU,
``CUDA_VISIBLE_DEVICES`` respected), ``slurm`` (``dask_jobqueue.SLURMCluster`` with the
settings of ``deploy/slurm.yaml``). Without a Prefect server configured, Prefect runs
ephemerally; ``PREFECT_API_URL`` points it at a server.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed
from tqdm.auto import tqdm

from flows.models import BuildModels, pick_models
from flows.plan import BuildSettings, PlannedInput, Shard, finalize_build, plan_build
from flows.shard import ShardReport, run_shard


def _worker_models(specs: tuple[str, ...]) -> BuildModels:
    """Models for this process, loaded on first use and kept on the Dask worker."""
    holder = None
    try:
        from distributed import get_worker

        holder = get_worker()
    except (ImportError, ValueError):
        pass
    cache = getattr(holder, "_vgnn_models", None) if holder is not None else None
    if cache is None:
        cache = {}
        if holder is not None:
            holder._vgnn_models = cache
    if specs not in cache:
        cache[specs] = pick_models(list(specs))
    return cache[specs]


@task(retries=2, retry_delay_seconds=2, name="predict-and-write-shard")
def shard_task(shard: Shard, inputs: list[PlannedInput], out: str, release: str, source: str,
               model_specs: tuple[str, ...], run_id: str, settings: BuildSettings) -> ShardReport:
    models = _worker_models(model_specs)
    report = run_shard(shard, inputs, Path(out), release, source, models, run_id, settings)
    logger = get_run_logger()
    if report.skipped:
        logger.info("shard %s already complete", shard.shard_id)
    else:
        logger.info("shard %s: %d materials, %d failed, %.1f s", shard.shard_id, report.written, report.failed, report.seconds)
    return report


@contextmanager
def shared_prefect_api():
    """One Prefect API for the flow and its Dask workers: the configured server, else an
    ephemeral one started here and handed to the workers through ``PREFECT_API_URL``.

    Without it each worker process starts its own ephemeral server on the same SQLite
    database, its task runs are recorded there and lost with the worker, and every start
    costs CPU the build needs.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # Prefect's own ephemeral server, the one it would start
    server.start()
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the workers spawned below
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def _require(module: str, cluster: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise RuntimeError(f"--cluster {cluster} needs {module.replace('_', '-')}: pip install 'vgnn-phonondb[{extra}]'")


def task_runner(cluster: str = "local", n_workers: int = 2):
    """The Dask task runner for a cluster spec (see the module docstring)."""
    from prefect_dask import DaskTaskRunner

    if cluster == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True})
    if cluster.startswith(("tcp://", "tls://")):
        return DaskTaskRunner(address=cluster)
    if cluster == "cuda":
        _require("dask_cuda", "cuda", "gpu")
        return DaskTaskRunner(cluster_class="dask_cuda.LocalCUDACluster", cluster_kwargs={"threads_per_worker": 1})
    if cluster == "slurm":
        _require("dask_jobqueue", "slurm", "hpc")
        from flows.clusters import slurm_cluster_kwargs

        return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster", cluster_kwargs=slurm_cluster_kwargs(),
                              adapt_kwargs={"minimum": 1, "maximum": n_workers})
    raise ValueError(f"unknown cluster {cluster!r}: local, cuda, slurm or a scheduler address")


@flow(name="vgnn-build-database")
def build_database(source: str = "demo", models: tuple[str, ...] = ("mvn", "kmvn"), out: str = "db",
                   release: str | None = None, atoms_per_shard: int = BuildSettings.atoms_per_shard) -> dict:
    """Build (or resume) one release of the database."""
    logger = get_run_logger()
    plan = plan_build(source, release, BuildSettings(atoms_per_shard=atoms_per_shard))
    logger.info("%d structures from %s in %d shards → %s/releases/%s",
                len(plan.inputs), source, len(plan.shards), out, plan.release)
    futures = [shard_task.submit(s, plan.items(s), str(out), plan.release, plan.source_name, tuple(models), plan.run_id,
                                 plan.settings)
               for s in plan.shards]
    reports = []
    with tqdm(total=len(futures), desc=f"building {plan.release}", unit="shard",
              disable=not sys.stderr.isatty()) as bar:
        for future in as_completed(futures):
            reports.append(future.result())
            bar.update(1)
            bar.set_postfix(materials=sum(r.written for r in reports), failed=sum(r.failed for r in reports))
    used = [m for r in reports for m in r.models]
    used = [dict(t) for t in dict.fromkeys(tuple(sorted(m.items())) for m in used)]
    return finalize_build(Path(out), plan, used, reports)


def run_build(source: str, models: list[str], out: str, release: str | None = None,
              cluster: str = "local", n_workers: int = 2, atoms_per_shard: int = BuildSettings.atoms_per_shard) -> dict:
    """Run the flow on a Dask cluster (``cluster``), as ``vgnn build`` does."""
    from flows.clusters import worker_dask_config

    runner = task_runner(cluster, n_workers)
    with shared_prefect_api(), worker_dask_config():
        return build_database.with_options(task_runner=runner)(
            source=source, models=tuple(models), out=str(out), release=release, atoms_per_shard=atoms_per_shard)


@flow(name="vgnn-rebuild")
def rebuild_database(source: str = "mp", models: tuple[str, ...] = ("mvn", "kmvn"), out: str = "db",
                     cluster: str = "local", n_workers: int = 2, osf_project: str | None = None) -> dict:
    """The scheduled job (``deploy/prefect.yaml``): build a fresh release of ``source`` on
    ``cluster`` and, when ``osf_project`` is given, publish it (token from ``OSF_TOKEN``)."""
    from flows.clusters import worker_dask_config

    with worker_dask_config():
        summary = build_database.with_options(task_runner=task_runner(cluster, n_workers))(
            source=source, models=tuple(models), out=str(out))
    if osf_project:
        from storage.osf import OSFClient, publish

        logger = get_run_logger()
        result = publish(Path(out) / "releases" / summary["release"], osf_project, OSFClient(log=logger.info))
        summary["published"] = result
    return summary
