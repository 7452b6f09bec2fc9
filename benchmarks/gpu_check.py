"""GPU build check (issue #20 item 5): a database build on a GPU, timed, and checked against the CPU.

1. Reads the first ``--n`` structures of Togo's phonondb (phonopy's primitive cells, from
   ``unitcells_conf_born.tar.xz``) and writes them as POSCAR files into a folder.
2. Times the stages of one in-process prediction pass on a subset (validation, then for the MVN
   and the k-MVN the wall seconds of :mod:`vgnn_core.timing`'s stages: graphs, networks, Γ
   eigen-solves, bands, DOS + thermal properties).
3. Compares frequencies on ``--compare`` structures: ``--device`` against the CPU (Γ from MVN,
   the band structure from k-MVN), max |Δω| in cm⁻¹ against a 1e-3 cm⁻¹ tolerance.
4. Builds the database from the folder with the shipped MVN and k-MVN, in process (the
   ``vgnn build --cluster none`` path: the same shards and rows as the Dask flow), on
   ``--device``: wall seconds, materials/s, and the projection for 146,000 materials. The build
   stops after the shard that passes ``--budget`` seconds from the start (then ``complete`` is
   false and the rate is that of the shards done), so the check fits its device call.
5. With ``--network-sweep``: the k-MVN ensemble's network stage alone (forward passes, force
   constants and the members' spread, graphs prebuilt) at several batch sizes (crystals and
   atoms per forward pass), seconds per material: what a bigger batch buys on the device.
6. With ``--profile N``: the k-MVN network stage on N structures under ``torch.profiler``: the
   operators that take the most device and host time, and how many kernels a material costs
   (what the next speed-up of the networks should aim at).
7. With ``--flow cuda``: the production path, ``vgnn build --cluster cuda`` (Prefect's flow on the
   Dask cluster laid out for the node by :func:`flows.clusters.gpu_node_layout`), on the whole
   sample in a child process: wall seconds from the call to the cluster's close, materials/s,
   and the flow's own timeline (cluster start, shards, finalize).
8. With ``--processes 4,8``: the same build split over P processes that share the GPU, each
   with the node's cores over P threads (the layout of P Dask workers per GPU), started
   together on round-robin parts of the sample: aggregate materials/s from the first start to
   the last finish (imports and model loading included), each process's peak memory.

Writes ``gpu_check_<device>.json`` into ``--out`` (and ``benchmarks/results/``). Run through
``benchmarks/gpu_check.sh`` on the device machine; on the CPU, e.g.
``python benchmarks/gpu_check.py --device cpu --n 20 --compare 4`` shows it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Materials in the Materials Project the projection is made for (issue #20).
TARGET_MATERIALS = 146_000
#: Largest |Δω| (cm⁻¹) accepted between the device and the CPU.
TOLERANCE_CM1 = 1e-3


#: What ``--flow`` imports beyond a build: Prefect, Dask and the Dask task runner, with their
#: requirements as this environment resolved them (:func:`flow_requirements`), carried as wheels.
FLOW_ROOTS = ("prefect", "prefect-dask", "dask", "distributed")
#: Left out of the carried wheels: the device image's own (torch and its stack import these;
#: another version there could break them) ...
DEVICE_IMAGE_KEEPS = frozenset(
    "annotated-doc attrs charset-normalizer colorama fsspec jinja2 markdown markupsafe packaging pluggy pygments "
    "python-dateutil pyyaml regex requests six typing-extensions urllib3 zipp".split())
#: ... and requirements a build never imports (measured: the distributions of every module loaded
#: by a ``vgnn build --cluster local`` and by Prefect's server app), to fit the device's 64 MiB.
NEVER_IMPORTED = frozenset(
    "apprise cyclopts dateparser docker docstring-parser jsonpatch oauthlib partd python-json-logger "
    "readchar requests-oauthlib rich-rst semver tzlocal".split())


#: Environment markers of the device machine's interpreter (the wheels are fetched for it).
DEVICE_PYTHON = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
                 "platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64"}


def _flow_closure(markers: dict[str, str]) -> tuple[dict[str, str | None], list[str]]:
    """The distributions :data:`FLOW_ROOTS` need, extras followed (sqlalchemy[asyncio] brings
    greenlet), as installed here: ``{name: version or None}``, and every requirement that the
    installed version of its target does not satisfy. :data:`NEVER_IMPORTED` are not followed."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    def key(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    found: dict[str, str | None] = {}
    unmet: list[str] = []
    done: set[tuple[str, str]] = set()
    todo = [(name, "") for name in FLOW_ROOTS]
    while todo:
        name, extra = todo.pop()
        name = key(name)
        if (name, extra) in done or name in NEVER_IMPORTED:
            continue
        done.add((name, extra))
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
            continue
        for text in md.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": extra, **markers}):
                continue
            todo += [(req.name, "")] + [(req.name, e) for e in req.extras]
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                continue  # reported as missing when visited
            if key(req.name) not in NEVER_IMPORTED and not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{name} {found[name]} needs {req}, found {req.name} {have}")
    return found, unmet


