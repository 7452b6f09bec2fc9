"""The models a build runs, loaded once per worker, and the worker's device and threads."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vgnn_core import Predictor
from vgnn_core.files import file_digest
from vgnn_core.predict import networks_shared
from vgnn_core.pretrained.registry import (
    load_checkpoint,
    load_pretrained_model,
    shipped_checkpoints,
)
from vgnn_core.settings import GPU_BY_WORKER_VAR, cpu_threads_override, device_override, env


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict, with the name and sha256 the database records for it."""

    name: str
    sha256: str
    predictor: Predictor

    @property
    def kind(self) -> str:
        return self.predictor.kind

    def identity(self) -> dict:
        """``{"name", "sha256", "kind"}``: what a release's manifest and ``runs`` row record."""
        return {"name": self.name, "sha256": self.sha256, "kind": self.kind}


@dataclass(frozen=True)
class BuildModels:
    """The Γ model (MVN preferred) and the band model (k-MVN) of a build."""

    gamma: LoadedModel | None
    bands: LoadedModel | None

    def identities(self) -> list[dict]:
        return [m.identity() for m in (self.gamma, self.bands) if m is not None]

    @functools.cached_property
    def share_networks(self) -> bool:
        """Whether the Γ model runs the band model's networks (the shipped MVN and k-MVN do), so
        one forward pass gives both (:meth:`~vgnn_core.predict.Predictor.predict_phonons_and_gamma`)."""
        return (self.gamma is not None and self.bands is not None and self.gamma is not self.bands
                and self.gamma.kind == "mvn" and networks_shared(self.bands.predictor, self.gamma.predictor))


def worker_device() -> str:
    """``$VGNN_DEVICE``, else this process's GPU when it has one, else the CPU.

    Workers of ``--cluster cuda`` share the node's GPUs (``$VGNN_GPU_BY_WORKER``): Dask worker
    k runs on GPU k mod (the GPUs it sees)."""
    import torch

    override = device_override()
    if override:
        return override
    if not torch.cuda.is_available():
        return "cpu"
    if env(GPU_BY_WORKER_VAR) == "1":
        index = _dask_worker_index()
        if index is not None:
            device = index % max(1, torch.cuda.device_count())
            torch.cuda.set_device(device)  # so nothing of this worker lands on GPU 0 by default
            return f"cuda:{device}"
    return "cuda"


def _dask_worker_index() -> int | None:
    """This Dask worker's name when it is an integer (a LocalCluster's workers are 0, 1, …)."""
    try:
        from distributed import get_worker

        return int(str(get_worker().name))
    except (ImportError, ValueError, AttributeError):
        return None


def affinity_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of the node's where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_cpu_threads() -> int:
    """Threads for each material's CPU work after the network (eigen-solves, DOS).

    ``$VGNN_CPU_THREADS`` when set. On a GPU worker, the cores it may use (its CPU affinity,
    at most the node's cores over its GPUs) over the Dask threads it runs tasks in: Dask starts
    workers with one BLAS/OpenMP thread, which would leave a GPU node's cores idle. Elsewhere
    this process's torch threads: 1 in a CPU Dask worker (the other cores run sibling workers),
    every core in a plain process.
    """
    import torch

    override = cpu_threads_override()
    if override:
        return override
    if not (worker_device().startswith("cuda") and torch.cuda.is_available()):
        return torch.get_num_threads()
    node = os.cpu_count() or 1
    usable = min(affinity_cores(), node // max(1, torch.cuda.device_count()))
    try:
        from distributed import get_worker

        tasks_at_once = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        tasks_at_once = 1
    return max(1, usable // max(1, tasks_at_once))


def load_model(spec: str, share_with: Sequence[LoadedModel] = ()) -> LoadedModel:
    """``kmvn`` / ``mvn`` / ``vvn`` (shipped) or a checkpoint path, on this worker's device; a
    model of ``share_with`` that holds the same networks lends them (the shipped MVN runs the
    k-MVN's: :func:`~vgnn_core.pretrained.registry.load_checkpoint`)."""
    device, threads = worker_device(), worker_cpu_threads()
    others = [m.predictor.model for m in share_with]
    if Path(spec).is_file():
        model = load_checkpoint(spec, device=device, share_with=others)
        return LoadedModel(Path(spec).stem, file_digest(spec), Predictor(model, device=device, cpu_threads=threads))
    model = load_pretrained_model(spec, device=device, share_with=others)
    return LoadedModel(spec, shipped_checkpoints()[spec]["sha256"], Predictor(model, device=device, cpu_threads=threads))


def pick_models(specs: list[str]) -> BuildModels:
    """The Γ model (MVN preferred, else a k-MVN or VVN) and the band model (k-MVN) of ``specs``;
    models holding the same networks load them once."""
    loaded: list[LoadedModel] = []
    for spec in specs:
        loaded.append(load_model(spec, share_with=loaded))
    gamma = next((m for m in loaded if m.kind == "mvn"), None) or next((m for m in loaded if m.kind in ("kmvn", "vvn")), None)
    bands = next((m for m in loaded if m.predictor.model.supports_bands), None)
    return BuildModels(gamma, bands)
