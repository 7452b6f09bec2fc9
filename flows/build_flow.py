"""The main job as a Prefect flow on Dask: ingest → shard plan → one task per shard → release.

Each task calls :func:`flows.shard.run_shard`; models are loaded once per Dask worker
process and reused by every shard it runs. Shards already complete in the output are
skipped, so a crashed or killed build resumes where it stopped and produces the same rows.

Clusters (``cluster=``): ``local`` (a ``distributed.LocalCluster``, the default), a scheduler
address (``tcp://host:8786``), ``cuda`` (a ``LocalCluster`` laid out for the node's GPUs and cores
by :func:`flows.clusters.gpu_node_layout`: several workers share each GPU), ``slurm``
(``dask_jobqueue.SLURMCluster`` with ``flows.clusters.SLURM_DEFAULTS`` updated from
``$VGNN_SLURM_CONFIG``, e.g. ``deploy/slurm.yaml``). Without a Prefect server configured, Prefect
runs ephemerally; ``PREFECT_API_URL`` points it at a server.

The deployment (``deploy/prefect.yaml``) names this module by its import path
(``flows.build_flow.rebuild_database``), so the flow-run process and the Dask workers that
unpickle :func:`shard_task` import the same module. Nothing waits forever: a shard task has a
timeout and retries, a Dask worker that dies mid-shard gets it rescheduled (and after
``distributed.scheduler.allowed-failures`` deaths the task fails with ``KilledWorker``), and the
build itself has a flow-level timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from tqdm.auto import tqdm

from flows.exit import fast_exit
from flows.plan import (
    BuildSettings,
    Shard,
    ShardInputs,
    build_timeline,
    finalize_build,
    plan_build,
)
from flows.shard import ShardReport, run_shard

if TYPE_CHECKING:  # torch and the networks: imported by the workers that run them (_worker_models)
    from flows.models import BuildModels


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
        from flows.models import pick_models

        cache[specs] = pick_models(list(specs))
    return cache[specs]


#: Set to 1 (``vgnn build --verbose``) to keep Prefect's and Dask's INFO logs.
VERBOSE_VAR = "VGNN_VERBOSE"

#: How long a shard may run before its task fails (and is retried), minutes.
SHARD_TIMEOUT_MINUTES = 120.0

#: Seconds each Dask worker is given to exit after a build before its process is killed.
WORKER_CLOSE_TIMEOUT_S = 60.0

#: The same after a failed or timed-out build, whose workers may be stuck in a shard.
FAILED_CLOSE_TIMEOUT_S = 5.0

#: Seconds the ephemeral Prefect server is given to answer (at least; Prefect's own setting if longer).
SERVER_START_TIMEOUT_S = 120


class _WorkerThreadTimeoutNotice(logging.Filter):
    """Drops Prefect's notice, logged for every task with a timeout that runs in a Dask worker
    thread, that the timeout cannot interrupt a blocking call: a shard's timeout is meant to
    take effect between its materials, which it does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeouts in worker threads cannot interrupt" not in str(record.msg)


# installed wherever a shard task runs: this module is imported by every Dask worker
logging.getLogger("prefect.task_runs").addFilter(_WorkerThreadTimeoutNotice())


