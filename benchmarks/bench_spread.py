"""What the ensemble's spread costs, solved real or complex: the k-MVN network stage with it.

The spread (:meth:`~vgnn_core.nn.ensemble.VGNNEnsemble.force_constants_and_agreement`) needs each
member's frequencies at Γ and the seven zone-boundary points of the 2×2×2 grid. There 2q is
integer, exp(2πi q·T) = ±1 and D(q) is real symmetric, so ``band_frequencies`` solves those
matrices as real ones (:func:`~vgnn_core.phonons.dynamical_matrix.real_dynamical_matrices`). This
times the shipped k-MVN's network stage (forward passes of every member, averaged force constants,
the spread; graphs built beforehand) on N Togo structures both ways in one process, interleaved
over ``--repeats`` rounds (each variant's fastest round counts), the complex way by switching the
real path off. Checks both give the same spread. Writes ``benchmarks/results/spread_cost.json``.
Run: ``python benchmarks/bench_spread.py [--limit N] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from unittest import mock

import numpy as np
import torch
from bench_properties import RESULTS, sample_structures

from vgnn_core import load_pretrained
from vgnn_core.phonons import dynamical_matrix


def network_stage(predictor, graphs, device: str) -> tuple[float, list]:
    """Seconds of one pass of the network stage and its per-crystal agreements."""
    t = time.perf_counter()
    (_, agreements), = predictor._force_constants_and_agreement(graphs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t, agreements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="Togo structures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    predictor = load_pretrained("kmvn", device=args.device)
    graphs = predictor.graphs(sample_structures(args.limit))
    network_stage(predictor, graphs[:8], args.device)  # warm-up
    complex_only = mock.patch.object(dynamical_matrix, "is_time_reversal_invariant", lambda q, tol=1e-9: False)
    seconds: dict[str, list[float]] = {"real": [], "complex": []}
    agreements = {}
    for _ in range(args.repeats):
        seconds["real"].append((run := network_stage(predictor, graphs, args.device))[0])
        agreements["real"] = run[1]
        with complex_only:
            seconds["complex"].append((run := network_stage(predictor, graphs, args.device))[0])
        agreements["complex"] = run[1]
    spread = {k: np.array([a.spread_cm1 for a in v]) for k, v in agreements.items()}
    highest = {k: np.array([a.highest_cm1 for a in v]) for k, v in agreements.items()}
    best = {k: min(v) for k, v in seconds.items()}
    report = {
        "materials": len(graphs), "device": args.device, "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(), "repeats": args.repeats, "seconds": seconds,
        "seconds_per_material": {k: v / len(graphs) for k, v in best.items()},
        "speedup_real_over_complex": best["complex"] / best["real"],
        "max_spread_difference_cm1": float(np.abs(spread["real"] - spread["complex"]).max()),
        "max_highest_difference_cm1": float(np.abs(highest["real"] - highest["complex"]).max()),
    }
    assert report["max_spread_difference_cm1"] < 1e-4 and report["max_highest_difference_cm1"] < 1e-4
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spread_cost.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"| network stage + spread, {len(graphs)} Togo structures, {args.device}, "
          f"{torch.get_num_threads()} threads | ms/material |\n|---|---|")
    for k in ("complex", "real"):
        print(f"| spread solved {k} | {1e3 * report['seconds_per_material'][k]:.1f} |")
    print(f"real is {report['speedup_real_over_complex']:.2f}× the complex; spreads equal within "
          f"{report['max_spread_difference_cm1']:.1e} cm⁻¹")


if __name__ == "__main__":
    main()