def flow_requirements() -> list[str]:
    """``name==version`` of the distributions ``--flow`` needs carried: :func:`_flow_closure` for the
    device's Python (:data:`DEVICE_PYTHON`) as this environment resolved it, less the device
    image's own (:data:`DEVICE_IMAGE_KEEPS`)."""
    found, _ = _flow_closure(DEVICE_PYTHON)
    missing = sorted(n for n, v in found.items() if v is None)
    if missing:
        raise SystemExit(f"--flow-requirements: not installed here: {', '.join(missing)}")
    return sorted(f"{n}=={v}" for n, v in found.items() if n not in DEVICE_IMAGE_KEEPS)


def flow_preflight() -> list[str]:
    """What would stop ``--flow`` on this machine, found in seconds (the wheels are installed
    with ``--no-deps``, so nothing else checks them): a distribution missing or too old for its
    dependants (the device image's own versions included), or Prefect's server app failing to build."""
    import importlib

    found, unmet = _flow_closure({})
    problems = [f"{n}: not installed" for n, v in sorted(found.items()) if v is None] + unmet
    for module in ("prefect_dask", "distributed", "greenlet", "burner_redis", "aiosqlite", "uvicorn"):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            problems.append(f"import {module}: {exc!r}")
    try:
        from prefect.server.api.server import create_app

        create_app(ephemeral=True)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Prefect's server app: {exc!r}")
    return problems


def read_sample(archive: Path, n: int) -> list[tuple[str, object]]:
    """``(material id, Structure)`` of the first ``n`` Togo phonondb entries."""
    sys.path.insert(0, str(ROOT))
    from flows.sources.phonondb import togo_source

    return [(item.material_id, item.structure) for item in togo_source(archive, limit=n)]


def write_poscars(sample: list[tuple[str, object]], folder: Path) -> None:
    from pymatgen.io.vasp import Poscar

    folder.mkdir(parents=True, exist_ok=True)
    for mid, s in sample:
        Poscar(s).write_file(folder / f"{mid}.vasp")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def stage_times(structures: list, device: str) -> dict:
    """Seconds of each stage (:class:`~vgnn_core.timing.StageClock`) of one pass over
    ``structures`` (models loaded, warm): MVN Γ spectra, then k-MVN bands + DOS + thermo."""
    from vgnn_core import load_pretrained
    from vgnn_core.crystal.crystal import as_crystal
    from vgnn_core.timing import StageClock

    mvn, kmvn = load_pretrained("mvn", device=device), load_pretrained("kmvn", device=device)
    warm = structures[:4]
    mvn.predict_gamma(warm), kmvn.predict_phonons(warm)
    t = time.perf_counter()
    crystals = [as_crystal(s) for s in structures]
    out: dict[str, float] = {"validate": time.perf_counter() - t}
    for name, predictor, options in (("mvn", mvn, {"bands": False, "thermal": False}), ("kmvn", kmvn, {})):
        clock = StageClock()
        t = time.perf_counter()
        predictor.predict_phonons(crystals, clock=clock, **options)
        sync(device)
        out[f"{name}_total"] = time.perf_counter() - t
        out.update({f"{name}_{stage}": seconds for stage, seconds in clock.wall_seconds().items()})
    return out


