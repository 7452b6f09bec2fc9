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


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from vgnn_core.training import TrainConfig, train, training_data

    cfg = TrainConfig(device=args.device, seed=args.seed, model={"kind": args.model, **json.loads(args.arch)},
                      data=args.data.split(","))
    if args.epochs:
        cfg.epochs = args.epochs
    for key in ("lr", "batch_size", "q_per_material", "patience", "weight_decay", "ema_decay", "select_on", "loss",
                "block_weight"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    train_samples, val_samples = training_data(cfg, args.split_file)
    out = Path(args.out or f"runs/{args.model}")
    state = train(train_samples, val_samples, cfg, out, resume=args.resume, init_from=args.init)
    print(f"best val {cfg.select_on} {state['best_val']:.5f} at epoch {state['best_epoch']}; checkpoint {out / 'best.pt'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from vgnn_core.checkpoints import load_checkpoint, load_pretrained_model
    from vgnn_core.dataset import load_samples, load_split
    from vgnn_core.evaluation import evaluate

    model = load_checkpoint(args.checkpoint) if args.checkpoint else load_pretrained_model(args.model)
    ids = load_split(args.split_file)[args.split]
    if args.heat_capacity:
        from vgnn_core.dataset import iter_petretto
        from vgnn_core.evaluation import evaluate_heat_capacity

        result = evaluate_heat_capacity(model, list(iter_petretto(ids=ids)))
    else:
        result = evaluate(model, load_samples(ids, r_max=model.config.graph_cutoff))
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    from vgnn_core.model_card import ship

    card = ship(args.run, args.name)
    print(f"shipped {card['file']} (sha256 {card['sha256'][:12]}…); card vgnn_core/checkpoints/{args.name}.md")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from vgnn_core.checkpoints import combine_runs

    model = combine_runs(args.runs, args.out)
    print(f"{model.kind} ensemble of {len(model.members)} runs: {Path(args.out) / 'best.pt'} "
          f"(ship it with `vgnn ship {args.out} --name {model.kind}`)")
    return 0


def _cmd_download_data(args: argparse.Namespace) -> int:
    from vgnn_core.dataset import cache_dir
    from vgnn_core.figshare import PETRETTO_COLLECTION, download_collection

    out = Path(args.out) if args.out else cache_dir() / "petretto2018"
    paths = download_collection(out, PETRETTO_COLLECTION, pattern=args.pattern)
    for p in paths:
        print(p)
    print(f"{len(paths)} file(s) in {out}; point VGNN_DATA_DIR or `iter_petretto(PATH)` at them")
    return 0


def _cmd_prepare_phonondb(args: argparse.Namespace) -> int:
    from vgnn_core.phonondb import load_split, prepare_targets

    part, n_parts = (int(x) for x in args.part.split("/"))
    split = load_split()
    ids = sorted(split["train"] + split["val"] + split["test"])[part::n_parts]
    failures = prepare_targets(split["val"] + split["test"], r_max=args.r_max, r_bond=args.r_bond,
                               archive=args.archive, ids=ids, progress=print)
    for material_id, cause in sorted(failures.items()):
        print(f"skipped {material_id}: {cause}")
    print(f"{len(ids) - len(failures)} of {len(ids)} materials prepared, {len(failures)} skipped")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from storage.query import run_query

    release = args.release or "."
    print(run_query(args.sql, release, fmt=args.format, out=args.out, max_rows=args.max_rows))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from storage.osf import OSFClient, publish

    result = publish(args.release, args.osf_project, OSFClient(log=print))
    print(f"release {result['release']}: {result['uploaded']} uploaded, {result['skipped']} already there")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from storage.osf import OSFClient, download_release

    out = download_release(args.osf_project, args.out, release=args.release, client=OSFClient(log=print))
    print(f"verified release in {out}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    import os

    models = args.models.split(",")
    if args.cluster == "none":
        from flows.build import build

        summary = build(args.source, models, args.out, release=args.release, atoms_per_shard=args.atoms_per_shard)
    else:
        # An ephemeral Prefect server on a busy 2-core machine can take longer than the default.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home
        from flows.build_flow import run_build

        summary = run_build(args.source, models, args.out, release=args.release, cluster=args.cluster,
                            n_workers=args.workers, atoms_per_shard=args.atoms_per_shard)
    print(f"release {summary['release']}: {summary['written']} materials written, {summary['failed']} failed, "
          f"{summary['shards']} shards ({summary['skipped_shards']} already complete)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from flows.predict import predict_files

    text, failures = predict_files(
        args.inputs, model=args.model, fmt=args.format, out=args.out, plot=args.plot, unit=args.unit,
        export=args.export, temperature=args.temperature, mesh_density=args.mesh_density,
    )
    print(text)
    for name, cause in failures:
        print(f"error: {name}: {cause}", file=sys.stderr)
    return 2 if failures else 0


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
    tr = sub.add_parser("train", help="train a VGNN model on Petretto DFPT bands and / or phonondb force sets")
    tr.add_argument("--model", choices=["kmvn", "mvn", "vvn"], default="kmvn")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--q-per-material", type=int)
    tr.add_argument("--patience", type=int)
    tr.add_argument("--weight-decay", type=float)
    tr.add_argument("--ema-decay", type=float, help="weight averaging, e.g. 0.99 (default off)")
    tr.add_argument("--select-on", choices=["mae", "nmse"], help="validation metric for the best epoch")
    tr.add_argument("--loss", choices=["nmse", "mae"], help="training loss (default nmse, the paper's)")
    tr.add_argument("--arch", default="{}", help="JSON overrides of the architecture (VGNNConfig)")
    tr.add_argument("--init", help="start from this checkpoint's weights (same architecture)")
    tr.add_argument("--data", default="petretto2018",
                    help="comma-separated training data: petretto2018 (DFPT bands), phonondb (Togo's force sets)")
    tr.add_argument("--block-weight", type=float, help="weight of the force-constant block loss (default 1)")
    tr.add_argument("--split-file", help="split.json (default: $VGNN_DATA_DIR/petretto2018/split.json)")
    tr.add_argument("--out", help="run folder (default runs/MODEL)")
    tr.set_defaults(func=_cmd_train)
    ev = sub.add_parser("evaluate", help="metrics of a model on a split of the Petretto database")
    ev.add_argument("--model", choices=["kmvn", "mvn", "vvn"], default="kmvn")
    ev.add_argument("--checkpoint", help="a checkpoint file instead of the shipped model")
    ev.add_argument("--split", default="val", choices=["train", "val", "test", "reference_test_subset"])
    ev.add_argument("--split-file")
    ev.add_argument("--out", help="write summary and per-material rows as JSON")
    ev.add_argument("--heat-capacity", action="store_true",
                    help="C_v(T) from the model's q-mesh against the DFPT thermo block (k-MVN)")
    ev.set_defaults(func=_cmd_evaluate)
    sh = sub.add_parser("ship", help="evaluate a run's best.pt and install it with its model card")
    sh.add_argument("run", help="run folder holding best.pt, log.jsonl, train_config.json")
    sh.add_argument("--name", required=True, choices=["kmvn", "mvn", "vvn"])
    sh.set_defaults(func=_cmd_ship)
    en = sub.add_parser("ensemble", help="average several runs' best.pt (force constants) into one checkpoint")
    en.add_argument("runs", nargs="+", help="run folders of the same kind and graph cutoff")
    en.add_argument("--out", required=True, help="folder for best.pt and ensemble.json (then `vgnn ship` it)")
    en.set_defaults(func=_cmd_ensemble)
    bu = sub.add_parser("build", help="build (or resume) a database release from a structure source")
    bu.add_argument("--source", default="demo",
                    help="demo | zeolites[:PATH] | iza:FAU+LTA | dir:PATH | togo | petretto | mp[:nsites<=40,stable,...]")
    bu.add_argument("--models", default="mvn,kmvn", help="comma-separated shipped names or checkpoint files")
    bu.add_argument("--out", required=True, help="database root")
    bu.add_argument("--release", help="release name (default SOURCE-YYYYMMDD; rerun to resume)")
    bu.add_argument("--cluster", default="local",
                    help="local (Dask LocalCluster) | ADDRESS | cuda | slurm | none (in-process, no Prefect)")
    bu.add_argument("--workers", type=int, default=2, help="Dask workers for local / slurm")
    bu.add_argument("--atoms-per-shard", type=int, default=2000, help="shard size (atoms); cells > 500 atoms go alone")
    bu.set_defaults(func=_cmd_build)
    qu = sub.add_parser("query", help="read-only SQL over a database release (DuckDB)")
    qu.add_argument("sql")
    qu.add_argument("--release", help="database root, release folder or release URL (default: .)")
    qu.add_argument("--format", default="table", choices=["table", "csv", "json", "parquet"])
    qu.add_argument("--out", help="write the result to this file")
    qu.add_argument("--max-rows", type=int, default=100, help="rows shown in table format")
    qu.set_defaults(func=_cmd_query)
    pb = sub.add_parser("publish", help="upload a release to an OSF project (token from OSF_TOKEN)")
    pb.add_argument("--osf-project", required=True, help="OSF project (node) id")
    pb.add_argument("--release", default=".", help="database root or release folder (default: .)")
    pb.set_defaults(func=_cmd_publish)
    dw = sub.add_parser("download", help="fetch and verify a published release from OSF")
    dw.add_argument("--osf-project", required=True)
    dw.add_argument("--release", help="release name (default: the newest)")
    dw.add_argument("--out", required=True)
    dw.set_defaults(func=_cmd_download)
    pr = sub.add_parser("predict", help="phonons of structures: Γ modes, bands, DOS, heat capacity")
    pr.add_argument("inputs", nargs="+", metavar="FILE", help="CIF / POSCAR / extxyz files or mp-XXXX ids")
    pr.add_argument("--model", default="kmvn", choices=["kmvn", "mvn", "vvn"])
    pr.add_argument("--format", default="table", choices=["table", "json", "yaml", "parquet"])
    pr.add_argument("--out", help="write the output to this file (required for parquet)")
    pr.add_argument("--plot", help="band structure + DOS image (one per material when several)")
    pr.add_argument("--unit", default="cm-1", choices=["cm-1", "THz", "meV"], help="plot unit")
    pr.add_argument("--export", help="folder for band.yaml, phonopy.yaml and FORCE_CONSTANTS per material")
    pr.add_argument("--temperature", type=float, default=300.0, help="K, for the table's C_v, S, F")
    pr.add_argument("--mesh-density", type=float, help="q-mesh points per Å⁻¹ (default 40)")
    pr.set_defaults(func=_cmd_predict)
    pp = sub.add_parser("prepare-phonondb",
                        help="phonopy force constants and training targets of Togo's force sets, cached (resumable)")
    pp.add_argument("--archive", help="force_sets.tar.xz (default: $VGNN_DATA_DIR/togo_phonondb/)")
    pp.add_argument("--r-max", type=float, default=6.0, help="graph cutoff of the models to train (Å)")
    pp.add_argument("--r-bond", type=float, default=6.0, help="bond cutoff of the models to train (Å)")
    pp.add_argument("--part", default="0/1", help="K/N: prepare every N-th material from the K-th (parallel runs)")
    pp.set_defaults(func=_cmd_prepare_phonondb)
    dl = sub.add_parser("download-data", help="fetch the Petretto 2018 DFPT data from figshare (md5-checked)")
    dl.add_argument("--out", help="destination (default: the cache folder)")
    dl.add_argument("--pattern", default="*", help="only files whose name matches this glob")
    dl.set_defaults(func=_cmd_download_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from storage.catalog import ReadOnlyQueryError
    from storage.osf import OSFError
    from vgnn_core import InvalidStructureError

    try:
        return int(args.func(args) or 0)
    except (InvalidStructureError, ReadOnlyQueryError, FileNotFoundError, OSFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
