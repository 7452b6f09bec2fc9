"""Dask cluster settings for the build (see ``deploy/`` for the documented YAML versions)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from vgnn_core.settings import env

#: Dask's nannies start every worker with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting it turns off
#: glibc's dynamic mmap threshold, so each large numpy/torch temporary of the eigen-solves is
#: mmapped and page-faulted afresh: a Togo shard took 1.5× as long in a Dask worker as in a
#: plain process (28 s against 18 s). Our workers are started without it.
WORKER_DASK_CONFIG = {"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None}}}}


@contextmanager
def worker_dask_config():
    """:data:`WORKER_DASK_CONFIG` for the Dask workers this process starts (local and cuda).

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
