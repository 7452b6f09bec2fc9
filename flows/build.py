"""Run a database build in this process: the pipeline's steps one shard after another.

This is `vgnn build --cluster none` and the reference the Prefect/Dask flow must match:
same shard plan, same rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from vgnn_core import Predictor
from vgnn_core.checkpoints import (
    load_checkpoint,
    load_pretrained_model,
    sha256_file,
    shipped_checkpoints,
)

from .pipeline import ATOMS_PER_SHARD, finalize_build, plan_build, run_shard


def worker_device() -> str:
    """``$VGNN_DEVICE``, else this process's GPU when it has one (dask-cuda gives each worker
    one through ``CUDA_VISIBLE_DEVICES``), else the CPU."""
    import os

    import torch

    return os.environ.get("VGNN_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def worker_cpu_threads() -> int:
    """Threads for each material's CPU work after the network (eigen-solves, DOS).

    ``$VGNN_CPU_THREADS`` when set. On a GPU worker, the cores it may use (its CPU affinity,
    at most the node's cores over its GPUs) over the Dask threads it runs tasks in: Dask starts
    workers with one BLAS/OpenMP thread, which would leave a GPU node's cores idle. Elsewhere
    this process's torch threads: 1 in a CPU Dask worker (the other cores run sibling workers),
    every core in a plain process.
    """
    import os

    import torch

    if os.environ.get("VGNN_CPU_THREADS"):
        return max(1, int(os.environ["VGNN_CPU_THREADS"]))
    if not (worker_device().startswith("cuda") and torch.cuda.is_available()):
        return torch.get_num_threads()
    node = os.cpu_count() or 1
    usable = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else node,
                 node // max(1, torch.cuda.device_count()))
    try:
        from distributed import get_worker

        tasks_at_once = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        tasks_at_once = 1
    return max(1, usable // max(1, tasks_at_once))


def load_model(spec: str) -> tuple[str, str, Predictor]:
    """``kmvn`` / ``mvn`` / ``vvn`` (shipped) or a checkpoint path → (name, sha256, predictor)."""
    device, threads = worker_device(), worker_cpu_threads()
    if Path(spec).is_file():
        model = load_checkpoint(spec, device=device)
        return Path(spec).stem, sha256_file(spec), Predictor(model, device=device, cpu_threads=threads)
    model = load_pretrained_model(spec, device=device)
    return spec, shipped_checkpoints()[spec]["sha256"], Predictor(model, device=device, cpu_threads=threads)


def pick_models(specs: list[str]) -> tuple[tuple | None, tuple | None]:
    """The Γ model (MVN preferred) and the band model (k-MVN) among ``specs``."""
    loaded = [load_model(s) for s in specs]
    gamma = next((m for m in loaded if m[2].kind == "mvn"), None) or next((m for m in loaded if m[2].kind in ("kmvn", "vvn")), None)
    bands = next((m for m in loaded if m[2].kind == "kmvn"), None)
    return gamma, bands


def identity(model: tuple[str, str, Predictor]) -> dict:
    name, sha, predictor = model
    return {"name": name, "sha256": sha, "kind": predictor.kind}


def build(
    source: str,
    models: list[str],
    out: str | Path,
    release: str | None = None,
    atoms_per_shard: int = ATOMS_PER_SHARD,
    progress: Callable[[str], None] | None = print,
) -> dict:
    """Build (or resume) ``release`` of the database at ``out`` from ``source``."""
    out = Path(out)
    plan = plan_build(source, release, atoms_per_shard)
    gamma_model, bands_model = pick_models(models)
    reports = []
    bar = tqdm(total=len(plan.shards), desc=f"building {plan.release}", unit="shard",
               disable=progress is None or not sys.stderr.isatty())
    for k, shard in enumerate(plan.shards):
        report = run_shard(shard, plan.items(shard), out, plan.release, plan.source_name,
                           gamma_model, bands_model, plan.run_id)
        reports.append(report)
        bar.update(1)
        bar.set_postfix(materials=sum(r.written for r in reports), failed=sum(r.failed for r in reports))
        if progress and bar.disable:
            state = "already complete" if report.skipped else f"{report.written} written, {report.failed} failed, {report.seconds:.1f} s"
            progress(f"shard {k + 1}/{len(plan.shards)} {shard.shard_id}: {state}")
    bar.close()
    used = [identity(m) for m in (gamma_model, bands_model) if m is not None]
    return finalize_build(out, plan, used, reports)
