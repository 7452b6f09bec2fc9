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

``--by-size``: instead, against cell size (three Togo cells per size range, 10–200 atoms, the
shipped k-MVN's force constants in float64, one thread, 100 random q-points): the time of D(q)
with a table and bond by bond, complex and (where there is an inversion) in the real form, the
table's build, and the distinct shifts; writes ``results/assembly/by_size.json``.
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
from bench_fused import every_tenth_togo

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


def by_size(json_path: Path) -> None:
    """The ``--by-size`` table (module docstring)."""
    from flows.sources.phonondb import togo_source
    from vgnn_core.crystal.crystal import as_crystal
    from vgnn_core.phonons import dynamical_matrix as dm
    from vgnn_core.phonons.centrosymmetric import (
        centrosymmetric_matrices,
        inversion_pairs,
        real_form_table,
    )
    from vgnn_core.predict import load_pretrained

    torch.set_num_threads(1)
    ranges = [(10, 16), (20, 28), (36, 48), (56, 72), (80, 100), (110, 140), (150, 200)]
    picked: dict[tuple[int, int], list] = {r: [] for r in ranges}
    for item in togo_source():
        for lo, hi in ranges:
            if lo <= len(item.structure) <= hi and len(picked[(lo, hi)]) < 3:
                picked[(lo, hi)].append(item.structure)
        if all(len(v) == 3 for v in picked.values()):
            break
    predictor = load_pretrained("kmvn")
    q = torch.as_tensor(np.random.default_rng(0).uniform(-0.5, 0.5, (100, 3)))

    def ms(fn, repeats: int = 2) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - t0) / repeats

    rows = []
    print(f"{'atoms':>5s} {'bonds':>6s} {'S':>4s} {'complex: table':>15s} {'bonds':>8s} {'real: S':>8s} "
          f"{'table':>8s} {'build':>7s} {'bonds':>8s}   ms, 100 q-points, one thread")
    with torch.no_grad():
        for structures in picked.values():
            for structure in structures:
                crystal = as_crystal(structure)
                fc = predictor.predict_force_constants([structure])[0].to(torch.float64)
                row = {"atoms": fc.n_atoms, "bonds": fc.n_bonds, "shifts": len(dm.distinct_shifts(fc.shift)[0]),
                       "complex_table_ms": ms(lambda: dm.dynamical_matrices(fc, q))}
                with bond_by_bond():
                    row["complex_bonds_ms"] = ms(lambda: dm.dynamical_matrices(fc, q))
                pairs = inversion_pairs(fc, crystal.inversion) if crystal.inversion is not None else None
                table = real_form_table(pairs) if pairs is not None else None
                if table is not None:
                    row.update(real_shifts=len(table.shifts), real_table_ms=ms(lambda: table(q)),
                               real_build_ms=ms(lambda: real_form_table(pairs)))
                    with bond_by_bond():
                        plain = inversion_pairs(fc, crystal.inversion)
                        row["real_bonds_ms"] = ms(lambda: centrosymmetric_matrices(fc, plain, q))
                rows.append(row)
                real = (f"{row['real_shifts']:8d} {row['real_table_ms']:8.1f} {row['real_build_ms']:7.1f} "
                        f"{row['real_bonds_ms']:8.1f}" if "real_shifts" in row else f"{'–':>8s}")
                print(f"{row['atoms']:5d} {row['bonds']:6d} {row['shifts']:4d} {row['complex_table_ms']:15.1f} "
                      f"{row['complex_bonds_ms']:8.1f} {real}", flush=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"rows": rows, "q_points": len(q), "torch": torch.__version__,
                                     "machine": f"{platform.machine()}, 1 thread, {platform.platform()}"}, indent=1) + "\n")


def main() -> None:
    from vgnn_core.crystal.crystal import as_crystal
    from vgnn_core.predict import load_pretrained
    from vgnn_core.timing import StageClock

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="Togo structures (every tenth of the 10,034)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="default: results/assembly/assembly.json (by_size.json)")
    parser.add_argument("--by-size", action="store_true", help="the table against cell size instead")
    args = parser.parse_args()
    if args.by_size:
        by_size(Path(args.json or RESULTS / "by_size.json"))
        return
    args.json = args.json or str(RESULTS / "assembly.json")

    torch.set_num_threads(2)
    crystals = [as_crystal(s) for s in every_tenth_togo(args.limit)]
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
