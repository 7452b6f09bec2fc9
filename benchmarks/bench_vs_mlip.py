"""VGNN against the MLIP route (phonopy finite displacements + CHGNet) on Petretto `test` materials.

For each material, in the same run on the same machine, the same work by both routes (bands at
the stored DFPT q-points and C_v(300 K) on the same q-mesh):

* **CHGNet + phonopy**, run the fast way: a diagonal supercell at least ``--supercell-length`` Å
  (10) along each lattice vector, 0.01 Å displacements, CHGNet energies and forces only (no
  stress or magnetic moments) for each displaced supercell (``--mlip-batch-size`` to batch), minus the
  forces on the undisplaced supercell (the DFT cell is not CHGNet's minimum), symmetrised force
  constants (its pretrained weights ship in the wheel; ``pip install -e ".[bench]"``);
* **k-MVN** (bands and C_v) and **MVN** (Γ), the shipped models, timed two ways: *alone* (one
  material per call: the latency a user waiting on one crystal sees) and *batched*
  (``--batch-size`` materials per forward pass and shared eigen-solves: the throughput of a
  database build; the per-material time is the batch's wall time over its size).

Reported against DFPT: band MAE and Γ MAE (cm⁻¹, per material, mean / median), normalised MSE,
C_v(300 K) relative error where the database has a thermo block; and wall seconds per material,
with ratios (speed-up alone and batched, error ratio). ``--limit N`` for quick runs (default: all
156); rows go to ``vs_mlip.jsonl`` as they finish and ``--resume`` continues a killed run.
Writes ``benchmarks/results/vs_mlip.json``. Run: ``python benchmarks/bench_vs_mlip.py --limit 10``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vgnn_core import load_pretrained
from vgnn_core.phonons.dynamical_matrix import band_frequencies
from vgnn_core.phonons.result import formula_units, mesh_thermal
from vgnn_core.phonons.units import THZ_TO_CM1
from vgnn_core.training.metrics import material_metrics
from vgnn_core.training.petretto import iter_petretto, load_split

RESULTS = Path(__file__).parent / "results"
T300 = np.array([300.0])


def supercell_matrix(structure, length: float) -> np.ndarray:
    return np.diag([max(1, int(np.ceil(length / a))) for a in structure.lattice.abc])


def chgnet_forces(model, cells, batch_size: int) -> list[np.ndarray]:
    """CHGNet forces (eV/Å) on phonopy cells, energies and forces only, in batched passes."""
    from pymatgen.core import Structure

    structures = [Structure(c.cell, c.symbols, c.scaled_positions) for c in cells]
    out = model.predict_structure(structures, task="ef", batch_size=batch_size)
    out = [out] if isinstance(out, dict) else out
    return [np.asarray(p["f"], dtype=float) for p in out]


def mlip_route(structure, qpoints: np.ndarray, model, length: float, mesh: tuple, batch_size: int) -> dict:
    """phonopy + CHGNet: frequencies at ``qpoints`` (cm⁻¹), C_v(300 K) per formula unit, seconds."""
    import phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    t0 = time.perf_counter()
    unit = PhonopyAtoms(symbols=[s.specie.symbol for s in structure], cell=structure.lattice.matrix,
                        scaled_positions=structure.frac_coords)
    ph = phonopy.Phonopy(unit, supercell_matrix=supercell_matrix(structure, length), primitive_matrix=np.eye(3), log_level=0)
    ph.generate_displacements(distance=0.01)
    residual, *displaced = chgnet_forces(model, [ph.supercell, *ph.supercells_with_displacements], batch_size)
    ph.forces = [f - residual for f in displaced]
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    t_fc = time.perf_counter() - t0
    ph.run_qpoints(qpoints)
    bands = np.asarray(ph.qpoints.frequencies) * THZ_TO_CM1
    ph.run_mesh(list(mesh), is_gamma_center=True)
    ph.run_thermal_properties(temperatures=T300, exclude_gamma_acoustic=True)
    cv = float(ph.thermal_properties.heat_capacity[0]) / formula_units(structure)
    return {"bands": bands, "cv300": cv, "seconds": time.perf_counter() - t0, "fc_seconds": t_fc,
            "supercell_atoms": len(ph.supercell)}


def kmvn_route(kmvn, records) -> tuple[list[np.ndarray], list[tuple], float]:
    """k-MVN bands at each record's stored q-points and (mesh, thermal) at 300 K, one batch;
    and the seconds the network took (structures → force constants)."""
    structures = [r.structure for r in records]
    t0 = time.perf_counter()
    fcs = [fc.to(torch.float64) for fc in kmvn.predict_force_constants(structures)]
    t_fc = time.perf_counter() - t0
    bands = band_frequencies(fcs, [torch.as_tensor(r.qpoints) for r in records])
    return [b.numpy() for b in bands], mesh_thermal(fcs, structures, temperatures=T300), t_fc


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def summarize(rows: list[dict], key: str) -> dict:
    values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
    return {"mean": float(values.mean()), "median": float(np.median(values))} if values.size else {}


def speedup(rows: list[dict], ours: str, theirs: str = "mlip_s") -> float:
    """Total time of the MLIP route over ours, on the materials both routes finished."""
    both = [x for x in rows if theirs in x and ours in x]
    return float(np.sum([x[theirs] for x in both]) / np.sum([x[ours] for x in both])) if both else float("nan")


def material_row(r, bands, thermal, gamma) -> dict:
    """Accuracy of k-MVN and MVN on one record against its DFPT data."""
    gi = r.gamma_index
    band_metrics = material_metrics(bands, r.bands)
    row = {"material_id": r.material_id, "atoms": len(r.structure),
           "kmvn_bands_mae": band_metrics["mae"], "kmvn_bands_nmse": band_metrics["nmse"]}
    if gi is not None:
        row["mvn_gamma_mae"] = material_metrics(gamma, r.bands[gi])["mae"]
        row["kmvn_gamma_mae"] = material_metrics(bands[gi], r.bands[gi])["mae"]
    if "C_v" in r.thermo:
        ref_cv = float(np.interp(300.0, r.thermo["temperature"], r.thermo["C_v"]))
        row["ref_cv300"] = ref_cv
        row["kmvn_cv300_rel"] = abs(thermal.per_formula_unit().heat_capacity[0] - ref_cv) / ref_cv
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N test materials (default all 156)")
    parser.add_argument("--supercell-length", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=32, help="materials per batched k-MVN / MVN call")
    parser.add_argument("--mlip-batch-size", type=int, default=1,
                        help="supercells per CHGNet forward pass (1: batching was slower above ~100 atoms "
                             "and 16 × 288-atom supercells took > 24 GB)")
    parser.add_argument("--json", default=str(RESULTS / "vs_mlip.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the per-material rows already in the .jsonl beside --json and go on")
    args = parser.parse_args()
    rows_file = Path(args.json).with_suffix(".jsonl")
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if args.resume and rows_file.exists() else []
    done = {row["material_id"] for row in rows}
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet

        chgnet = CHGNet.load(verbose=False, use_device="cpu")
    kmvn, mvn = load_pretrained("kmvn"), load_pretrained("mvn")
    records = [r for r in iter_petretto(ids=load_split()["test"], limit=args.limit) if r.material_id not in done]
    kmvn_route(kmvn, records[:2]), mvn.predict_gamma([r.structure for r in records[:2]])  # warm-up, untimed
    for start in range(0, len(records), args.batch_size):
        chunk = records[start : start + args.batch_size]
        (bands, thermo, t_fc), t_kmvn = timed(kmvn_route, kmvn, chunk)
        gammas, t_mvn = timed(mvn.predict_gamma, [r.structure for r in chunk])
        for k, r in enumerate(chunk):
            (one_bands, ((qmesh, _),), t_fc_alone), t_alone = timed(kmvn_route, kmvn, [r])
            _, t_mvn_alone = timed(mvn.predict_gamma, [r.structure])
            np.testing.assert_allclose(one_bands[0], bands[k], atol=0.05)  # batching: float32 round-off only
            row = material_row(r, bands[k], thermo[k][1], gammas[k])
            row.update({"kmvn_s": t_alone, "mvn_s": t_mvn_alone,
                        "kmvn_batched_s": t_kmvn / len(chunk), "mvn_batched_s": t_mvn / len(chunk),
                        "kmvn_fc_s": t_fc_alone, "kmvn_fc_batched_s": t_fc / len(chunk)})
            try:
                m = mlip_route(r.structure, r.qpoints, chgnet, args.supercell_length, qmesh.mesh, args.mlip_batch_size)
                mlip_metrics = material_metrics(m["bands"], r.bands)
                row.update({"mlip_s": m["seconds"], "mlip_fc_s": m["fc_seconds"], "supercell_atoms": m["supercell_atoms"],
                            "mlip_bands_mae": mlip_metrics["mae"], "mlip_bands_nmse": mlip_metrics["nmse"]})
                if r.gamma_index is not None:
                    row["mlip_gamma_mae"] = material_metrics(m["bands"][r.gamma_index], r.bands[r.gamma_index])["mae"]
                if "ref_cv300" in row:
                    row["mlip_cv300_rel"] = abs(m["cv300"] - row["ref_cv300"]) / row["ref_cv300"]
            except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
                row["mlip_error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            with rows_file.open("a") as fh:  # one line per material: a killed run resumes with --resume
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    report(rows, args)


def report(rows: list[dict], args) -> None:
    keys = ["kmvn_bands_mae", "mlip_bands_mae", "mvn_gamma_mae", "kmvn_gamma_mae", "mlip_gamma_mae",
            "kmvn_bands_nmse", "mlip_bands_nmse", "kmvn_cv300_rel", "mlip_cv300_rel",
            "kmvn_s", "kmvn_batched_s", "mvn_s", "mvn_batched_s", "mlip_s",
            "kmvn_fc_s", "kmvn_fc_batched_s", "mlip_fc_s"]
    summary = {k: summarize(rows, k) for k in keys}
    n_both = sum("mlip_s" in x for x in rows)
    ratios = {"kmvn_alone": speedup(rows, "kmvn_s"), "kmvn_batched": speedup(rows, "kmvn_batched_s"),
              "mvn_alone": speedup(rows, "mvn_s"), "mvn_batched": speedup(rows, "mvn_batched_s"),
              "force_constants_alone": speedup(rows, "kmvn_fc_s", "mlip_fc_s"),
              "force_constants_batched": speedup(rows, "kmvn_fc_batched_s", "mlip_fc_s")}
    error_ratio = summary["kmvn_bands_mae"]["mean"] / summary["mlip_bands_mae"]["mean"] if n_both else float("nan")

    def fmt(key, scale=1.0, spec="{:.1f} / {:.1f}"):
        v = summary.get(key) or {}
        return spec.format(v["mean"] * scale, v["median"] * scale) if v else "–"

    print(f"\n{len(rows)} Petretto test materials ({n_both} through both routes) — {platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{'':<20}{'band MAE':>14}{'Γ MAE':>14}{'band nMSE':>11}{'C_v(300K) err':>15}"
          f"{'s/mat alone':>13}{'s/mat batched':>15}")
    for label, p, g in (("k-MVN (bands, C_v)", "kmvn", "kmvn"), ("MVN (Γ only)", None, "mvn"), ("CHGNet + phonopy", "mlip", "mlip")):
        batched = summary.get(f"{p or g}_batched_s")
        print(f"{label:<20}{fmt(f'{p}_bands_mae') if p else '–':>14}{fmt(f'{g}_gamma_mae'):>14}"
              f"{fmt(f'{p}_bands_nmse', spec='{:.4f}').split(' /')[0] if p else '–':>11}"
              f"{fmt(f'{p}_cv300_rel', 100, '{:.1f} %').split(' /')[0] if p else '–':>15}"
              f"{summary[f'{p or g}_s']['mean']:>13.4f}{batched['mean'] if batched else float('nan'):>15.4f}")
    print(f"k-MVN vs CHGNet+phonopy (total time): {ratios['kmvn_alone']:.0f}× faster alone, "
          f"{ratios['kmvn_batched']:.0f}× batched ({args.batch_size} per call); band MAE ratio {error_ratio:.2f}")
    print(f"MVN (Γ) vs CHGNet+phonopy: {ratios['mvn_alone']:.0f}× alone, {ratios['mvn_batched']:.0f}× batched")
    fc = {k: summary[k]["mean"] for k in ("mlip_fc_s", "kmvn_fc_s", "kmvn_fc_batched_s") if summary.get(k)}
    if len(fc) == 3:
        print(f"force constants alone (CHGNet displacements + phonopy vs the k-MVN network): {fc['mlip_fc_s']:.3f} s vs "
              f"{fc['kmvn_fc_s']:.4f} s alone ({ratios['force_constants_alone']:.0f}×), {fc['kmvn_fc_batched_s']:.4f} s "
              f"batched ({ratios['force_constants_batched']:.0f}×); the rest (eigen-solves, mesh, C_v) is the same work on both routes")
    RESULTS.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "torch_threads": torch.get_num_threads(), "n_materials": len(rows), "supercell_length": args.supercell_length,
        "batch_size": args.batch_size, "mlip_batch_size": args.mlip_batch_size,
        "speedup_kmvn_vs_mlip": ratios["kmvn_alone"], "speedup_kmvn_batched_vs_mlip": ratios["kmvn_batched"],
        "speedups": ratios, "band_mae_ratio_kmvn_vs_mlip": error_ratio,
        "summary": summary, "materials": rows}, indent=1))


if __name__ == "__main__":
    main()