def compare(structures: list, device: str, float64: bool = False) -> dict:
    """max |Δω| (cm⁻¹) between ``device`` and the CPU: MVN Γ and k-MVN bands; with ``float64``
    the networks run in float64 on both (what is left is the devices' own arithmetic)."""
    from vgnn_core import load_pretrained

    out: dict[str, float] = {}
    ref = {k: load_pretrained(k, device="cpu") for k in ("mvn", "kmvn")}
    dev = {k: load_pretrained(k, device=device) for k in ("mvn", "kmvn")}
    if float64:
        for predictor in (*ref.values(), *dev.values()):
            predictor.model.double()
    g_ref, g_dev = ref["mvn"].predict_gamma(structures), dev["mvn"].predict_gamma(structures)
    b_ref, b_dev = ref["kmvn"].predict_phonons(structures, thermal=False), dev["kmvn"].predict_phonons(structures, thermal=False)
    dg = [np.abs(a - b) for a, b in zip(g_ref, g_dev)]
    db = [np.abs(a.bands - b.bands) for a, b in zip(b_ref, b_dev)]
    out["gamma_max_abs_diff_cm1"] = float(max(d.max() for d in dg))
    out["bands_max_abs_diff_cm1"] = float(max(d.max() for d in db))
    # where |ω| < 1 cm⁻¹ the √ amplifies float round-off of λ: reported apart
    soft = [np.abs(a.bands) < 1.0 for a in b_ref]
    out["bands_max_abs_diff_cm1_above_1cm1"] = float(max(np.where(s, 0.0, d).max() for s, d in zip(soft, db)))
    out["materials"] = len(structures)
    out["within_tolerance"] = bool(max(out["gamma_max_abs_diff_cm1"], out["bands_max_abs_diff_cm1"]) <= TOLERANCE_CM1)
    return out


def timed_build(structures: Path, db: Path, deadline: float, settings=None) -> dict:
    """The in-process build (``vgnn build --cluster none``: same shards and rows as the Dask
    flow) of a folder, shard after shard until done or past ``deadline`` (perf_counter)."""
    from flows.models import pick_models
    from flows.plan import finalize_build, plan_build
    from flows.shard import run_shard
    from vgnn_core.timing import StageClock

    shutil.rmtree(db, ignore_errors=True)
    t0 = time.perf_counter()
    plan = plan_build(f"dir:{structures}", "gpu-check", settings)
    t_plan = time.perf_counter() - t0
    loaded = pick_models(["mvn", "kmvn"])
    t_models = time.perf_counter() - t0 - t_plan
    reports = []
    for shard in plan.shards:
        reports.append(run_shard(shard, plan.items(shard), db, plan.release, plan.source_name, loaded, plan.run_id,
                                 plan.settings))
        if time.perf_counter() > deadline:
            break
    complete = len(reports) == len(plan.shards)
    summary = finalize_build(db, plan, loaded.identities(), reports) if complete else None
    wall = time.perf_counter() - t0
    done = sum(r.written + r.failed for r in reports)
    shard_s = sum(r.seconds for r in reports)
    stages = StageClock()
    for r in reports:  # also for a build stopped by its budget (no summary then)
        stages.merge(r.stage_seconds)
    return {"complete": complete, "shards": f"{len(reports)}/{len(plan.shards)}", "materials": done,
            "written": sum(r.written for r in reports), "failed": sum(r.failed for r in reports),
            "stage_seconds": stages.seconds,
            "wall_s": wall, "plan_s": t_plan, "load_models_s": t_models, "shards_s": shard_s,
            "materials_per_s": done / wall if wall else 0.0,
            "shard_materials_per_s": done / shard_s if shard_s else 0.0, "summary": summary}


#: (crystals, atoms) per forward pass tried by ``--network-sweep``; the first is the Predictor's default.
NETWORK_BATCHES = ((64, 4096), (256, 16384), (1024, 65536))


def network_sweep(structures: list, device: str) -> list[dict]:
    """Seconds per material of the k-MVN network stage (:meth:`Predictor._force_constants_and_agreement`:
    every member's forward pass, the averaged force constants and the members' spread) for each
    batch size of :data:`NETWORK_BATCHES`, graphs built once, one warm-up pass each."""
    from vgnn_core import load_pretrained

    out = []
    for crystals, atoms in NETWORK_BATCHES:
        predictor = load_pretrained("kmvn", device=device, batch_size=crystals, max_atoms_per_batch=atoms)
        graphs = predictor.graphs(structures)
        predictor._force_constants_and_agreement(graphs[:crystals])
        sync(device)
        t = time.perf_counter()
        predictor._force_constants_and_agreement(graphs)
        sync(device)
        seconds = time.perf_counter() - t
        out.append({"crystals_per_batch": crystals, "atoms_per_batch": atoms, "materials": len(graphs),
                    "seconds": seconds, "seconds_per_material": seconds / len(graphs)})
    return out


