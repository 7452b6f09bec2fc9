"""``benchmarks/train_members.py`` rebuilds the shipped members' training from the k-MVN card's own
record: its ``vgnn train`` lines must give exactly the recorded settings of every run, start from
checkpoints the repository holds, and add up to the epochs the README states."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tm = _load("train_members")
CARD = json.loads(tm.CARD.read_text())
MEMBERS = range(len(CARD["training"]["ensemble_of"]))


def _parse(argv: list[str]):
    from flows.cli import build_parser

    assert argv[:2] == ["vgnn", "train"]
    return build_parser().parse_args(argv[1:])


def _settings(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("device", "init_from", "resumed")}


@pytest.mark.parametrize("member", MEMBERS)
def test_every_line_gives_the_recorded_settings(member, tmp_path):
    from flows.cli.models import train_config

    runs = tm.member_runs(CARD, member)
    calls = tm.member_invocations(runs, member, tmp_path)
    recorded = [(config, until) for run in runs for config, until in run.schedules()]
    assert len(calls) == len(recorded) >= len(runs) > 10
    for call, (config, until) in zip(calls, recorded):
        args = _parse(call.argv)
        assert _settings(asdict(train_config(args))) == _settings(config), call.argv
        assert (args.stop_after or config["epochs"]) == until
        assert (args.init is None) == (config.get("init_from") is None)
    # each run starts from the one before; only the first from a committed checkpoint (or none)
    starts = [_parse(c.argv).init for c in calls if "--resume" not in c.argv]
    assert starts[1:] == [str(tmp_path / f"kmvn_{member}.{n:02d}" / "best.pt") for n in range(1, len(runs))]
    assert calls[-1].out == tmp_path / f"kmvn_{member}"


@pytest.mark.parametrize("member", MEMBERS)
def test_every_run_can_start_from_a_committed_checkpoint(member, tmp_path):
    runs = tm.member_runs(CARD, member)
    for n, run in enumerate(runs, start=1):
        if run.init is not None:
            assert (ROOT / run.init).is_file(), run.init
        if n > 1:
            first = tm.member_invocations(runs, member, tmp_path, first_run=n)[0]
            assert (ROOT / _parse(first.argv).init).is_file()
            # the committed folder of the run before holds that run's own settings
            before = ROOT / Path(run.init).parent / "train_config.json"
            if before.is_file():
                assert _settings(json.loads(before.read_text())) == _settings(runs[n - 2].config)


def test_members_epochs_are_the_readmes():
    rn = _load("readme_numbers")
    a, b, c = tm.member_epochs(CARD)
    assert rn.members_epochs(rn.README.read_text()) == f"{a}, {b} and {c}"


def _config(seed: int, epochs: int, **extra) -> dict:
    return {"epochs": epochs, "lr": 0.002, "loss": "mae", "select_on": "mae", "data": ["petretto2018", "phonondb"],
            "seed": seed, "device": "cpu", "model": {"kind": "kmvn", "r_bond": 6.0}, **extra}


def _two_run_card(tmp_path: Path) -> Path:
    """Run 1 under two schedules (to epoch 2 of 4, then 6), run 2 from run 1's best."""
    first = _config(1, 6, resumed=[{"until_epoch": 2, "config": _config(1, 4)}])
    second = _config(2, 10, init_from="/elsewhere/kmvn_0.01/best.pt")
    card = {"training": {"ensemble_of": [{"train_config": second, "epochs_run": 10,
                                          "initialised_from": {"train_config": first, "epochs_run": 6}}]}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    return tmp_path / "card.json"


def _trained(folder: Path, epochs: int, argv: list[str] | None = None, killed: bool = False) -> None:
    """A run folder as ``vgnn train`` leaves it after ``epochs`` epochs (of the line ``argv``)."""
    folder.mkdir(parents=True)
    (folder / "log.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, epochs + 1)))
    if argv is not None:
        (folder / "train_config.json").write_text(json.dumps(tm.train_config_of(argv)))
    if killed:
        (folder / "last.pt").write_bytes(b"")


def _run_main(argv: list[str], monkeypatch) -> list[object]:
    called = []
    monkeypatch.setattr(tm.subprocess, "run", lambda line, check: called.append(_parse(["vgnn", *line[1:]])))
    assert tm.main(argv) == 0
    return called


def _lines(card: Path, out: Path) -> list[list[str]]:
    runs = tm.member_runs(json.loads(card.read_text()), 0)
    return [c.argv for c in tm.member_invocations(runs, 0, out)]


def test_a_fresh_chain_runs_every_schedule_in_order(tmp_path, monkeypatch):
    card, out = _two_run_card(tmp_path), tmp_path / "runs"
    called = _run_main(["--card", str(card), "--out", str(out), "--device", "cuda"], monkeypatch)
    assert [(a.epochs, a.stop_after, a.resume, a.init, a.out, a.device) for a in called] == [
        (4, 2, False, None, str(out / "kmvn_0.01"), "cuda"),
        (6, None, True, None, str(out / "kmvn_0.01"), "cuda"),
        (10, None, False, str(out / "kmvn_0.01" / "best.pt"), str(out / "kmvn_0"), "cuda"),  # --init, no --resume
    ]


def test_finished_runs_are_skipped_and_a_killed_one_resumes(tmp_path, monkeypatch):
    card, out = _two_run_card(tmp_path), tmp_path / "runs"
    lines = _lines(card, out)
    _trained(out / "kmvn_0.01", 6, lines[1])
    _trained(out / "kmvn_0", 3, lines[2], killed=True)
    called = _run_main(["--card", str(card), "--out", str(out)], monkeypatch)
    assert [(a.out, a.seed, a.epochs, a.resume, a.init) for a in called] == [
        (str(out / "kmvn_0"), 2, 10, True, str(out / "kmvn_0.01" / "best.pt"))]


def test_a_run_killed_in_its_first_schedule_goes_on_through_both(tmp_path, monkeypatch):
    card, out = _two_run_card(tmp_path), tmp_path / "runs"
    _trained(out / "kmvn_0.01", 1, _lines(card, out)[0], killed=True)
    called = _run_main(["--card", str(card), "--out", str(out)], monkeypatch)
    assert [(a.epochs, a.stop_after, a.resume) for a in called] == [(4, 2, True), (6, None, True), (10, None, False)]


def test_a_folder_holding_another_run_is_refused(tmp_path, monkeypatch):
    card, out = _two_run_card(tmp_path), tmp_path / "runs"
    lines = _lines(card, out)
    _trained(out / "kmvn_0.01", 6, lines[1])
    stranger = [a if a != "2" else "7" for a in lines[2]]  # another seed
    _trained(out / "kmvn_0", 10, stranger)
    monkeypatch.setattr(tm.subprocess, "run", lambda line, check: None)
    with pytest.raises(ValueError, match="holds another run"):
        tm.main(["--card", str(card), "--out", str(out)])


def test_first_run_is_checked_and_starts_from_the_committed_checkpoint(tmp_path, capsys):
    runs = tm.member_runs(CARD, 2)
    with pytest.raises(SystemExit):
        tm.main(["--print", "--member", "2", "--first-run", str(len(runs) + 1)])
    with pytest.raises(SystemExit):
        tm.main(["--print", "--first-run", "0"])
    assert "has runs 1 to" in capsys.readouterr().err
    first = tm.member_invocations(runs, 2, tmp_path, first_run=len(runs))[0]
    init = Path(_parse(first.argv).init)
    assert init.is_absolute() and init.is_file()  # runs from any folder


def test_a_start_nobody_committed_is_refused():
    with pytest.raises(ValueError, match="not committed"):
        tm.committed("/tmp/somewhere/best.pt")


@pytest.mark.parametrize("member", MEMBERS)
def test_every_run_is_committed_with_its_log(member):
    runs = tm.member_runs(CARD, member)
    table = tm.history(runs).splitlines()[2:]
    assert len(table) == len(runs) and not any("| – |" in row for row in table)
    logs = [tm.committed_log(run) for run in runs]
    assert all(log.is_file() for log in logs)
    # the epochs column adds up to what the card says the member trained
    assert table[-1].split("|")[4].strip().endswith(f"({tm.member_epochs(CARD)[member]})")