def verbose_logs() -> bool:
    """Whether ``$VGNN_VERBOSE`` asks for Prefect's and Dask's INFO logs."""
    return os.environ.get(VERBOSE_VAR, "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def quiet_logs(prefect: bool = True, dask: bool = True) -> Iterator[None]:
    """Prefect's (``prefect``) and Dask's logs at WARNING for a build, in this process and in the
    worker processes it starts (through ``PREFECT_LOGGING_LEVEL`` and
    ``DASK_LOGGING__DISTRIBUTED``), unless :func:`verbose_logs`. A level the user set in one of
    those variables is kept; everything is restored on exit."""
    if verbose_logs():
        yield
        return
    chosen = {}
    if prefect:
        chosen["PREFECT_LOGGING_LEVEL"] = ("prefect", "WARNING")
    if dask:
        chosen["DASK_LOGGING__DISTRIBUTED"] = ("distributed", "warning")
    chosen = {var: v for var, v in chosen.items() if not os.environ.get(var)}
    loggers = {var: logging.getLogger(name) for var, (name, _) in chosen.items()}
    levels = {var: log.level for var, log in loggers.items()}
    try:
        for var, (_, level) in chosen.items():
            os.environ[var] = level
            loggers[var].setLevel(logging.WARNING)
        yield
    finally:
        for var in chosen:
            os.environ.pop(var, None)
            loggers[var].setLevel(levels[var])


def close_local_cluster(cluster, timeout_s: float = WORKER_CLOSE_TIMEOUT_S) -> None:
    """Close a ``LocalCluster``: its workers first, each given ``timeout_s`` to finish and exit
    (Dask's default of 5 s has a busy machine's workers killed with SIGKILL and warnings), then
    the scheduler."""

    async def close_workers() -> None:
        await asyncio.gather(*(w.close(timeout=timeout_s) for w in list(cluster.workers.values())),
                             return_exceptions=True)

    try:
        cluster.sync(close_workers)
    finally:
        cluster.close(timeout=timeout_s)


def preload_models(specs: tuple[str, ...]) -> None:
    """Load a build's models into this Dask worker (see :func:`_worker_models`), with the band
    model's Born heads (the LO–TO splitting, on by default: loaded here while the flow plans
    rather than in the first shard; 0.4 s of an idle worker where a build turns it off); a spec
    that fails to load fails the shards instead, with its error. The worker, one of a cluster
    the build started itself, will exit without a last pass over every object (:func:`fast_exit`)."""
    fast_exit()
    try:
        models = _worker_models(specs)
        if models.bands is not None:
            models.bands.predictor.predicts_born_charges  # noqa: B018 - loads the heads that fit it, if any
    except Exception:  # noqa: BLE001 - reported by the first shard that needs the models
        pass


@contextmanager
def dask_task_runner(cluster: str = "local", n_workers: int = 2, models: tuple[str, ...] | None = None) -> Iterator:
    """The task runner of :func:`task_runner`; a ``local`` or ``cuda`` cluster is started here, outside
    Prefect, so that after the flow (which closes its client) the workers and the scheduler are
    shut down in order by :func:`close_local_cluster`: gracefully after a build, within
    :data:`FAILED_CLOSE_TIMEOUT_S` after a failure (a worker stuck in a shard is killed).

    With ``models``, every local worker starts loading them (:func:`preload_models`) as soon as it
    is up, while the flow reads and plans its input: its first shard then starts at once."""
    if cluster not in ("local", "cuda"):
        yield task_runner(cluster, n_workers)
        return
    from distributed import Client, LocalCluster
    from prefect_dask import DaskTaskRunner

    local = LocalCluster(**task_runner(cluster, n_workers).cluster_kwargs, dashboard_address=":0")
    try:
        with ExitStack() as preloading:
            preloads = []  # held until the flow is done
            if models:
                client = Client(local, set_as_default=False)
                preloading.callback(client.close, timeout=FAILED_CLOSE_TIMEOUT_S)  # it holds nothing else
                preloads = [client.submit(preload_models, tuple(models), workers=[address], allow_other_workers=False,
                                          pure=False, key=f"preload-models-{k}")
                            for k, address in enumerate(sorted(client.ncores()))]
            yield DaskTaskRunner(address=local.scheduler_address)
            del preloads
    except BaseException:
        try:
            close_local_cluster(local, FAILED_CLOSE_TIMEOUT_S)
        except Exception as exc:  # the build's own error is the one to report
            logging.getLogger(__name__).warning("closing the Dask cluster after a failed build: %r", exc)
        raise
    close_local_cluster(local)


# no Prefect cache: a shard's completeness is its own marker in the release (flows.shard), and a
# cache key would hash every structure of every shard (~20 ms a shard) for results never stored
@task(retries=2, retry_delay_seconds=2, timeout_seconds=SHARD_TIMEOUT_MINUTES * 60,
      name="predict-and-write-shard", cache_policy=NO_CACHE)
def shard_task(shard: Shard, inputs: ShardInputs, out: str, release: str, source: str,
               model_specs: tuple[str, ...], run_id: str, settings: BuildSettings) -> ShardReport:
    models = _worker_models(model_specs)
    report = run_shard(shard, inputs, Path(out), release, source, models, run_id, settings)
    logger = get_run_logger()
    if report.skipped:
        logger.info("shard %s already complete", shard.shard_id)
    else:
        logger.info("shard %s: %d materials, %d failed, %.1f s", shard.shard_id, report.written, report.failed, report.seconds)
    return report


class PrefectAPI:
    """The Prefect API of a build (:func:`shared_prefect_api`): a configured server's ``url``, or
    an ephemeral ``server`` whose port is fixed before it starts (:meth:`start`, in the background);
    :meth:`ready` blocks until it answers."""

    def __init__(self, url: str | None, server=None) -> None:
        self.url = url
        self.server = server  # a prefect SubprocessASGIServer, or None for a configured API
        self._starting: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._watchdog = None

    def start(self, timeout: float) -> None:
        """Start the ephemeral server in a background thread, in a copy of the caller's context (its
        temporary Prefect settings reach the server); ``timeout``: seconds it may take to answer."""
        self._starting = threading.Thread(target=contextvars.copy_context().run, args=(self._start, timeout),
                                          name="prefect-ephemeral-server", daemon=True)
        self._starting.start()

    def _start(self, timeout: float) -> None:
        try:
            self.server.start(timeout=timeout)  # stopped at exit (Prefect registers it with atexit) ...
            # ... or by the watchdog when this process is killed
            self._watchdog = server_watchdog(os.getpid(), self.server.server_process.pid)
        except BaseException as exc:  # noqa: BLE001 - raised by ready() in the build's thread
            self._failure = exc

    def ready(self) -> None:
        """Wait for the ephemeral server's start (no wait for a configured server); raises
        ``RuntimeError`` if it failed, or came up on another port than the one handed to the workers."""
        if self._starting is not None:
            self._starting.join()
        if self._failure is not None:
            raise RuntimeError(f"Prefect's ephemeral server did not start: {self._failure}") from self._failure
        if self.server is not None and self.server.api_url != self.url:
            raise RuntimeError(f"Prefect's ephemeral server came up at {self.server.api_url}, not at {self.url} as "
                               "announced to the Dask workers (its port was taken meanwhile); run the build again")

    def release(self) -> None:
        """Let the server outlive the build's end but not this process: wait for a start still
        running and stop its watchdog (the server stays until this process exits; atexit stops it)."""
        if self._starting is not None:
            self._starting.join()
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog.wait(timeout=5)


@contextmanager
def shared_prefect_api(wait: bool = True) -> Iterator[PrefectAPI]:
    """One Prefect API for the flow and its Dask workers: the configured server, else an
    ephemeral one started here and handed to the workers through ``PREFECT_API_URL``.

    Without it each worker process starts its own ephemeral server on the same SQLite
    database, its task runs are recorded there and lost with the worker, and every start
    costs CPU the build needs. With ``wait=False`` the server starts in the background (its
    port, and so ``PREFECT_API_URL``, is fixed first), so a build starts its Dask cluster
    meanwhile; call :meth:`PrefectAPI.ready` before the flow runs.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        yield PrefectAPI(PREFECT_API_URL.value())
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # Prefect's own ephemeral server, the one it would start
    if not server.running:
        server.port = server.find_available_port()  # chosen now, so the URL is known before the server answers
    api = PrefectAPI(server.api_url, server)
    # a busy machine's workers load their models meanwhile: more than Prefect's default 20 s to come up
    api.start(timeout=max(SERVER_START_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api.url  # inherited by the workers spawned below
    try:
        with temporary_settings({PREFECT_API_URL: api.url}):
            if wait:
                api.ready()
            yield api
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        api.release()


#: Polls its parent; when the parent is gone (SIGKILL runs no atexit), stops the server.
_WATCHDOG = """
import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
while alive(server):
    if not alive(parent) or os.getppid() != parent:
        os.kill(server, signal.SIGTERM)
        for _ in range(50):
            if not alive(server):
                break
            time.sleep(0.1)
        else:
            os.kill(server, signal.SIGKILL)
        break
    time.sleep(1.0)
"""


def server_watchdog(parent_pid: int, server_pid: int):
    """A tiny process that stops the ephemeral Prefect server ``server_pid`` once ``parent_pid``
    is gone, so a SIGKILLed build leaves no orphaned server behind."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(parent_pid), str(server_pid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
        from flows.clusters import gpu_node_layout

        layout = gpu_node_layout()
        return DaskTaskRunner(cluster_kwargs={"n_workers": layout.workers, "threads_per_worker": 1, "processes": True,
                                              "env": layout.worker_env()})
    if cluster == "slurm":
        _require("dask_jobqueue", "slurm", "hpc")
        from flows.clusters import slurm_cluster_kwargs

        return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster", cluster_kwargs=slurm_cluster_kwargs(),
                              adapt_kwargs={"minimum": 1, "maximum": n_workers})
    raise ValueError(f"unknown cluster {cluster!r}: local, cuda, slurm or a scheduler address")


