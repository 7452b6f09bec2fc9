"""``vgnn demo``, ``vgnn qpath`` and ``vgnn predict``: phonons of structures you have."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vgnn_core.settings import shared_data_dir


def _cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import exactness_table, phonopy_examples, side_by_side, spring_models

    root = Path(args.data_dir) if args.data_dir else shared_data_dir()
    examples = root / "phonopy_examples" if root else None
    rows = spring_models()
    if examples and examples.is_dir():
        print(f"Exact phonons through vgnn_core's D(q) assembly vs phonopy ({examples}):\n")
        rows += phonopy_examples(examples)
    else:
        print("phonopy example force sets not found (set VGNN_DATA_DIR); analytic models only:\n")
    print(exactness_table(rows))
    if examples and examples.is_dir() and (examples / "ZnO").is_dir():
        print("\n" + side_by_side(examples, "ZnO"))
    worst = max(r.max_abs_difference_cm1 for r in rows)
    print(f"\nlargest deviation from the exact reference: {worst:.2e} cm⁻¹")
    return 0 if worst < 1e-3 else 1


def _cmd_qpath(args: argparse.Namespace) -> int:
    from vgnn_core import high_symmetry_path, read_structure

    structure = read_structure(args.structure)
    path = high_symmetry_path(structure, line_density=args.density)
    print(f"{structure.composition.reduced_formula}: {path.bravais_lattice}, {path.n_qpoints} q-points")
    for label, q in path.special_points.items():
        print(f"  {label:<8} {q[0]: .6f} {q[1]: .6f} {q[2]: .6f}")
    print("  path: " + " | ".join("-".join(seg) for seg in path.segment_labels()))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from flows.predict import predict_files

    text, failures = predict_files(
        args.inputs, model=args.model, fmt=args.format, out=args.out, plot=args.plot, unit=args.unit,
        export=args.export, temperature=args.temperature, mesh_density=args.mesh_density, keep_cell=args.keep_cell,
        nac=args.nac, born=args.born, log=lambda line: print(line, file=sys.stderr, flush=True),  # each failure as it happens
    )
    print(text)
    return 2 if failures else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to ``vgnn``."""
    demo = sub.add_parser("demo", help="exact phonons through our assembly, next to phonopy")
    demo.add_argument("--data-dir", help="folder holding phonopy_examples/ (default: $VGNN_DATA_DIR)")
    demo.set_defaults(func=_cmd_demo)
    qpath = sub.add_parser("qpath", help="high-symmetry q-path of a structure file, in its own basis")
    qpath.add_argument("structure")
    qpath.add_argument("--density", type=float, default=20.0, help="points per Å⁻¹ (2π included)")
    qpath.set_defaults(func=_cmd_qpath)
    pr = sub.add_parser("predict", help="phonons of structures: Γ modes, bands, DOS, heat capacity")
    pr.add_argument("inputs", nargs="+", metavar="FILE", help="CIF / POSCAR / extxyz files or mp-XXXX ids")
    pr.add_argument("--model", default="kmvn", choices=["kmvn", "mvn", "vvn"])
    pr.add_argument("--format", default="table", choices=["table", "json", "yaml", "parquet"])
    pr.add_argument("--out", help="write the output to this file (required for parquet)")
    pr.add_argument("--plot", help="band structure + DOS image (one per material when several)")
    pr.add_argument("--unit", default="cm-1", choices=["cm-1", "THz", "meV"], help="plot unit")
    pr.add_argument("--export", help="folder for band.yaml, phonopy.yaml and FORCE_CONSTANTS per material "
                                     "(with --nac or --born also the charges, as BORN.predicted)")
    pr.add_argument("--temperature", type=float, default=300.0, help="K, for the table's C_v, S, F")
    pr.add_argument("--mesh-density", type=float, help="q-mesh points per Å⁻¹ (default 40)")
    pr.add_argument("--nac", action="store_true",
                    help="LO-TO splitting at Γ from predicted Born charges and ε∞ (k-MVN): on Petretto val it "
                         "leaves the band MAE as it is and about halves the LO error at Γ (README, LO-TO table)")
    pr.add_argument("--born", metavar="BORN", help="phonopy BORN file of the one input: LO-TO from DFT charges")
    pr.add_argument("--keep-cell", action="store_true",
                    help="predict each cell as given (default: its primitive cell, so bands do not fold)")
    pr.set_defaults(func=_cmd_predict)
