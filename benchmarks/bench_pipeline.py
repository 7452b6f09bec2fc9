"""The main job at scale: a full build against pure inference on the same structures.

For each source (default: all 10,034 Togo phonondb structures and the 253 IZA zeolites):

1. read and reduce the structures once (timed: "ingest");
2. **pure inference** — the models alone in this process: MVN Γ for every structure, k-MVN
   bands + DOS + thermo for those within the band limit, in the pipeline's shard batches,
   nothing written (like the build, one forward pass for both where the MVN runs the k-MVN's
   networks, as the shipped pair does: ``gamma_s`` is then the Γ-only cells' time);
3. **pipeline** — ``vgnn build`` as users run it: the Prefect flow on a Dask LocalCluster with
   ``--workers`` processes, writing Parquet shards and the release (wall time, ingest included).

Overhead = (pipeline − ingest − inference) / inference. Both sides use both cores (inference with
torch's threads, the pipeline with one process per core) and add the LO–TO correction as the build
does. Both also split their wall time by stage (:class:`~vgnn_core.timing.StageClock`: graph,
network, Γ solves, bands, DOS/thermo, and the pipeline's row building and Parquet writing); the
pipeline's "scheduling" is its wall time beyond ingest and the shards' seconds shared out over the
workers (Prefect and Dask, starting workers and loading models, idle workers, the release).
Prints two tables, writes ``benchmarks/results/pipeline.json``. Run: ``python benchmarks/bench_pipeline.py [--sources demo]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


MP_MATERIALS = 146_000


def pure_inference(source: str, models: list[str], atoms_per_shard: int) -> dict:
    from flows.models import pick_models
    from flows.plan import BuildSettings, plan_shards, read_inputs, sizes_of
    from flows.shard import predict_call, split_work
    from flows.sources import resolve_source
    from vgnn_core.crystal.crystal import Crystal
    from vgnn_core.timing import StageClock

    settings = BuildSettings(atoms_per_shard=atoms_per_shard)
    t0 = time.perf_counter()
    inputs = read_inputs(resolve_source(source)[0])
    ingest = time.perf_counter() - t0
    structures = {m: c for m, c in inputs.items() if isinstance(c, Crystal)}
    shards = plan_shards(sizes_of(inputs), atoms_per_shard)
    loaded = pick_models(models)
    n_bands, seconds = 0, {"gamma": 0.0, "bands": 0.0}
    clock = StageClock()
    for shard in shards:  # the build's prediction calls per shard (flows.shard), without Prefect, Dask or rows
        batch = [structures[m] for m in shard.material_ids if m in structures]
        for call, todo in split_work(batch, loaded, settings).calls():
            t0 = time.perf_counter()
            predict_call(todo, loaded, call, settings, clock)
            seconds["gamma" if call == "gamma" else "bands"] += time.perf_counter() - t0
            n_bands += len(todo) if call != "gamma" else 0
    return {"materials": len(structures), "with_bands": n_bands, "atoms": sum(c.n_atoms for c in structures.values()),
            "ingest_s": ingest, "inference_s": seconds["gamma"] + seconds["bands"], "gamma_s": seconds["gamma"],
            "bands_s": seconds["bands"], "one_pass_for_gamma_and_bands": loaded.share_networks,
            "inference_stage_s": clock.wall_seconds(), "device": device_name()}


def device_name() -> str:
    """What the models ran on (the pipeline's rule: ``$VGNN_DEVICE``, else a GPU when present)."""
    import torch

    from flows.models import worker_device

    device = worker_device()
    return torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"


def pipeline(source: str, models: list[str], out: Path, workers: int, atoms_per_shard: int,
             cluster: str = "local") -> dict:
    from flows.build_flow import run_build

    t0 = time.perf_counter()
    summary = run_build(source, models, str(out), release="bench", cluster=cluster, n_workers=workers,
                        atoms_per_shard=atoms_per_shard)
    return {**summary, "pipeline_s": time.perf_counter() - t0}


STAGES = ("graph", "network", "solves", "bands", "dos_thermo", "rows", "write")


def stage_split(row: dict, workers: int) -> dict[str, dict[str, float]]:
    """Wall seconds per stage of pure inference and of the pipeline. The pipeline's shard and stage
    seconds are summed over its workers, so shared out over them here; "other" is shard time no
    stage holds, "scheduling" the pipeline's wall time beyond ingest and its workers' shards
    (Prefect and Dask, starting workers and loading models, idle workers, the release)."""
    pure = {"ingest": row["ingest_s"], **{s: row["inference_stage_s"].get(s, 0.0) for s in STAGES}}
    pure["other"] = row["ingest_s"] + row["inference_s"] - sum(pure.values())
    pipe = {"ingest": row["ingest_s"], **{s: row["stage_seconds"].get(s, 0.0) / workers for s in STAGES}}
    pipe["other"] = row["shard_seconds"] / workers - sum(v for k, v in pipe.items() if k != "ingest")
    pipe["scheduling"] = row["pipeline_s"] - row["ingest_s"] - row["shard_seconds"] / workers
    return {"inference": pure, "pipeline": pipe}


def print_stages(rows: list[dict], workers: int) -> None:
    """Per-stage wall seconds of every source: pure inference, then the pipeline (per worker)."""
    names = ("ingest", *STAGES, "other", "scheduling")
    print(f"\n{'source':<10} {'run':<10} " + " ".join(f"{n:>10}" for n in names))
    for r in rows:
        for run, split in r["stages"].items():
            print(f"{r['source']:<10} {run:<10} " + " ".join(f"{split.get(n, 0.0):>10.1f}" for n in names))
    print(f"(wall seconds; the pipeline's per worker of {workers})")
    parts = ("before_flow_s", "to_first_shard_s", "shards_s", "between_shards_s", "tail_s", "after_last_shard_s",
             "flow_exit_s", "after_flow_s")
    print(f"\n{'source':<10} {'slots':>5} " + " ".join(f"{n[:-2]:>18}" for n in parts))
    for r in rows:  # the pipeline's wall time outside its shards (flows.plan.build_timeline)
        timeline = r.get("timeline") or {}
        print(f"{r['source']:<10} {timeline.get('workers', 0):>5} "
              + " ".join(f"{timeline.get(n, float('nan')):>18.1f}" for n in parts))
    print("(the pipeline's wall seconds, per task slot that ran shards: the cluster's and Prefect's start, from the "
          "flow's start to the first shard (ingest included), in shards, gaps between shards, idle at the end, the "
          "release, the flow's exit, the cluster's close; they sum to the pipeline's time)")


def mp_projection(row: dict) -> dict:
    """Hours for the whole Materials Project at the pipeline's measured rate, and the inference
    rates of the Γ and band models alone."""
    rate = row["written"] / row["pipeline_s"]
    hours = MP_MATERIALS / rate / 3600
    gpu = "CPU" not in row["device"]
    return {"mp_materials": MP_MATERIALS, "device": row["device"], "materials_per_s": rate, "hours": hours,
            "core_hours": hours * (os.cpu_count() or 1), "gpu_hours": hours if gpu else None,
            "inference_materials_per_s": row["materials"] / row["inference_s"],
            # apart only when the Γ and band models ran separately
            "gamma_materials_per_s": None if row.get("one_pass_for_gamma_and_bands") else row["materials"] / row["gamma_s"],
            "bands_materials_per_s": None if row.get("one_pass_for_gamma_and_bands") else row["with_bands"] / row["bands_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="togo,zeolites")
    parser.add_argument("--models", default="mvn,kmvn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cluster", default="local",
                        help="local (default) or cuda: the node's GPU layout (flows.clusters.gpu_node_layout; "
                             "--workers is then not used)")
    parser.add_argument("--mp-sample", default="togo",
                        help="the source whose size distribution stands in for the Materials Project's "
                             "(togo, or dir:PATH holding a random sample of it)")
    parser.add_argument("--atoms-per-shard", type=int, default=2000)
    parser.add_argument("--out", help="database folder (default: a temporary one)")
    parser.add_argument("--json", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()
    if args.cluster == "cuda":  # the layout decides the workers
        from flows.clusters import gpu_node_layout

        args.workers = gpu_node_layout().workers
    models = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for source in args.sources.split(","):
            ref = pure_inference(source, models, args.atoms_per_shard)
            print(f"{source} pure inference: {json.dumps(ref)}", flush=True)
            run = pipeline(source, models, root / Path(source.replace(":", "_")).name, args.workers,
                           args.atoms_per_shard, args.cluster)
            overhead = (run["pipeline_s"] - ref["ingest_s"] - ref["inference_s"]) / ref["inference_s"]
            rows.append({"source": source, **ref, **run, "overhead": overhead,
                         "materials_per_s": run["written"] / run["pipeline_s"]})
            rows[-1]["stages"] = stage_split(rows[-1], args.workers)
            print(f"{source}: {json.dumps(rows[-1], default=str)}", flush=True)
    print_stages(rows, args.workers)
    print(f"\n{'source':<10} {'materials':>9} {'atoms':>8} {'ingest s':>9} {'inference s':>12} "
          f"{'pipeline s':>11} {'mat/s':>7} {'overhead':>9} {'failed':>7}")
    for r in rows:
        print(f"{r['source']:<10} {r['materials']:>9} {r['atoms']:>8} {r['ingest_s']:>9.1f} {r['inference_s']:>12.1f} "
              f"{r['pipeline_s']:>11.1f} {r['materials_per_s']:>7.2f} {100 * r['overhead']:>8.1f}% {r['failed']:>7}")
    togo = next((r for r in rows if r["source"] == args.mp_sample), None)
    projection = None
    if togo:  # Togo's structures stand in for the Materials Project's size distribution
        projection = mp_projection(togo)
        print(f"\nprojected full Materials Project rebuild ({MP_MATERIALS:,} structures, Togo size distribution) "
              f"on {togo['device']}: {projection['hours']:.1f} h ({projection['core_hours']:.0f} core-hours); "
              f"inference alone {projection['inference_materials_per_s']:.1f} materials/s"
              + ("" if projection["gamma_materials_per_s"] is None else
                 f" ({projection['gamma_materials_per_s']:.1f} for Γ, "
                 f"{projection['bands_materials_per_s']:.1f} for bands + DOS + thermo)"))
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}", "cluster": args.cluster,
              "peak_rss_main_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "workers": args.workers, "rows": rows, "mp_projection": projection}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
