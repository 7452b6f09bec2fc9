"""Dask cluster settings for the build (see ``deploy/`` for the documented YAML versions)."""

from __future__ import annotations

import os
from pathlib import Path

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
    path = path or os.environ.get("VGNN_SLURM_CONFIG")
    kwargs = dict(SLURM_DEFAULTS)
    if path:
        import yaml

        kwargs.update(yaml.safe_load(Path(path).read_text()) or {})
    return kwargs