@flow(name="vgnn-build-database")
def build_database(source: str = "demo", models: tuple[str, ...] = ("mvn", "kmvn"), out: str = "db",
                   release: str | None = None, atoms_per_shard: int = BuildSettings.atoms_per_shard,
                   shard_timeout_minutes: float = SHARD_TIMEOUT_MINUTES, nac: bool = BuildSettings.nac) -> dict:
    """Build (or resume) one release of the database; a shard that runs longer than
    ``shard_timeout_minutes`` fails (and is retried twice), then the build fails. ``nac``: k-MVN
    rows with the LO-TO jump at Γ from predicted Born charges (on by default; a k-MVN that no
    Born heads fit is written without it)."""
    logger = get_run_logger()
    begun = time.time()
    plan = plan_build(source, release, BuildSettings(atoms_per_shard=atoms_per_shard, nac=nac), out=out)
    logger.info("%d structures from %s in %d shards → %s/releases/%s",
                len(plan.inputs), source, len(plan.shards), out, plan.release)
    shard = shard_task.with_options(timeout_seconds=shard_timeout_minutes * 60)
    futures = [shard.submit(s, plan.items(s), str(out), plan.release, plan.source_name, tuple(models), plan.run_id,
                            plan.settings)
               for s in plan.shards_costliest_first()]  # Dask runs them in the order submitted
    reports = []
    with tqdm(total=len(futures), desc=f"building {plan.release}", unit="shard",
              disable=not sys.stderr.isatty()) as bar:
        for future in as_completed(futures):
            reports.append(future.result())
            bar.update(1)
            bar.set_postfix(materials=sum(r.written for r in reports), failed=sum(r.failed for r in reports))
    used = [m for r in reports for m in r.models]
    used = [dict(t) for t in dict.fromkeys(tuple(sorted(m.items())) for m in used)]
    summary = finalize_build(Path(out), plan, used, reports)
    # where the flow's wall time outside the shards went (from its start; run_build adds the cluster's)
    ended = time.time()
    summary["timeline"] = build_timeline([r for r in reports if not r.skipped], begun, ended)
    if summary["timeline"]:  # none when every shard was already complete
        summary["timeline"].update(flow_started_at=begun, flow_ended_at=ended)
    return summary


