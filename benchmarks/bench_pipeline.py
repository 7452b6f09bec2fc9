"""The main job at scale: a full build against pure inference on the same structures.

For each source (default: all 10,034 Togo phonondb structures and the 253 IZA zeolites):

1. read and reduce the structures once (timed: "ingest");
2. **pure inference** — the models alone in this process: MVN Γ for every structure, k-MVN
   bands + DOS + thermo for those within the band limit, in the pipeline's shard batches,
   nothing written;
3. **pipeline** — ``vgnn build`` as users run it: the Prefect flow on a Dask LocalCluster with
   ``--workers`` processes, writing Parquet shards and the release (wall time, ingest included).

Overhead = (pipeline − ingest − inference) / inference. Both sides use both cores (inference with
torch's threads, the pipeline with one process per core). Prints a table, writes
``benchmarks/results/pipeline.json``. Run: ``python benchmarks/bench_pipeline.py [--sources demo]``.
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
    from flows.build import pick_models
    from flows.pipeline import BANDS_MAX_ATOMS, MESH_DENSITY, plan_shards, read_for_plan, sizes_of
    from flows.sources import resolve_source
    from storage.rows import THERMO_TEMPERATURES

    t0 = time.perf_counter()
    items = read_for_plan(resolve_source(source)[0])
    ingest = time.perf_counter() - t0
    structures = {m: s for m, s in items if hasattr(s, "lattice")}
    shards = plan_shards(sizes_of(items), atoms_per_shard)
    gamma_model, bands_model = pick_models(models)
    t0 = time.perf_counter()
    n_bands = 0
    for shard in shards:
        batch = [structures[m] for m in shard.material_ids if m in structures]
        if not batch:
            continue
        if gamma_model:
            gamma_model[2].predict_gamma(batch)
        small = [s for s in batch if len(s) <= BANDS_MAX_ATOMS]
        if bands_model and small:
            bands_model[2].predict_phonons(small, density=MESH_DENSITY, temperatures=THERMO_TEMPERATURES)
            n_bands += len(small)
    return {"materials": len(structures), "with_bands": n_bands, "atoms": sum(len(s) for s in structures.values()),
            "ingest_s": ingest, "inference_s": time.perf_counter() - t0}


def pipeline(source: str, models: list[str], out: Path, workers: int, atoms_per_shard: int) -> dict:
    from flows.build_flow import run_build

    t0 = time.perf_counter()
    summary = run_build(source, models, str(out), release="bench", n_workers=workers, atoms_per_shard=atoms_per_shard)
    return {**summary, "pipeline_s": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="togo,zeolites")
    parser.add_argument("--models", default="mvn,kmvn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--atoms-per-shard", type=int, default=2000)
    parser.add_argument("--out", help="database folder (default: a temporary one)")
    parser.add_argument("--json", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()
    models = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        for source in args.sources.split(","):
            ref = pure_inference(source, models, args.atoms_per_shard)
            run = pipeline(source, models, root / source.replace(":", "_"), args.workers, args.atoms_per_shard)
            overhead = (run["pipeline_s"] - ref["ingest_s"] - ref["inference_s"]) / ref["inference_s"]
            rows.append({"source": source, **ref, **run, "overhead": overhead,
                         "materials_per_s": run["written"] / run["pipeline_s"]})
            print(f"{source}: {json.dumps(rows[-1], default=str)}", flush=True)
    print(f"\n{'source':<10} {'materials':>9} {'atoms':>8} {'ingest s':>9} {'inference s':>12} "
          f"{'pipeline s':>11} {'mat/s':>7} {'overhead':>9} {'failed':>7}")
    for r in rows:
        print(f"{r['source']:<10} {r['materials']:>9} {r['atoms']:>8} {r['ingest_s']:>9.1f} {r['inference_s']:>12.1f} "
              f"{r['pipeline_s']:>11.1f} {r['materials_per_s']:>7.2f} {100 * r['overhead']:>8.1f}% {r['failed']:>7}")
    togo = next((r for r in rows if r["source"] == "togo"), None)
    projection = None
    if togo:  # Togo's structures stand in for the Materials Project's size distribution
        rate = togo["written"] / togo["pipeline_s"]
        projection = {"mp_materials": MP_MATERIALS, "materials_per_s": rate, "hours": MP_MATERIALS / rate / 3600,
                      "core_hours": MP_MATERIALS / rate / 3600 * (os.cpu_count() or 1)}
        print(f"\nprojected full Materials Project rebuild ({MP_MATERIALS:,} structures, Togo size distribution): "
              f"{projection['hours']:.1f} h on this machine ({projection['core_hours']:.0f} core-hours)")
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
              "peak_rss_main_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "workers": args.workers, "rows": rows, "mp_projection": projection}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