def profile_networks(structures: list, device: str, top: int = 20) -> dict:
    """The k-MVN network stage (as :func:`network_sweep`, default batches, warm) under
    ``torch.profiler``: wall seconds, kernels launched per material, and the ``top`` operators by
    self device time and by self host time (a launch-bound stage shows host time ≈ wall)."""
    from torch.profiler import ProfilerActivity, profile

    from vgnn_core import load_pretrained

    predictor = load_pretrained("kmvn", device=device)
    graphs = predictor.graphs(structures)
    predictor._force_constants_and_agreement(graphs[:8])
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    t = time.perf_counter()
    with profile(activities=activities) as prof:
        predictor._force_constants_and_agreement(graphs)
        sync(device)
    wall = time.perf_counter() - t
    events = prof.key_averages()
    on_device = device.startswith("cuda")

    def device_us(e) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)) or 0.0)

    def row(e) -> dict:
        return {"op": e.key, "calls": e.count, "self_host_ms": e.self_cpu_time_total / 1e3,
                "self_device_ms": device_us(e) / 1e3}

    # the kernels themselves: an operator's row repeats its kernels' device time
    kernel_events = [e for e in prof.events() if on_device and str(getattr(e, "device_type", "")).endswith("CUDA")]
    kernels = len(kernel_events)
    return {"materials": len(graphs), "wall_s": wall, "kernels": kernels,
            "kernels_per_material": kernels / len(graphs),
            "device_busy_s": sum(device_us(e) for e in kernel_events) / 1e6,
            "self_host_s": sum(e.self_cpu_time_total for e in events) / 1e6,
            "top_device": [row(e) for e in sorted(events, key=device_us, reverse=True)[:top]] if on_device else [],
            "top_host": [row(e) for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]]}


def flow_build(structures: Path, work: Path, cluster: str, device: str, budget_s: float) -> dict:
    """``vgnn build --cluster CLUSTER`` of ``structures`` in a child process (:func:`flow_part`),
    stopped after ``budget_s`` seconds: wall seconds, materials/s and the flow's summary."""
    out = work / "flow.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect_home")}
    t0 = time.perf_counter()
    # its own process group (Prefect's server, the Dask workers), killed whatever ends this one
    child = subprocess.Popen([sys.executable, __file__, "--flow-part", str(structures), "--flow", cluster,
                              "--device", device, "--out", str(out)], env=env, start_new_session=True)
    stopped = False
    try:
        child.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        stopped = True
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    code = child.wait()
    wall = time.perf_counter() - t0
    if not out.exists():
        why = f"stopped at its budget of {budget_s:.0f} s" if stopped else f"failed (exit code {code})"
        return {"cluster": cluster, "complete": False, "exit_code": code, "wall_s": wall, "note": f"no summary: {why}"}
    report = json.loads(out.read_text())
    done = report["summary"]["written"] + report["summary"]["failed"]
    return {"cluster": cluster, "complete": True, "exit_code": code, "wall_s": wall, "materials": done,
            "materials_per_s": done / wall if wall else 0.0,
            "projection_146k_hours": TARGET_MATERIALS / (done / wall) / 3600 if done else None, **report}


def flow_part(structures: Path, cluster: str, out: Path) -> None:
    """The child of :func:`flow_build`: the build through Prefect and Dask, as ``vgnn build`` runs it."""
    sys.path.insert(0, str(ROOT))
    from flows.build_flow import run_build
    from flows.clusters import gpu_node_layout

    layout = None
    if cluster == "cuda":
        layout = gpu_node_layout()
    t = time.perf_counter()
    summary = run_build(f"dir:{structures}", ["mvn", "kmvn"], str(out.parent / "flow_db"), release="gpu-check-flow",
                        cluster=cluster)
    out.write_text(json.dumps({"run_build_s": time.perf_counter() - t, "layout": layout and layout.__dict__,
                               "summary": summary, "driver_memory": peak_memory()}, default=str))


