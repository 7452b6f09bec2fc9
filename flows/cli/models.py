"""``vgnn train``, ``evaluate``, ``ensemble``, ``ship``, ``prepare-phonondb`` and ``download-data``:
the models and their data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: ``vgnn train`` options that set the TrainConfig field of the same name when given
TRAIN_OPTIONS = ("lr", "batch_size", "q_per_material", "patience", "weight_decay", "ema_decay", "select_on", "loss",
                 "block_weight", "val_q_stride")


def train_config(args: argparse.Namespace):
    """The :class:`~vgnn_core.training.train.TrainConfig` a parsed ``vgnn train`` line asks for."""
    import json

    from vgnn_core.training.train import TrainConfig

    cfg = TrainConfig(device=args.device, seed=args.seed, model={"kind": args.model, **json.loads(args.arch)},
                      data=args.data.split(","))
    if args.epochs:
        cfg.epochs = args.epochs
    for key in TRAIN_OPTIONS:
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from vgnn_core.training.data import training_data
    from vgnn_core.training.train import train

    cfg = train_config(args)
    train_samples, val_samples = training_data(cfg, args.split_file)
    out = Path(args.out or f"runs/{args.model}")
    state = train(train_samples, val_samples, cfg, out, resume=args.resume, init_from=args.init,
                  stop_after=args.stop_after)
    print(f"best val {cfg.select_on} {state['best_val']:.5f} at epoch {state['best_epoch']}; checkpoint {out / 'best.pt'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from vgnn_core.pretrained.registry import load_checkpoint, load_pretrained_model
    from vgnn_core.training import petretto, phonondb
    from vgnn_core.training.evaluation import evaluate

    model = load_checkpoint(args.checkpoint) if args.checkpoint else load_pretrained_model(args.model)
    source = phonondb if args.data == "phonondb" else petretto
    splits = source.load_split(args.split_file)
    if args.split not in splits:
        raise ValueError(f"{args.data} has no split {args.split!r} (it has {', '.join(sorted(splits))})")
    ids = splits[args.split]
    if args.twin_free:
        from vgnn_core.training.twins import twin_free

        ids = twin_free(ids, args.data, args.split)
    if args.heat_capacity:
        if args.data != "petretto2018":
            raise ValueError("--heat-capacity needs the Petretto thermo data (--data petretto2018)")
        from vgnn_core.training.evaluation import evaluate_heat_capacity

        result = evaluate_heat_capacity(model, list(petretto.iter_petretto(ids=ids)))
    elif args.data == "phonondb":
        # path bands (phonopy from the DFT force constants) exist for val / test; the commensurate
        # q-points are exact for every material
        cfg = model.config
        samples = phonondb.load_samples(ids, cfg.graph_cutoff, cfg.r_bond or cfg.r_max,
                                        evaluation=args.points == "path")
        result = evaluate(model, samples)
    else:
        result = evaluate(model, petretto.load_samples(ids, r_max=model.config.graph_cutoff))
    result["summary"].update(data=args.data, split=args.split, points=args.points, twin_free=args.twin_free,
                             split_file=str(args.split_file) if args.split_file else None,
                             checkpoint_sha256=model.checkpoint_sha256)
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def _cmd_ship(args: argparse.Namespace) -> int:
    from vgnn_core.pretrained.registry import CHECKPOINT_DIR
    from vgnn_core.training.ship import ship

    dest = Path(args.dest) if args.dest else CHECKPOINT_DIR
    if not args.dest and not (CHECKPOINT_DIR.parents[2] / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{CHECKPOINT_DIR} is inside an installed package, not a source tree: pass --dest")
    card = ship(args.run, args.name, dest)
    print(f"shipped {card['file']} (sha256 {card['sha256'][:12]}…); card {dest / (args.name + '.md')}")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from vgnn_core.pretrained.registry import combine_runs

    model = combine_runs(args.runs, args.out, kind=args.kind)
    print(f"{model.kind} ensemble of {len(model.members)} runs: {Path(args.out) / 'best.pt'} "
          f"(ship it with `vgnn ship {args.out} --name {model.kind}`)")
    return 0


def _cmd_download_data(args: argparse.Namespace) -> int:
    from vgnn_core.settings import cache_dir

    if args.dataset == "phonondb":
        from vgnn_core.io.phonondb_origin import download_phonondb

        out = Path(args.out) if args.out else cache_dir() / "phonondb_force_sets"
        ids = None
        if args.ids:
            ids = [x for x in args.ids.split(",") if x]
        paths, failures = download_phonondb(out, ids, progress=print)
        for material_id, cause in sorted(failures.items()):
            print(f"skipped {material_id}: {cause}", file=sys.stderr)
        print(f"{len(paths)} force set(s) in {out}; `vgnn prepare-phonondb --archive {out}` prepares them")
        return 2 if failures and not paths else 0
    from vgnn_core.io.figshare import PETRETTO_COLLECTION, download_collection

    out = Path(args.out) if args.out else cache_dir() / "petretto2018"
    paths = download_collection(out, PETRETTO_COLLECTION, pattern=args.pattern)
    for p in paths:
        print(p)
    print(f"{len(paths)} file(s) in {out}; point VGNN_DATA_DIR or `iter_petretto(PATH)` at them")
    return 0


def _cmd_prepare_phonondb(args: argparse.Namespace) -> int:
    from vgnn_core.training.phonondb import load_split, prepare_targets

    part, n_parts = (int(x) for x in args.part.split("/"))
    split = load_split()
    ids = sorted(split["train"] + split["val"] + split["test"])[part::n_parts]
    failures = prepare_targets(split["val"] + split["test"], r_max=args.r_max, r_bond=args.r_bond,
                               archive=args.archive, ids=ids, progress=print)
    for material_id, cause in sorted(failures.items()):
        print(f"skipped {material_id}: {cause}")
    print(f"{len(ids) - len(failures)} of {len(ids)} materials prepared, {len(failures)} skipped")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to ``vgnn``."""
    tr = sub.add_parser("train", help="train a VGNN model on Petretto DFPT bands and / or phonondb force sets")
    tr.add_argument("--model", choices=["kmvn", "mvn", "vvn"], default="kmvn")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tr.add_argument("--stop-after", type=int,
                    help="stop after this epoch of the schedule (which still spans --epochs); --resume continues")
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
    tr.add_argument("--val-q-stride", type=int, help="validate on every n-th path q-point (default 1: all)")
    tr.add_argument("--split-file", help="split.json (default: $VGNN_DATA_DIR/petretto2018/split.json)")
    tr.add_argument("--out", help="run folder (default runs/MODEL)")
    tr.set_defaults(func=_cmd_train)
    ev = sub.add_parser("evaluate", help="metrics of a model on a split of the Petretto or phonondb data")
    ev.add_argument("--model", choices=["kmvn", "mvn", "vvn"], default="kmvn")
    ev.add_argument("--checkpoint", help="a checkpoint file instead of the shipped model")
    ev.add_argument("--data", default="petretto2018", choices=["petretto2018", "phonondb"])
    ev.add_argument("--split", default="val", choices=["train", "val", "test", "reference_test_subset"])
    ev.add_argument("--points", default="path", choices=["path", "commensurate"],
                    help="phonondb: phonopy's path bands (val / test) or the supercell's exact commensurate q-points")
    ev.add_argument("--twin-free", action="store_true",
                    help="leave out held-out materials whose structure a training set holds (twins.json)")
    ev.add_argument("--split-file")
    ev.add_argument("--out", help="write summary and per-material rows as JSON")
    ev.add_argument("--heat-capacity", action="store_true",
                    help="C_v(T) from the model's q-mesh against the DFPT thermo block (k-MVN)")
    ev.set_defaults(func=_cmd_evaluate)
    sh = sub.add_parser("ship", help="evaluate a run's best.pt and install it with its model card")
    sh.add_argument("run", help="run folder holding best.pt, log.jsonl, train_config.json")
    sh.add_argument("--name", required=True, choices=["kmvn", "mvn", "vvn"])
    sh.add_argument("--dest", help="folder to ship into (default: vgnn_core/pretrained/checkpoints of the source "
                                   "tree this package runs from)")
    sh.set_defaults(func=_cmd_ship)
    en = sub.add_parser("ensemble", help="average several runs' best.pt (force constants) into one checkpoint")
    en.add_argument("runs", nargs="+", help="run folders of the same kind and graph cutoff")
    en.add_argument("--out", required=True, help="folder for best.pt and ensemble.json (then `vgnn ship` it)")
    en.add_argument("--kind", choices=["kmvn", "mvn"], help="read the members as this kind (k-MVN runs as an MVN)")
    en.set_defaults(func=_cmd_ensemble)
    pp = sub.add_parser("prepare-phonondb",
                        help="phonopy force constants and training targets of Togo's force sets, cached (resumable)")
    pp.add_argument("--archive", help="force_sets.tar.xz (default: $VGNN_DATA_DIR/togo_phonondb/)")
    pp.add_argument("--r-max", type=float, default=6.0, help="graph cutoff of the models to train (Å)")
    pp.add_argument("--r-bond", type=float, default=6.0, help="bond cutoff of the models to train (Å)")
    pp.add_argument("--part", default="0/1", help="K/N: prepare every N-th material from the K-th (parallel runs)")
    pp.set_defaults(func=_cmd_prepare_phonondb)
    dl = sub.add_parser("download-data", help="fetch the training data from its public origin (checked)")
    dl.add_argument("--dataset", default="petretto2018", choices=["petretto2018", "phonondb"],
                    help="petretto2018 (figshare, md5-checked) or phonondb (Togo's force sets from "
                         "WMD-group/phononDB on GitHub, git-hash-checked, converted to .npz)")
    dl.add_argument("--ids", help="phonondb: comma-separated material ids (default: all 10,034)")
    dl.add_argument("--out", help="destination (default: the cache folder)")
    dl.add_argument("--pattern", default="*", help="only files whose name matches this glob")
    dl.set_defaults(func=_cmd_download_data)
