"""Where a database material's time goes: the k-MVN property calculation stage by stage.

For N Materials Project structures from the Togo phonondb set (default 100, evenly spread over
the 10,034), the work ``vgnn build`` does per material with the shipped k-MVN, timed stage by
stage in one process: graph + network (batched), symmetry (spglib, the inversion centre),
high-symmetry path, band eigen-solves, q-mesh
(point group), mesh eigenvectors, DOS with partial DOS, thermal properties. The DOS is timed two
ways on the same frequencies: the default (each Gaussian summed within 10 σ of its centre) and
the reference it equals (``cutoff=None``: every Gaussian over the whole grid), which is what the
code did before. Then the whole per-material calculation after the network
(:func:`~vgnn_core.phonons.result.phonon_properties`, what ``Predictor.predict_phonons`` runs) for all N
materials three ways: one crystal at a time with torch's threads inside each eigen-solve (what
``predict_phonons`` did before), in one thread, and in ``--threads`` threads (default: every core)
each on one crystal at a time, as it does now; checks the last two are bitwise equal. Last, that
threaded calculation with the real symmetric form of the centrosymmetric crystals' D(q)
(:mod:`vgnn_core.phonons.centrosymmetric`, the default) against complex matrices for every
crystal, three interleaved rounds, with the largest band difference. Prints a table, writes
``benchmarks/results/properties.json``. Run: ``python benchmarks/bench_properties.py [--limit N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from flows.plan import BuildSettings
from flows.sources import togo_source
from vgnn_core import load_pretrained
from vgnn_core.crystal.crystal import Crystal, as_crystal
from vgnn_core.phonons.dos import phonon_dos
from vgnn_core.phonons.dynamical_matrix import band_frequencies
from vgnn_core.phonons.modes import modes
from vgnn_core.phonons.qpath import high_symmetry_path
from vgnn_core.phonons.result import crystal_mesh, element_groups, formula_units, phonon_properties
from vgnn_core.phonons.thermal import thermal_properties
from vgnn_core.threads import map_threads

#: The database build's settings (mesh density, temperatures).
SETTINGS = BuildSettings()

RESULTS = Path(__file__).parent / "results"


def sample_structures(n: int) -> list:
    """``n`` Togo structures evenly spread over the archive (its order is by material id)."""
    everything = [item.structure for item in togo_source()]
    step = max(1, len(everything) // n)
    return everything[::step][:n]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def material_stages(fc, structure) -> dict[str, float]:
    """Seconds of each stage after the network for one material (the pipeline's defaults)."""
    t = {}
    crystal = as_crystal(structure)
    inversion, t["symmetry"] = timed(lambda: crystal.inversion)  # spglib once, then the inversion centre
    path, t["path"] = timed(high_symmetry_path, structure)
    _, t["bands"] = timed(band_frequencies, [fc], [torch.as_tensor(path.qpoints)], inversions=[inversion])
    mesh, t["mesh"] = timed(crystal_mesh, crystal, density=SETTINGS.mesh_density)
    groups, names = element_groups(structure)
    (freqs, proj), t["mesh_modes"] = timed(modes, fc, mesh.qpoints, groups=groups, inversion=inversion)
    windowed, t["dos"] = timed(phonon_dos, freqs, mesh.weights, projections=proj, group_names=names)
    full, t["dos_full_grid"] = timed(phonon_dos, freqs, mesh.weights, projections=proj, group_names=names, cutoff=None)
    assert np.abs(windowed.total - full.total).max() <= 1e-12 * full.total.max(), "windowed DOS differs"
    _, t["thermal"] = timed(thermal_properties, freqs, mesh.weights, SETTINGS.temperature_array, formula_units(structure))
    return t


def threaded_properties(fcs, structures, threads: int | None) -> tuple[list, float]:
    """The pipeline's per-material calculation after the network for every material, in
    ``threads`` threads (None: a plain loop on torch's threads), and its wall seconds."""
    def one(job):
        fc, s = job
        return phonon_properties(fc, s, density=SETTINGS.mesh_density, temperatures=SETTINGS.temperature_array)

    jobs = list(zip(fcs, structures))
    if threads is None:
        return timed(lambda: [one(job) for job in jobs])
    return timed(map_threads, one, jobs, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="structures (evenly spread over Togo's 10,034)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for the threaded run (default: every core)")
    parser.add_argument("--json", default=str(RESULTS / "properties.json"))
    parser.add_argument("--baseline", help="a k-MVN checkpoint to time end to end beside the shipped one "
                                           "(predict_phonons: network, uncertainty, bands, mesh, DOS, thermo)")
    args = parser.parse_args()
    structures = sample_structures(args.limit)
    kmvn = load_pretrained("kmvn", batch_size=args.batch_size)
    kmvn.predict_force_constants(structures[:2])  # warm-up, untimed
    fcs, t_network = timed(kmvn.predict_force_constants, structures)
    rows = [material_stages(fc.cpu().to(torch.float64), s) for fc, s in zip(fcs, structures)]
    stages = list(rows[0])
    total = {k: float(np.sum([r[k] for r in rows])) for k in stages}
    n = len(structures)
    now = t_network + sum(v for k, v in total.items() if k != "dos_full_grid")
    before = now - total["dos"] + total["dos_full_grid"]
    _, t_loop = threaded_properties(fcs, structures, None)
    serial, t_serial = threaded_properties(fcs, structures, 1)
    threaded, t_threaded = threaded_properties(fcs, structures, args.threads)
    for a, b in zip(serial, threaded):
        assert np.array_equal(a.bands, b.bands) and np.array_equal(a.dos.total, b.dos.total), "threads changed a result"
    # the real form of centrosymmetric crystals' D(q) against the complex matrices, on the same
    # crystals told they have no inversion: rounds interleaved, each variant's fastest kept
    crystals = [as_crystal(s) for s in structures]
    # the same crystals declared without an inversion (symmetry analysed once, shared)
    plain = [Crystal(c.name, c.structure, c.symmetry, _inversion=None) for c in crystals]
    real_times, complex_times = [], []
    for _ in range(3):
        real_results, seconds = threaded_properties(fcs, crystals, args.threads)
        real_times.append(seconds)
        complex_results, seconds = threaded_properties(fcs, plain, args.threads)
        complex_times.append(seconds)
    band_diff = max(float(np.abs(a.bands - b.bands).max()) for a, b in zip(real_results, complex_results))
    n_centro = sum(c.inversion is not None for c in crystals)
    atoms = np.array([len(s) for s in structures])
    print(f"{n} Togo structures ({atoms.mean():.1f} atoms mean, {atoms.max()} max), shipped k-MVN "
          f"({len(getattr(kmvn.model, 'members', [])) or 1} member(s)) — {platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{'stage':<36}{'ms / material':>15}{'share':>8}")
    for label, value in [("graph + network (batched)", t_network)] + [(k, total[k]) for k in stages if k != "dos_full_grid"]:
        print(f"{label:<36}{1e3 * value / n:>15.1f}{100 * value / now:>7.1f}%")
    print(f"{'all stages':<36}{1e3 * now / n:>15.1f}")
    print(f"DOS over the whole grid (the reference, before): {1e3 * total['dos_full_grid'] / n:.1f} ms / material; "
          f"windowed {total['dos_full_grid'] / total['dos']:.1f}× faster, the whole calculation {before / now:.2f}× faster")
    print(f"after the network, all {n} materials, ms / material: one at a time on {torch.get_num_threads()} torch "
          f"threads (before) {1e3 * t_loop / n:.1f}, 1 thread {1e3 * t_serial / n:.1f}, {args.threads} threads one "
          f"crystal each (now) {1e3 * t_threaded / n:.1f}: {t_loop / t_threaded:.2f}× faster than before, "
          f"{t_serial / t_threaded:.2f}× than 1 thread, results bitwise equal")
    print(f"after the network, {args.threads} threads, {n_centro} of {n} crystals centrosymmetric: D(q) complex "
          f"{1e3 * min(complex_times) / n:.1f} ms / material, real form where there is an inversion "
          f"{1e3 * min(real_times) / n:.1f} (fastest of 3 interleaved rounds: {min(complex_times) / min(real_times):.2f}×; "
          f"rounds {', '.join(f'{a / b:.2f}×' for a, b in zip(complex_times, real_times))}); bands differ by "
          f"≤ {band_diff:.1e} cm⁻¹ (the force constants made exactly inversion-symmetric)")
    end_to_end = {}
    if args.baseline:
        from vgnn_core import Predictor, load_checkpoint

        candidates = {"baseline": Predictor(load_checkpoint(args.baseline), batch_size=args.batch_size), "shipped": kmvn}
        for label, predictor in candidates.items():
            predictor.predict_phonons(structures[:2], density=SETTINGS.mesh_density)  # warm-up
            _, seconds = timed(predictor.predict_phonons, structures, density=SETTINGS.mesh_density,
                               temperatures=SETTINGS.temperature_array)
            end_to_end[label] = seconds / n
        print(f"end to end (predict_phonons, {torch.get_num_threads()} threads), s / material: baseline "
              f"{args.baseline} {end_to_end['baseline']:.4f}, shipped {end_to_end['shipped']:.4f}: "
              f"{end_to_end['shipped'] / end_to_end['baseline']:.2f}× the baseline's time")
    RESULTS.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "end_to_end_seconds_per_material": end_to_end, "baseline": args.baseline,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "torch_threads": torch.get_num_threads(), "n_materials": n, "atoms_mean": float(atoms.mean()),
        "network_seconds": t_network, "stage_seconds": total, "seconds_per_material": now / n,
        "seconds_per_material_dos_full_grid": before / n, "speedup_dos": total["dos_full_grid"] / total["dos"],
        "speedup_whole": before / now, "threads": args.threads,
        "properties_seconds_loop_torch_threads": t_loop, "properties_seconds_1_thread": t_serial, "properties_seconds_threads": t_threaded,
        "speedup_threads": t_serial / t_threaded,
        "speedup_threads_vs_loop": t_loop / t_threaded,
        "centrosymmetric": n_centro, "properties_seconds_complex_rounds": complex_times,
        "properties_seconds_real_form_rounds": real_times,
        "speedup_real_form": min(complex_times) / min(real_times), "real_form_max_band_diff_cm1": band_diff}, indent=1))


if __name__ == "__main__":
    main()