def peak_memory() -> dict:
    """This process's peak resident memory (VmHWM: its own, unlike ``ru_maxrss``, which a
    child keeps from its parent) and, on a GPU, its peak allocated GPU memory (GB)."""
    import torch

    try:
        kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_gb": kb / 2**20}
    if torch.cuda.is_available():
        out["peak_gpu_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def split_sample(structures: Path, parts: int, folder: Path) -> list[Path]:
    """The POSCARs of ``structures`` copied round-robin (by name) into ``parts`` folders."""
    shutil.rmtree(folder, ignore_errors=True)
    dirs = [folder / str(k) for k in range(parts)]
    for d in dirs:
        d.mkdir(parents=True)
    for k, f in enumerate(sorted(structures.iterdir())):
        shutil.copy(f, dirs[k % parts] / f.name)
    return dirs


def process_build(structures: Path, work: Path, processes: int, device: str, budget_s: float) -> dict:
    """The build split over ``processes`` processes sharing ``device`` and the node's cores:
    aggregate rate from the first start to the last finish, and each process's own report."""
    from flows.models import affinity_cores

    threads = max(1, affinity_cores() // processes)
    env = {**os.environ, "VGNN_DEVICE": device, "VGNN_CPU_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    folder = work / f"split{processes}"
    parts = split_sample(structures, processes, folder)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--build-part", str(d), "--device", device,
                               "--budget", str(budget_s), "--out", str(d.parent / f"{d.name}.json")], env=env)
             for d in parts]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    reports = []
    for d in parts:
        f = d.parent / f"{d.name}.json"
        reports.append(json.loads(f.read_text()) if f.exists() else None)
    done = sum(r["build"]["materials"] for r in reports if r)
    return {"processes": processes, "cpu_threads_each": threads, "exit_codes": codes, "wall_s": wall,
            "materials": done, "failed": sum(r["build"]["failed"] for r in reports if r),
            "complete": all(r and r["build"]["complete"] for r in reports),
            "materials_per_s": done / wall if wall else 0.0,
            "projection_146k_hours": TARGET_MATERIALS / (done / wall) / 3600 if done else None,
            "per_process": [r and {**{k: v for k, v in r["build"].items() if k != "summary"},
                                   **r["memory"]} for r in reports]}


def build_part(folder: Path, device: str, budget_s: float, out: Path) -> None:
    """One process of :func:`process_build`: the in-process build of ``folder``."""
    sys.path.insert(0, str(ROOT))
    os.environ["VGNN_DEVICE"] = device
    build = timed_build(folder, folder.parent / f"{folder.name}_db", time.perf_counter() + budget_s)
    out.write_text(json.dumps({"build": build, "memory": peak_memory()}, default=str))


