"""VGNN against the MLIP route (phonopy finite displacements + CHGNet) on Petretto `test` materials.

For each material, in the same run on the same machine:

* **CHGNet + phonopy**: a diagonal supercell at least ``--supercell-length`` Å (10) along each
  lattice vector, 0.01 Å displacements, CHGNet forces (its pretrained weights ship in the wheel;
  ``pip install -e ".[bench]"``) minus the forces on the undisplaced supercell (the DFT cell is
  not CHGNet's minimum), symmetrised force constants, frequencies at the stored DFPT q-points and
  C_v(300 K) on a mesh;
* **k-MVN** (bands at the same q-points, C_v on its mesh) and **MVN** (Γ), the shipped models.

Reported against DFPT: band MAE and Γ MAE (cm⁻¹, per material, mean / median), normalised MSE,
C_v(300 K) relative error where the database has a thermo block; and wall seconds per material,
with ratios (speed-up, error ratio). ``--limit N`` for quick runs (default: all 156); rows go to
``vs_mlip.jsonl`` as they finish and ``--resume`` continues a killed run.
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
from vgnn_core.dataset import iter_petretto, load_split
from vgnn_core.dynamical_matrix import band_frequencies
from vgnn_core.metrics import material_metrics
from vgnn_core.properties import formula_units, mesh_properties
from vgnn_core.units import THZ_TO_CM1

RESULTS = Path(__file__).parent / "results"


def supercell_matrix(structure, length: float) -> np.ndarray:
    return np.diag([max(1, int(np.ceil(length / a))) for a in structure.lattice.abc])


def mlip_route(structure, qpoints: np.ndarray, calculator, length: float, mesh: tuple) -> dict:
    """phonopy + CHGNet: frequencies at ``qpoints`` (cm⁻¹), C_v(300 K) per formula unit, seconds."""
    import phonopy
    from ase import Atoms
    from phonopy.structure.atoms import PhonopyAtoms

    t0 = time.perf_counter()
    unit = PhonopyAtoms(symbols=[s.specie.symbol for s in structure], cell=structure.lattice.matrix,
                        scaled_positions=structure.frac_coords)
    ph = phonopy.Phonopy(unit, supercell_matrix=supercell_matrix(structure, length), primitive_matrix=np.eye(3), log_level=0)
    ph.generate_displacements(distance=0.01)

    def forces(cell) -> np.ndarray:
        atoms = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        atoms.calc = calculator
        return np.asarray(atoms.get_forces())

    residual = forces(ph.supercell)
    ph.forces = [forces(c) - residual for c in ph.supercells_with_displacements]
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    ph.run_qpoints(qpoints)
    bands = np.asarray(ph.qpoints.frequencies) * THZ_TO_CM1
    ph.run_mesh(list(mesh), is_gamma_center=True)
    ph.run_thermal_properties(temperatures=[300.0], exclude_gamma_acoustic=True)
    cv = float(ph.thermal_properties.heat_capacity[0]) / formula_units(structure)
    return {"bands": bands, "cv300": cv, "seconds": time.perf_counter() - t0, "supercell_atoms": len(ph.supercell)}


def summarize(rows: list[dict], key: str) -> dict:
    values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
    return {"mean": float(values.mean()), "median": float(np.median(values))} if values.size else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N test materials (default all 156)")
    parser.add_argument("--supercell-length", type=float, default=10.0)
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
        from chgnet.model.dynamics import CHGNetCalculator

        chgnet = CHGNetCalculator(CHGNet.load(verbose=False), use_device="cpu")
    kmvn, mvn = load_pretrained("kmvn"), load_pretrained("mvn")
    records = list(iter_petretto(ids=load_split()["test"], limit=args.limit))
    for r in records:
        if r.material_id in done:
            continue
        gi = r.gamma_index
        ref_gamma = None if gi is None else r.bands[gi]
        ref_cv = None
        if "C_v" in r.thermo:
            ref_cv = float(np.interp(300.0, r.thermo["temperature"], r.thermo["C_v"]))
        t0 = time.perf_counter()
        (fc,) = kmvn.predict_force_constants([r.structure])
        bands = band_frequencies([fc.to(torch.float64)], [torch.as_tensor(r.qpoints)])[0].numpy()
        qmesh, _, thermal = mesh_properties(fc, r.structure, temperatures=np.array([300.0]), partial=False)
        t_kmvn = time.perf_counter() - t0
        t0 = time.perf_counter()
        (gamma,) = mvn.predict_gamma([r.structure])
        t_mvn = time.perf_counter() - t0
        row = {"material_id": r.material_id, "atoms": len(r.structure), "kmvn_s": t_kmvn, "mvn_s": t_mvn,
               "kmvn_bands_mae": material_metrics(bands, r.bands)["mae"],
               "kmvn_bands_nmse": material_metrics(bands, r.bands)["nmse"]}
        if ref_gamma is not None:
            row["mvn_gamma_mae"] = material_metrics(gamma, ref_gamma)["mae"]
            row["kmvn_gamma_mae"] = material_metrics(bands[gi], ref_gamma)["mae"]
        if ref_cv:
            row["kmvn_cv300_rel"] = abs(thermal.per_formula_unit().heat_capacity[0] - ref_cv) / ref_cv
        try:
            m = mlip_route(r.structure, r.qpoints, chgnet, args.supercell_length, qmesh.mesh)
            row.update({"mlip_s": m["seconds"], "supercell_atoms": m["supercell_atoms"],
                        "mlip_bands_mae": material_metrics(m["bands"], r.bands)["mae"],
                        "mlip_bands_nmse": material_metrics(m["bands"], r.bands)["nmse"]})
            if ref_gamma is not None:
                row["mlip_gamma_mae"] = material_metrics(m["bands"][gi], ref_gamma)["mae"]
            if ref_cv:
                row["mlip_cv300_rel"] = abs(m["cv300"] - ref_cv) / ref_cv
        except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
            row["mlip_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        with rows_file.open("a") as fh:  # one line per material: a killed run resumes with --resume
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    keys = ["kmvn_bands_mae", "mlip_bands_mae", "mvn_gamma_mae", "kmvn_gamma_mae", "mlip_gamma_mae",
            "kmvn_bands_nmse", "mlip_bands_nmse", "kmvn_cv300_rel", "mlip_cv300_rel", "kmvn_s", "mvn_s", "mlip_s"]
    summary = {k: summarize(rows, k) for k in keys}
    both = [x for x in rows if "mlip_s" in x]
    speedup = float(np.sum([x["mlip_s"] for x in both]) / np.sum([x["kmvn_s"] for x in both])) if both else float("nan")
    error_ratio = summary["kmvn_bands_mae"]["mean"] / summary["mlip_bands_mae"]["mean"] if both else float("nan")
    print(f"\n{len(rows)} Petretto test materials ({len(both)} through both routes) — {platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{'':<26}{'band MAE':>16}{'Γ MAE':>16}{'band nMSE':>11}{'C_v(300K) err':>15}{'s/material':>12}")
    for label, p, g in (("k-MVN (bands, DOS)", "kmvn", "kmvn"), ("MVN (Γ only)", None, "mvn"), ("CHGNet + phonopy", "mlip", "mlip")):
        def fmt(key, scale=1.0, spec="{:.1f} / {:.1f}"):
            v = summary.get(key) or {}
            return spec.format(v["mean"] * scale, v["median"] * scale) if v else "–"
        print(f"{label:<26}{fmt(f'{p}_bands_mae') if p else '–':>16}{fmt(f'{g}_gamma_mae'):>16}"
              f"{fmt(f'{p}_bands_nmse', spec='{:.4f}') .split(' /')[0] if p else '–':>11}"
              f"{fmt(f'{p}_cv300_rel', 100, '{:.1f} %') .split(' /')[0] if p else '–':>15}"
              f"{summary[f'{p or g}_s']['mean'] if summary.get(f'{p or g}_s') else float('nan'):>12.3f}")
    print(f"k-MVN vs CHGNet+phonopy: {speedup:.0f}× faster per material (total time), band MAE ratio {error_ratio:.2f}")
    RESULTS.mkdir(exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "torch_threads": torch.get_num_threads(), "n_materials": len(rows), "supercell_length": args.supercell_length,
        "speedup_kmvn_vs_mlip": speedup, "band_mae_ratio_kmvn_vs_mlip": error_ratio,
        "summary": summary, "materials": rows}, indent=1))


if __name__ == "__main__":
    main()
