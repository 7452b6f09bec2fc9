"""Run a database build in this process: the pipeline's steps one shard after another.

This is `vgnn build --cluster none` and the reference the Prefect/Dask flow must match:
same shard plan, same rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from flows.models import pick_models
from flows.plan import BuildSettings, finalize_build, plan_build
from flows.shard import run_shard


def build(
    source: str,
    models: list[str],
    out: str | Path,
    release: str | None = None,
    settings: BuildSettings | None = None,
    progress: Callable[[str], None] | None = print,
) -> dict:
    """Build (or resume) ``release`` of the database at ``out`` from ``source``."""
    out = Path(out)
    plan = plan_build(source, release, settings, out=out)
    loaded = pick_models(models)
    reports = []
    bar = tqdm(total=len(plan.shards), desc=f"building {plan.release}", unit="shard",
               disable=progress is None or not sys.stderr.isatty())
    for k, shard in enumerate(plan.shards):
        report = run_shard(shard, plan.items(shard), out, plan.release, plan.source_name, loaded, plan.run_id,
                           plan.settings)
        reports.append(report)
        bar.update(1)
        bar.set_postfix(materials=sum(r.written for r in reports), failed=sum(r.failed for r in reports))
        if progress and bar.disable:
            state = "already complete" if report.skipped else f"{report.written} written, {report.failed} failed, {report.seconds:.1f} s"
            progress(f"shard {k + 1}/{len(plan.shards)} {shard.shard_id}: {state}")
    bar.close()
    return finalize_build(out, plan, loaded.identities(), reports)
