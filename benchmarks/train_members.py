"""Train the shipped k-MVN ensemble's members again from the start: every run, in the order it ran.

The k-MVN model card records each member's history: ``training.ensemble_of`` holds every run's
``train_config`` and, under ``initialised_from``, the run it started from. This script turns that
record into ``vgnn train`` lines, so the recipe is the shipped models' own and never goes stale:

    python benchmarks/train_members.py --print                  # the lines, nothing run
    python benchmarks/train_members.py --history                # every run: where it is committed, its val
    python benchmarks/train_members.py --out runs               # every run of the three members
    python benchmarks/train_members.py --out runs --member 1    # one member
    python benchmarks/train_members.py --out runs --member 0 --first-run 17
        # from run 17 on, starting from the committed best epoch of run 16

Member k's runs go to ``OUT/kmvn_k.01``, ``OUT/kmvn_k.02``, … and its last to ``OUT/kmvn_k``
(what ``vgnn ensemble`` takes). A run whose log reaches the end of its schedule is skipped and a
killed one resumes (``--resume``), so the same command simply continues. A run that stopped and
went on under another schedule (``--stop-after``, then ``--resume``) is several lines, as it ran.
The runs' best epochs are committed (``benchmarks/results/training/resume``, ``init``), which is
what ``--first-run`` starts from.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from flows.cli.models import TRAIN_OPTIONS  # noqa: E402

CARD = ROOT / "vgnn_core" / "pretrained" / "checkpoints" / "kmvn.card.json"
TRAINING = "benchmarks/results/training/"
#: Checkpoints the card names by their path on the machine that trained them: the committed copy
#: and, where a run recorded in this repository made it, that run's train_config.json.
STARTS: dict[str, tuple[str, str | None]] = {
    # the Petretto-only release's second network (symmetric blocks), where member 0 began
    "/work/runs/init/kmvn_m1.pt": (TRAINING + "init/kmvn_m1.pt", None),
    # member 0's first run on both data sets (whole blocks): 4 epochs, then resumed to 11
    "/work/runs/init/kmvn_B_best.pt": (TRAINING + "init/kmvn_pdb_B.pt", TRAINING + "kmvn_pdb_B.train_config.json"),
}
#: TrainConfig fields ``vgnn train`` has no option for: a run must have used their defaults
_NO_OPTION = ("warmup_epochs", "final_lr_ratio", "grad_clip")


@dataclass(frozen=True)
class Run:
    """One training run of a member, as recorded."""

    #: its train_config.json (with ``resumed``: the schedules it ran under before the last one)
    config: dict
    #: epochs it ran under its last schedule's count (fewer than ``config["epochs"]`` when stopped)
    epochs_run: int

    @property
    def init(self) -> str | None:
        """The committed copy of the checkpoint it started from (path in the repository)."""
        return committed(self.config.get("init_from"))

    def schedules(self) -> list[tuple[dict, int]]:
        """(settings, the epoch it stopped after), one per ``vgnn train`` invocation."""
        earlier = [(h["config"], h["until_epoch"]) for h in self.config.get("resumed", [])]
        return earlier + [(self.config, self.epochs_run)]


def committed(recorded: str | None) -> str | None:
    """The repository's copy of a checkpoint a train_config names (``None`` for ``None``)."""
    if recorded is None:
        return None
    if recorded in STARTS:
        return STARTS[recorded][0]
    if TRAINING in recorded:  # recorded absolute or relative to the checkout
        return TRAINING + recorded.split(TRAINING, 1)[1]
    raise ValueError(f"a run started from {recorded}, which is not committed and not in STARTS")


def member_runs(card: dict, member: int) -> list[Run]:
    """Member ``member``'s runs, first to last, from the card's record."""
    node, runs = card["training"]["ensemble_of"][member], []
    while node:
        runs.append(Run(node["train_config"], node["epochs_run"]))
        node = node.get("initialised_from")
    while (start := STARTS.get(runs[-1].config.get("init_from"))) and start[1]:
        config = json.loads((ROOT / start[1]).read_text())
        runs.append(Run(config, config["epochs"]))
    return runs[::-1]


