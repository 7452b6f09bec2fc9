"""The ``vgnn`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vgnn_core.data_paths import shared_data_dir


def _cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import format_table, phonopy_examples, side_by_side, spring_models

    root = Path(args.data_dir) if args.data_dir else shared_data_dir()
    examples = root / "phonopy_examples" if root else None
    rows = spring_models()
    if examples and examples.is_dir():
        print(f"Exact phonons through vgnn_core's D(q) assembly vs phonopy ({examples}):\n")
        rows += phonopy_examples(examples)
    else:
        print("phonopy example force sets not found (set VGNN_DATA_DIR); analytic models only:\n")
    print(format_table(rows))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgnn", description="VGNN phonon predictions and database")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="exact phonons through our assembly, next to phonopy")
    demo.add_argument("--data-dir", help="folder holding phonopy_examples/ (default: $VGNN_DATA_DIR)")
    demo.set_defaults(func=_cmd_demo)
    qpath = sub.add_parser("qpath", help="high-symmetry q-path of a structure file, in its own basis")
    qpath.add_argument("structure")
    qpath.add_argument("--density", type=float, default=20.0, help="points per Å⁻¹ (2π included)")
    qpath.set_defaults(func=_cmd_qpath)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vgnn_core import InvalidStructureError

    try:
        return int(args.func(args) or 0)
    except InvalidStructureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