def save(report: dict, out: Path, final: bool = False) -> None:
    """Write the report so far (a check stopped by its time limit still leaves its phases)."""
    import importlib.metadata as md

    report["finished"] = final
    if final:
        dists = md.packages_distributions()
        report["imported_distributions"] = sorted({d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])})
    name = f"gpu_check_{report['device'].replace(':', '')}.json"
    text = json.dumps(report, indent=1, default=str)
    for folder in {out, RESULTS}:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    if final:
        print(f"written {name} to {out} and {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="structures built (Togo order)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compare", type=int, default=48, help="structures compared with the CPU")
    parser.add_argument("--stages", type=int, default=100, help="structures of the staged timing pass")
    parser.add_argument("--archive", type=Path, default=None,
                        help="unitcells_conf_born.tar.xz (default: $VGNN_DATA_DIR/togo_phonondb/)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", RESULTS)))
    parser.add_argument("--budget", type=float, default=400.0,
                        help="seconds for the whole check: the build stops after the shard that passes it")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--processes", default="1",
                        help="comma-separated process counts to build with (1: in this process, 0: no build)")
    parser.add_argument("--network-sweep", type=int, default=0, metavar="N",
                        help="time the k-MVN network stage alone on N structures at several batch sizes")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile the k-MVN network stage on N structures (torch.profiler)")
    parser.add_argument("--flow", default=None, metavar="CLUSTER",
                        help="also build the whole sample with vgnn build --cluster CLUSTER (cuda on a GPU node)")
    parser.add_argument("--flow-requirements", action="store_true",
                        help="print the pins of the wheels --flow needs carried (gpu_check.sh prepare) and exit")
    parser.add_argument("--flow-preflight", action="store_true",
                        help="check that --flow can run here (imports, requirement versions) and exit")
    parser.add_argument("--build-part", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--flow-part", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flow_requirements:
        print(" ".join(flow_requirements()))
        return
    if args.flow_preflight:
        problems = flow_preflight()
        print("\n".join(problems) or "--flow preflight: nothing missing")
        raise SystemExit(1 if problems else 0)
    # the outer `timeout` sends SIGTERM: exit through Python, so a flow child's group is killed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    if args.build_part is not None:
        build_part(args.build_part, args.device, args.budget, args.out)
        return
    if args.flow_part is not None:
        os.environ["VGNN_DEVICE"] = args.device
        flow_part(args.flow_part, args.flow, args.out)
        return
    os.environ["VGNN_DEVICE"] = args.device
    sys.path.insert(0, str(ROOT))
    import torch

    from vgnn_core.settings import shared_data_dir

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no GPU")
    archive = args.archive or (shared_data_dir() or Path(".")) / "togo_phonondb" / "unitcells_conf_born.tar.xz"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="vgnn_gpu_check_"))
    report: dict = {"device": args.device, "n_requested": args.n, "machine": platform.platform(),
                    "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    t0 = time.perf_counter()
    deadline = t0 + args.budget
    sample = read_sample(archive, args.n)
    write_poscars(sample, work / "structures")
    report["read_sample_s"] = time.perf_counter() - t0
    report["materials"] = len(sample)
    report["atoms"] = int(sum(len(s) for _, s in sample))
    print(f"{len(sample)} structures ({report['atoms']} atoms) in {report['read_sample_s']:.1f} s", flush=True)
    save(report, args.out)

    structures = [s for _, s in sample]
    if args.stages:
        report["stages_materials"] = min(args.stages, len(structures))
        report["stages_s"] = stage_times(structures[: args.stages], args.device)
        print("stages:", json.dumps(report["stages_s"]), flush=True)
        save(report, args.out)
    if args.compare:
        # on --device cpu this compares the CPU with itself: a check of the script's own path
        report["vs_cpu"] = compare(structures[: args.compare], args.device)
        print("vs cpu:", json.dumps(report["vs_cpu"]), flush=True)
        report["vs_cpu_float64"] = compare(structures[: args.compare], args.device, float64=True)
        print("vs cpu, networks in float64:", json.dumps(report["vs_cpu_float64"]), flush=True)
        save(report, args.out)

    if args.network_sweep:
        report["network_sweep"] = network_sweep(structures[: args.network_sweep], args.device)
        print("network sweep:", json.dumps(report["network_sweep"]), flush=True)
        save(report, args.out)

    if args.profile:
        report["profile"] = profile_networks(structures[: args.profile], args.device)
        print("profile:", json.dumps({k: v for k, v in report["profile"].items() if not k.startswith("top")}), flush=True)
        for row in report["profile"]["top_device"][:12] or report["profile"]["top_host"][:12]:
            print("   ", json.dumps(row), flush=True)
        save(report, args.out)
    if args.flow:
        left = max(1.0, deadline - time.perf_counter())
        report["flow_build"] = flow_build(work / "structures", work, args.flow, args.device, left)
        print("flow build:", json.dumps({k: v for k, v in report["flow_build"].items() if k != "summary"}, default=str),
              flush=True)
        save(report, args.out)

    for processes in (int(p) for p in args.processes.split(",")):
        if processes == 0:  # no build (e.g. only the network sweep)
            continue
        if processes == 1:
            report["build"] = timed_build(work / "structures", work / "db", deadline)
            report["memory"] = peak_memory()
            rate = report["build"]["materials_per_s"]
            report["projection_146k"] = {
                "materials": TARGET_MATERIALS, "hours": TARGET_MATERIALS / rate / 3600 if rate else None,
                "note": f"at this sample's mean size ({report['atoms'] / len(sample):.1f} atoms), one GPU, one process"}
            print(f"build: {json.dumps({k: v for k, v in report['build'].items() if k != 'summary'})}; "
                  f"146k in {report['projection_146k']['hours']} h", flush=True)
        else:
            left = max(30.0, deadline - time.perf_counter())
            result = process_build(work / "structures", work, processes, args.device, left)
            report.setdefault("process_builds", []).append(result)
            print(f"build in {processes} processes: {json.dumps({k: v for k, v in result.items() if k != 'per_process'})}",
                  flush=True)
        save(report, args.out)

    save(report, args.out, final=True)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