def _same_start(config: dict) -> dict:
    """A train_config with its starting point as the repository's copy, where there is one."""
    try:
        return {**config, "init_from": committed(config.get("init_from"))}
    except ValueError:
        return config


@functools.cache
def _committed_runs() -> tuple[tuple[Path, dict], ...]:
    """(log.jsonl, settings) of every committed run, read once; ``resume/`` folders (with best.pt) first."""
    folders = sorted((ROOT / TRAINING).glob("resume/*/train_config.json"))
    runs = []
    for path in folders + sorted((ROOT / TRAINING).glob("*.train_config.json")):
        log = path.with_name("log.jsonl") if path.name == "train_config.json" else (
            path.with_name(path.name.replace(".train_config.json", ".log.jsonl")))
        runs.append((log, _same_start(json.loads(path.read_text()))))
    return tuple(runs)


def committed_log(run: Run) -> Path | None:
    """The committed log.jsonl of a run (found by its settings), or ``None``."""
    key = _same_start(run.config)
    return next((log for log, config in _committed_runs() if config == key), None)


def history(runs: list[Run]) -> str:
    """A markdown table of a member's runs (:func:`member_runs`): seed, epochs, best ``val`` of the
    network alone (cm⁻¹; the training log's, every 4th path q-point) and the committed log."""
    lines = ["| run | seed | lr | epochs (in all) | best `val` alone: Petretto / phonondb / mean | committed |",
             "|---|---|---|---|---|---|"]
    total = 0
    for n, run in enumerate(runs, start=1):
        total += run.epochs_run
        log = committed_log(run)
        val = where = "–"
        if log is not None and log.is_file():
            best = min((json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["val_mae"])
            val = " / ".join(f"{best[k]:.2f}" for k in ("val_mae_petretto2018", "val_mae_phonondb", "val_mae") if k in best)
            where = f"`{log.relative_to(ROOT / TRAINING)}`"
        lines.append(f"| {n} | {run.config['seed']} | {run.config.get('lr', '')} | {run.epochs_run} ({total}) | {val} | {where} |")
    return "\n".join(lines)


def member_epochs(card: dict) -> list[int]:
    """Epochs each member has trained, all its runs together."""
    return [sum(run.epochs_run for run in member_runs(card, k)) for k in range(len(card["training"]["ensemble_of"]))]


def options(config: dict) -> list[str]:
    """``vgnn train`` options that give a recorded train_config (device and schedule aside)."""
    from vgnn_core.training.train import TrainConfig

    defaults = asdict(TrainConfig())
    unknown = set(config) - set(defaults) - {"init_from", "resumed"}
    if unknown:
        raise ValueError(f"train_config fields vgnn train does not know: {sorted(unknown)}")
    for key in _NO_OPTION:
        if config.get(key, defaults[key]) != defaults[key]:
            raise ValueError(f"{key} = {config[key]} has no vgnn train option (default {defaults[key]})")
    model = dict(config["model"])
    argv = ["--model", model.pop("kind"), "--data", ",".join(config["data"])]
    for key in TRAIN_OPTIONS:
        if key in config and config[key] != defaults[key]:
            argv += [f"--{key.replace('_', '-')}", str(config[key])]
    argv += ["--seed", str(config["seed"])]
    if model:
        argv += ["--arch", json.dumps(model)]
    return argv


@dataclass(frozen=True)
class Invocation:
    """One ``vgnn train`` call: its arguments and the epoch of the schedule it ends after."""

    argv: list[str]
    out: Path
    until: int

    def check_folder(self) -> None:
        """Refuse a folder that holds another run (other settings or another starting point):
        skipping or resuming it would put a stranger in the chain."""
        path = self.out / "train_config.json"
        if not path.is_file():
            return
        def key(config: dict) -> dict:  # a run's settings; its schedule's length may change on resume
            return {k: v for k, v in config.items() if k not in ("epochs", "device", "resumed")}
        held, wanted = json.loads(path.read_text()), train_config_of(self.argv)
        if key(held) != key(wanted):
            raise ValueError(f"{self.out} holds another run (seed {held.get('seed')}, started from "
                             f"{held.get('init_from')}); remove it or train into another --out")

    def finished(self) -> bool:
        log = self.out / "log.jsonl"
        lines = log.read_text().splitlines() if log.is_file() else []
        return bool(lines) and json.loads(lines[-1])["epoch"] >= self.until


def member_invocations(runs: list[Run], member: int, out: Path, first_run: int = 1) -> list[Invocation]:
    """The ``vgnn train`` calls of a member's runs from ``first_run`` (1-based) on."""
    if not 1 <= first_run <= len(runs):
        raise ValueError(f"member {member} has runs 1 to {len(runs)}, not {first_run}")
    calls = []
    for n, run in enumerate(runs, start=1):
        folder = out / (f"kmvn_{member}" if n == len(runs) else f"kmvn_{member}.{n:02d}")
        if n < first_run:
            continue
        if n == first_run:  # the committed checkpoint it started from, wherever this runs
            init = None if run.init is None else str(ROOT / run.init)
            if n > 1 and init is None:
                raise ValueError(f"member {member}'s run {n} records no committed starting point")
        else:
            init = str(out / f"kmvn_{member}.{n - 1:02d}" / "best.pt")
        for k, (config, until) in enumerate(run.schedules()):
            argv = ["vgnn", "train", *options(config), "--epochs", str(config["epochs"])]
            if until < config["epochs"]:
                argv += ["--stop-after", str(until)]
            if config.get("init_from") is not None:
                argv += ["--init", init]
            if k:
                argv.append("--resume")
            calls.append(Invocation(argv + ["--out", str(folder)], folder, until))
    return calls


@functools.cache
def _cli():
    from flows.cli import build_parser

    return build_parser()


def train_config_of(argv: list[str]) -> dict:
    """The train_config.json a ``vgnn train`` line records (``init_from`` as given)."""
    from flows.cli.models import train_config

    args = _cli().parse_args(argv[1:])
    return {**asdict(train_config(args)), **({"init_from": args.init} if args.init else {})}


def _vgnn() -> str:
    beside = Path(sys.executable).with_name("vgnn")
    return str(beside) if beside.is_file() else (shutil.which("vgnn") or "vgnn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for the runs (default runs)")
    parser.add_argument("--member", type=int, action="append", help="only this member (0, 1, 2; repeatable)")
    parser.add_argument("--first-run", type=int, default=1,
                        help="start at this run (1-based), from the committed best epoch of the run before")
    parser.add_argument("--print", action="store_true", help="print the vgnn train lines, run nothing")
    parser.add_argument("--history", action="store_true", help="print each member's runs as a table, run nothing")
    parser.add_argument("--device", help="passed to vgnn train (e.g. cuda)")
    parser.add_argument("--card", type=Path, default=CARD, help="the model card whose members to train")
    args = parser.parse_args(argv)
    card = json.loads(args.card.read_text())
    members = args.member or list(range(len(card["training"]["ensemble_of"])))
    try:
        runs = {m: member_runs(card, m) for m in members}
        plans = {m: member_invocations(runs[m], m, args.out, args.first_run) for m in members}
    except (ValueError, IndexError) as exc:
        parser.error(str(exc))
    for member in members:
        epochs = sum(run.epochs_run for run in runs[member])
        if args.history:
            print(f"member {member}, {epochs} epochs:\n\n{history(runs[member])}\n")
            continue
        print(f"# member {member}: {len(runs[member])} runs, {epochs} epochs")
        for call in plans[member]:
            argv = call.argv + (["--device", args.device] if args.device else [])
            if args.print:
                print(shlex.join(argv))
                continue
            call.check_folder()
            if call.finished():
                print(f"done: {shlex.join(argv)}")
                continue
            if (call.out / "last.pt").is_file() and "--resume" not in argv:
                argv.append("--resume")  # a killed run goes on where it stopped
            print(shlex.join(argv), flush=True)
            subprocess.run([_vgnn(), *argv[1:]], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
