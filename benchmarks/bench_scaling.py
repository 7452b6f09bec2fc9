"""Cost against cell size: shipped MVN (Γ) and k-MVN (bands) from 2 to ≥ 500 atoms, and the
MLIP route on the small cells, with fitted exponents and the largest cell that fits in 16 GB.

Cases: silicon supercells (2 … 686 atoms) and IZA zeolite frameworks (primitive cells, up to
1,008 atoms). Each case runs in a fresh subprocess so its peak memory (max RSS) is its own; the
network (graph + forward pass) and the float64 eigen-solve (100 q-points for bands, O(m³) per q)
are timed separately. The MLIP route (CHGNet forces on ≥ 10 Å supercells, phonopy) runs on the
cells where it stays under ``--mlip-budget`` seconds. Writes ``benchmarks/results/scaling.json``.
Run: ``python benchmarks/bench_scaling.py [--quick] [--no-mlip]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
N_Q = 100
SI_SIZES = (1, 2, 3, 4, 5, 6, 7)  # 2 … 686 atoms
ZEOLITES = ("SOD", "LTA", "FAU", "MFI", "PAU")
MEMORY_LIMIT_GB = 16.0


def load_case(kind: str, arg: str):
    """Silicon supercells as in ``bench_inference``; zeolites reduced to primitive cells as the
    pipeline does."""
    if kind == "si":
        from bench_inference import load_case as silicon  # same folder

        return silicon("si", arg)
    from flows.sources import SourceItem
    from vgnn_core.settings import shared_data_dir

    cif = shared_data_dir() / "iza_zeolites" / "cifs" / f"{arg}.cif"
    return f"zeolite {arg}", SourceItem(f"iza-{arg}", path=cif, primitive=True).read().structure


def one_case(kind: str, arg: str, mlip: bool, device: str = "cpu") -> dict:
    """In a subprocess: timings and peak memory of one cell (host RSS; GPU memory on ``cuda``)."""
    import torch

    from vgnn_core import build_graph, collate, load_pretrained
    from vgnn_core.phonons.dynamical_matrix import band_frequencies, gamma_frequencies

    name, structure = load_case(kind, arg)
    mvn, kmvn = load_pretrained("mvn", device=device), load_pretrained("kmvn", device=device)
    gpu = device.startswith("cuda")

    def sync() -> None:  # GPU kernels run asynchronously: wait before reading the clock
        if gpu:
            torch.cuda.synchronize()

    warm = load_case("si", "1")[1]
    mvn.predict_gamma([warm])
    kmvn.predict_bands([warm], [np.zeros((2, 3))])
    q = np.linspace([0, 0, 0], [0.5, 0.5, 0.5], N_Q)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = {"case": name, "atoms": len(structure), "device": device}
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for label, predictor in (("mvn", mvn), ("kmvn", kmvn)):
            sync()
            t0 = time.perf_counter()
            graph = build_graph(structure, predictor.model.config.graph_cutoff)
            fc = predictor.model.force_constants(collate([graph], device=device))[0].to(torch.float64)
            sync()
            row[f"{label}_net_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if label == "mvn":
                gamma_frequencies([fc])
            else:
                band_frequencies([fc], [torch.as_tensor(q, device=device)])
            sync()
            row[f"{label}_eig_s"] = time.perf_counter() - t0
            row["bonds"] = fc.n_bonds
    if gpu:
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["added_rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    if mlip:
        from bench_vs_mlip import mlip_route  # noqa: E402 - same folder
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        calc = CHGNetCalculator(CHGNet.load(verbose=False), use_device="cpu")
        m = mlip_route(structure, q[:5], calc, 10.0, (2, 2, 2))
        row.update(mlip_s=m["seconds"], mlip_supercell_atoms=m["supercell_atoms"])
    return row


def fit(rows: list[dict], key: str, min_atoms: int = 16) -> float:
    pts = [(r["atoms"], r[key]) for r in rows if r["atoms"] >= min_atoms and r.get(key)]
    if len(pts) < 2:
        return float("nan")
    a, t = np.log(np.array(pts, dtype=float)).T
    return float(np.polyfit(a, t, 1)[0])


def largest_cell(rows: list[dict], limit_gb: float = MEMORY_LIMIT_GB, key: str = "peak_rss_mb") -> float:
    """Atoms at which memory reaches ``limit_gb``: the smaller of the power-law fit of the
    measured peak ``key`` and the bound of one dense eigen-solve (the q-chunking keeps the
    measured peak nearly flat, so the fit alone would extrapolate far beyond what one D(q) allows)."""
    dense = dense_solve_limit(limit_gb)
    pts = [(r["atoms"], r[key]) for r in rows if r["atoms"] >= 50]
    if len(pts) < 2:
        return dense
    a, m = np.log(np.array(pts, dtype=float)).T
    slope, intercept = np.polyfit(a, m, 1)
    fitted = float(np.exp((np.log(limit_gb * 1024) - intercept) / slope)) if slope > 0 else float("inf")
    return min(fitted, dense)


def dense_solve_limit(limit_gb: float = MEMORY_LIMIT_GB) -> float:
    """Atoms m at which three (3m)² complex128 matrices (D(q), LAPACK's copy and workspace) fill
    ``limit_gb``: 3 · 16 · 9 m² bytes."""
    return float(np.sqrt(limit_gb * 2**30 / (3 * 16 * 9)))


def report(rows: list[dict], machine: str, device: str) -> dict:
    """Print the table, fitted exponents and the largest cell; return them for the JSON."""
    print(f"\nCost against cell size on {device} — {machine} (seconds; bands = {N_Q} q; MLIP = "
          "CHGNet forces on ≥ 10 Å supercells + phonopy at 5 q)")
    print(f"{'case':<16}{'atoms':>6}{'bonds':>9}{'MVN net':>9}{'MVN eig':>9}{'kMVN net':>10}{'kMVN eig':>10}"
          f"{'peak MB':>9}{'MLIP s':>9}{'MLIP/net':>10}{'MLIP/all':>10}")
    for r in rows:
        k = r["kmvn_net_s"] + r["kmvn_eig_s"]
        mlip = (f"{r['mlip_s']:>9.1f}{r['mlip_s'] / r['kmvn_net_s']:>9.0f}×{r['mlip_s'] / k:>9.1f}×"
                if "mlip_s" in r else f"{'–':>9}{'–':>10}{'–':>10}")
        print(f"{r['case']:<16}{r['atoms']:>6}{r['bonds']:>9}{r['mvn_net_s']:>9.3f}{r['mvn_eig_s']:>9.3f}"
              f"{r['kmvn_net_s']:>10.3f}{r['kmvn_eig_s']:>10.3f}{r.get('peak_gpu_mb', r['peak_rss_mb']):>9.0f}{mlip}")
    exps = {key: fit(rows, key) for key in ("mvn_net_s", "kmvn_net_s", "mvn_eig_s", "kmvn_eig_s", "mlip_s")}
    gpu = device.startswith("cuda")
    biggest = largest_cell(rows, key="peak_gpu_mb" if gpu else "peak_rss_mb")
    print("fitted exponents t ∝ atoms^x (≥ 16 atoms): " + ", ".join(f"{k} {v:.2f}" for k, v in exps.items()))
    print(f"largest cell within {MEMORY_LIMIT_GB:.0f} GB: ~{biggest:.0f} atoms (peak {'GPU memory' if gpu else 'RSS'} "
          f"fit, bounded by one dense eigen-solve: {dense_solve_limit():.0f} atoms)")
    return {"machine": machine, "device": device, "exponents": exps, "largest_cell_atoms_16GB": biggest, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Si up to 250 atoms, no zeolites")
    parser.add_argument("--no-mlip", action="store_true")
    parser.add_argument("--mlip-budget", type=float, default=600.0, help="seconds per material")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--report", metavar="JSON", help="print the table of an earlier run's JSON (and refresh its summary)")
    parser.add_argument("--one-case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        Path(args.report).write_text(json.dumps({**saved, **report(saved["rows"], saved["machine"], saved["device"])}, indent=1))
        return
    if args.one_case:
        kind, arg, mlip = args.one_case
        print(json.dumps(one_case(kind, arg, mlip == "1", args.device)))
        return
    cases = [("si", str(k)) for k in (SI_SIZES[:5] if args.quick else SI_SIZES)]
    if not args.quick:
        cases += [("zeolite", z) for z in ZEOLITES]
    rows, mlip_ok = [], not args.no_mlip
    for kind, arg in cases:
        run = subprocess.run([sys.executable, __file__, "--one-case", kind, arg, "1" if mlip_ok else "0",
                              "--device", args.device],
                             capture_output=True, text=True, cwd=Path(__file__).parent)
        if run.returncode != 0:
            print(f"{kind} {arg}: failed: {run.stderr.strip().splitlines()[-1] if run.stderr else run.returncode}")
            continue
        row = json.loads(run.stdout.strip().splitlines()[-1])
        rows.append(row)
        if row.get("mlip_s", 0) > args.mlip_budget:
            mlip_ok = False  # larger cells would only take longer
        print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    if args.device.startswith("cuda"):
        import torch

        machine += f", {torch.cuda.get_device_name()}"
    result = report(rows, machine, args.device)
    RESULTS.mkdir(exist_ok=True)
    name = "scaling.json" if args.device == "cpu" else f"scaling_{args.device.split(':')[0]}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1))

if __name__ == "__main__":
    main()
