"""Dask cluster settings for the build (see ``deploy/`` for the documented YAML versions)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vgnn_core.settings import CPU_THREADS_VAR, GPU_BY_WORKER_VAR, env

#: Dask's nannies start every worker with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting it turns off
#: glibc's dynamic mmap threshold, so each large numpy/torch temporary of the eigen-solves is
#: mmapped and page-faulted afresh: a Togo shard took 1.5× as long in a Dask worker as in a
#: plain process (28 s against 18 s). Our workers are started without it.
WORKER_DASK_CONFIG = {"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None}}}}


@contextmanager
def worker_dask_config():
    """:data:`WORKER_DASK_CONFIG` for the Dask workers this process starts (``local`` and ``cuda``).

    A nanny also copies its variables into this process's environment, where later workers
    would inherit them; Dask's own value is lifted for the duration (a user's other value stays).
    """
    import dask
    import distributed  # noqa: F401 - its defaults first: set before them, our key would take them away on exit

    key = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    injected = str(dask.config.get(key, None))
    lifted = os.environ.pop("MALLOC_TRIM_THRESHOLD_") if os.environ.get("MALLOC_TRIM_THRESHOLD_") == injected else None
    try:
        with dask.config.set({key: None}):  # a dotted key: merged into Dask's config, not replacing it
            yield
    finally:
        if lifted is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = lifted


#: Dask worker processes per GPU of ``--cluster cuda``. One process leaves its GPU idle while its
#: eigen-solves and DOS run (its CPU threads share one interpreter), so several share each GPU.
#: Measured on one H200 with 16 cores (2,000 Togo structures, ``benchmarks/gpu_check.py
#: --processes``): 1 process 8.5 materials/s, 4 processes 21.1, 8 processes 23.2.
WORKERS_PER_GPU = 8
#: Fewest cores a GPU worker gets for its CPU work (fewer workers per GPU on a node short of cores).
MIN_CORES_PER_GPU_WORKER = 2


@dataclass(frozen=True)
class GpuNodeLayout:
    """The Dask workers of ``--cluster cuda`` on one node: ``workers`` processes of one task
    slot each, sharing ``gpus`` GPUs round-robin, each with ``cpu_threads`` threads for its
    CPU work after the network."""

    gpus: int
    cores: int
    workers: int
    cpu_threads: int

    def worker_env(self) -> dict[str, str]:
        """Environment of each worker process (threads pinned, GPU picked by worker index)."""
        threads = str(self.cpu_threads)
        return {CPU_THREADS_VAR: threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                GPU_BY_WORKER_VAR: "1"}


def gpu_node_layout(gpus: int | None = None, cores: int | None = None) -> GpuNodeLayout:
    """The layout for this node's GPUs (those torch sees: ``CUDA_VISIBLE_DEVICES`` respected) and
    cores (this process's CPU affinity): :data:`WORKERS_PER_GPU` workers per GPU, or fewer so that
    each has :data:`MIN_CORES_PER_GPU_WORKER` cores; the cores split evenly among them.
    Raises ``RuntimeError`` on a node without a GPU."""
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cores is None:
        from flows.models import affinity_cores

        cores = affinity_cores()
    if gpus < 1:
        raise RuntimeError("--cluster cuda: torch sees no GPU on this node (driver, CUDA_VISIBLE_DEVICES, "
                           "or a CPU-only torch); use --cluster local")
    per_gpu = max(1, min(WORKERS_PER_GPU, cores // gpus // MIN_CORES_PER_GPU_WORKER))
    workers = gpus * per_gpu
    return GpuNodeLayout(gpus=gpus, cores=cores, workers=workers, cpu_threads=max(1, cores // workers))


#: SLURM job settings for dask-jobqueue: one GPU worker process per job.
SLURM_DEFAULTS = {
    "queue": "gpu",
    "cores": 8,
    "processes": 1,
    "memory": "64GB",
    "walltime": "04:00:00",
    "job_extra_directives": ["--gres=gpu:1"],
    "local_directory": "$TMPDIR",
}


def slurm_cluster_kwargs(path: str | Path | None = None) -> dict:
    """``SLURM_DEFAULTS`` updated from a YAML file (``$VGNN_SLURM_CONFIG`` or ``path``)."""
    path = path or env("VGNN_SLURM_CONFIG")
    kwargs = dict(SLURM_DEFAULTS)
    if path:
        import yaml

        kwargs.update(yaml.safe_load(Path(path).read_text()) or {})
    # the nannies in the SLURM jobs read their own Dask config: hand them ours
    import dask.config

    inherit = f"export DASK_INTERNAL_INHERIT_CONFIG={dask.config.serialize(WORKER_DASK_CONFIG)}"
    kwargs["job_script_prologue"] = [*(kwargs.get("job_script_prologue") or []), inherit]
    return kwargs