@contextmanager
def build_environment(cluster: str, n_workers: int, models: tuple[str, ...] | None = None) -> Iterator:
    """The task runner a build's flow runs on, inside the workers' Dask settings (a local
    cluster's workers preloading ``models``); the cluster is closed before the settings are restored."""
    from flows.clusters import worker_dask_config

    with ExitStack() as stack:
        stack.enter_context(worker_dask_config())
        yield stack.enter_context(dask_task_runner(cluster, n_workers, models))


def run_build(source: str, models: list[str], out: str, release: str | None = None,
              cluster: str = "local", n_workers: int = 2, atoms_per_shard: int = BuildSettings.atoms_per_shard,
              timeout_hours: float | None = None, nac: bool = BuildSettings.nac) -> dict:
    """Run the flow on a Dask cluster (``cluster``), as ``vgnn build`` does; it fails with
    ``TimeoutError`` after ``timeout_hours`` (no limit by default). Prefect and Dask log at
    WARNING unless ``$VGNN_VERBOSE``."""
    timeout_s = None if timeout_hours is None else timeout_hours * 3600
    begun = time.time()
    # the ephemeral Prefect server starts while the Dask workers start and load the models
    with quiet_logs(), shared_prefect_api(wait=False) as api, \
            build_environment(cluster, n_workers, tuple(models)) as runner:
        api.ready()
        summary = build_database.with_options(task_runner=runner, timeout_seconds=timeout_s)(
            source=source, models=tuple(models), out=str(out), release=release, atoms_per_shard=atoms_per_shard,
            nac=nac)
        flow_ended = time.time()
    timeline = summary.get("timeline", {})
    if "flow_started_at" in timeline:  # the cluster's and the Prefect server's start, the flow's end, the close
        timeline["before_flow_s"] = timeline["flow_started_at"] - begun
        timeline["flow_exit_s"] = flow_ended - timeline["flow_ended_at"]  # Prefect's final state, the task runner
        timeline["after_flow_s"] = time.time() - flow_ended
    return summary


@flow(name="vgnn-rebuild")
def rebuild_database(source: str = "mp", models: tuple[str, ...] = ("mvn", "kmvn"), out: str = "/data/vgnn-db",
                     cluster: str = "local", n_workers: int = 2, timeout_hours: float = 96.0,
                     shard_timeout_minutes: float = SHARD_TIMEOUT_MINUTES, osf_project: str | None = None) -> dict:
    """The scheduled job (``deploy/prefect.yaml``): build a fresh release of ``source`` into
    ``out`` (an absolute path under a deployment, whose runs start in a temporary directory) on
    ``cluster``; the build fails after ``timeout_hours``, so a stuck run frees the deployment's
    one concurrency slot. When ``osf_project`` is given, publish the release (``OSF_TOKEN``).
    Dask logs at WARNING unless ``$VGNN_VERBOSE``; Prefect's run logs stay as configured."""
    from prefect.runtime import deployment

    if deployment.id and not Path(out).is_absolute():
        raise ValueError(f"out={out!r} must be an absolute path: a deployment's run starts in a temporary directory")
    with quiet_logs(prefect=False), build_environment(cluster, n_workers, tuple(models)) as runner:
        summary = build_database.with_options(task_runner=runner, timeout_seconds=timeout_hours * 3600)(
            source=source, models=tuple(models), out=str(out), shard_timeout_minutes=shard_timeout_minutes)
    if osf_project:
        from storage.osf import OSFClient, publish

        logger = get_run_logger()
        result = publish(Path(out) / "releases" / summary["release"], osf_project, OSFClient(log=logger.info))
        summary["published"] = result
    return summary
