"""D(q) assembled from per-shift tables against the sum over bonds at every q-point, in one process.

A crystal's bonds share a few dozen distinct shifts (lattice translations T, or T + ΔL/2 in the
real form of centrosymmetric crystals), so :class:`~vgnn_core.phonons.dynamical_matrix.ShiftTable`
and :class:`~vgnn_core.phonons.centrosymmetric.RealFormTable` sum the blocks per shift once and
assemble D at all q-points as one matrix product. The baseline is the bond-by-bond sum, which
the code keeps for cells too large for a table (``SHIFT_TABLE_MAX`` set to 0 here), and the code
as it was before the tables. With the
shipped k-MVN and the LO–TO jump from predicted Born charges (as in a build), on Togo structures
spread over the 10,034 (every tenth, the first ``--limit``), in batches of ``--batch-size``:

1. ``predict_phonons`` three ways, interleaved for ``--repeats`` rounds, per stage (the
   ``network`` stage holds the members' spread at the 2×2×2 zone-boundary points, ``bands`` the
   path and Γ, ``dos_thermo`` the mesh): with the tables; bond by bond; and as before the
   tables (bond by bond, and the jump at Γ evaluated, as zeros, at every q-point);
2. what the change makes of the results (tables against as before): the largest difference of
   the bands, Γ, the mesh's heat capacity and the members' spread (cm⁻¹, J/K/mol).

Prints a table and writes ``results/assembly/assembly.json``. Run: ``python benchmarks/bench_assembly.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "assembly"


@contextlib.contextmanager
def bond_by_bond() -> Iterator[None]:
    """Within it, every D(q) is summed bond by bond at each q-point (no table is small enough)."""
    from unittest import mock

    from vgnn_core.phonons import dynamical_matrix

    with mock.patch.object(dynamical_matrix, "SHIFT_TABLE_MAX", 0):
        yield


@contextlib.contextmanager
def as_before() -> Iterator[None]:
    """:func:`bond_by_bond`, and the jump at Γ evaluated (as zeros) at every q-point, as the
    code did before the tables (the jump's matrices then added everywhere)."""
    from unittest import mock

    from vgnn_core.phonons import centrosymmetric, dynamical_matrix

    def everywhere(nac, fc, qpoints, q_directions=None):
        qpoints = np.asarray(qpoints, dtype=float).reshape(-1, 3)
        return np.arange(len(qpoints)), nac.dynamical_term(fc, qpoints, q_directions)

    with bond_by_bond(), mock.patch.object(dynamical_matrix, "correction_at", everywhere), \
            mock.patch.object(centrosymmetric, "correction_at", everywhere):
        yield


def _togo_structures(limit: int) -> list:
    from flows.sources.phonondb import togo_source

    out = []
    for k, item in enumerate(togo_source()):
        if k % 10 == 0:
            out.append(item.structure)
            if len(out) >= limit:
                break
    return out


def main() -> None:
    from vgnn_core.crystal.crystal import as_crystal
    from vgnn_core.predict import load_pretrained
    from vgnn_core.timing import StageClock

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="Togo structures (every tenth of the 10,034)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "assembly.json"))
    args = parser.parse_args()

    torch.set_num_threads(2)
    crystals = [as_crystal(s) for s in _togo_structures(args.limit)]
    predictor = load_pretrained("kmvn")
    batches = [crystals[i:i + args.batch_size] for i in range(0, len(crystals), args.batch_size)]

    def run(clock: StageClock | None = None) -> list:
        out = []
        for batch in batches:
            out += predictor.predict_phonons(batch, nac=True, clock=clock)
        return out

    ways = {"tables": contextlib.nullcontext, "bonds": bond_by_bond, "before": as_before}

    def timed(way: str) -> dict[str, float]:
        clock = StageClock()
        t0 = time.perf_counter()
        with ways[way]():
            run(clock)
        return {"total": time.perf_counter() - t0, **clock.wall_seconds()}

    for way in ways:  # warm-up
        timed(way)
    samples: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for _ in range(args.repeats):  # interleaved, so a drift of the machine hits all alike
        for way in ways:
            samples[way].append(timed(way))
    new = run()
    with as_before():
        old = run()

    def largest(get) -> float:
        diffs = [np.abs(np.asarray(get(a), dtype=float) - np.asarray(get(b), dtype=float)).max()
                 for a, b in zip(new, old) if get(a) is not None and np.size(get(a))]
        return float(max(diffs)) if diffs else 0.0

    stages = ["total", "network", "bands", "dos_thermo"]
    best = {way: {s: min(x[s] for x in runs) for s in stages} for way, runs in samples.items()}
    n = len(crystals)
    result = {
        "structures": n, "atoms_mean": float(np.mean([c.n_atoms for c in crystals])),
        "centrosymmetric": int(sum(c.inversion is not None for c in crystals)),
        "batch_size": args.batch_size, "repeats": args.repeats,
        "seconds_fastest": best,
        "speedup_over_bonds": {s: best["bonds"][s] / best["tables"][s] for s in stages},
        "speedup_over_before": {s: best["before"][s] / best["tables"][s] for s in stages},
        "samples_s": samples,
        "bands_max_abs_diff_cm1": largest(lambda r: r.bands),
        "gamma_max_abs_diff_cm1": largest(lambda r: r.gamma),
        "uncertainty_max_abs_diff_cm1": largest(lambda r: r.uncertainty_cm1),
        "heat_capacity_max_abs_diff": largest(lambda r: None if r.thermal is None else r.thermal.heat_capacity),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}",
        "torch": torch.__version__,
    }
    print(f"{n} Togo structures ({result['atoms_mean']:.1f} atoms mean, {result['centrosymmetric']} "
          f"centrosymmetric), shipped k-MVN with the jump at Γ, fastest of {args.repeats}; seconds")
    print(f"{'stage':14s} {'tables':>9s} {'bonds':>9s} {'before':>9s} {'vs bonds':>9s} {'vs before':>10s}")
    for s in stages:
        print(f"{s:14s} {best['tables'][s]:9.2f} {best['bonds'][s]:9.2f} {best['before'][s]:9.2f} "
              f"{result['speedup_over_bonds'][s]:8.2f}× {result['speedup_over_before'][s]:9.2f}×")
    print(f"results differ by ≤ {result['bands_max_abs_diff_cm1']:.1e} cm⁻¹ (bands), "
          f"{result['gamma_max_abs_diff_cm1']:.1e} (Γ), {result['uncertainty_max_abs_diff_cm1']:.1e} (spread), "
          f"{result['heat_capacity_max_abs_diff']:.1e} J/K/mol (C_v)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
