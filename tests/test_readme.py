"""Every command and snippet of README.md runs, or at least parses, so none can go stale.

* Fenced ``bash`` blocks: each ``vgnn …`` line is parsed by the real argparse parser (a renamed
  or removed flag fails) and, unless :data:`PARSE_ONLY` names it with a reason (network,
  secrets, hours of CPU), executed in-process against a demo database built once for this
  module (``--release db/`` or ``demo-db`` point at it), in a folder holding the README's
  ``Si.cif``, ``ZnO.cif`` and ``ZnO.vasp``. ``make`` targets must exist in the Makefile and
  ``pip install`` extras in pyproject.toml.
* Fenced ``sql`` blocks run through ``vgnn query`` against the same database.
* Fenced ``python`` blocks are executed (``"demo-db"`` rewritten to the test database) unless
  :data:`COMPILE_ONLY` names them; those are compiled.
* Inline ``vgnn …`` spans name real sub-commands (and parse, when they carry options); inline
  ``make``, ``pip install`` and ``python benchmarks/….py`` spans name real targets, extras and
  scripts. So do those of ``benchmarks/README.md`` (the measurements the README quotes), which
  has no fenced blocks.
* Relative links of both files name files that exist, and headings that exist where they
  point into a Markdown file (GitHub's anchors).
"""

from __future__ import annotations

import functools
import glob
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"

#: ``vgnn`` lines that are parsed but not run: (regex searched in the line, why not run).
PARSE_ONLY: tuple[tuple[str, str], ...] = (
    (r"^vgnn prepare-phonondb", "phonopy on 9,534 force sets: hours of CPU and the shared data"),
    (r"^vgnn train ", "training: hours of CPU"),
    (r"^vgnn (ensemble|ship) ", "needs the trained runs/ of the lines above"),
    (r"^vgnn evaluate ", "a held-out set through the models: minutes of CPU and the shared data"),
    (r"^vgnn download-data", "downloads from figshare / GitHub"),
    (r"^vgnn publish ", "uploads to OSF (network, OSF_TOKEN)"),
    (r"^vgnn download --osf-project", "downloads from OSF (network)"),
    (r"^vgnn build ", "a whole build (Prefect + Dask for minutes, MP_API_KEY, the network or a GPU); "
                      "the test database is the demo build run in-process"),
    (r"^vgnn predict .*\bmp-\d+", "fetches from the Materials Project (network, MP_API_KEY)"),
    (r"--release https?://", "a placeholder URL"),
)

#: Python blocks compiled but not run: (first line of the block, why not run). None today.
COMPILE_ONLY: dict[str, str] = {}

#: README cases known to fail: id → the README fix they wait for (strict xfail: fixing the
#: README without removing the entry fails too).
KNOWN_README_FAILURES: dict[str, str] = {
}


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, text and the README line of its opening fence."""

    lang: str
    text: str
    line: int


@dataclass(frozen=True)
class Command:
    """One shell command of a block, split as the shell would (comments dropped)."""

    argv: tuple[str, ...]
    line: int

    @property
    def text(self) -> str:
        return shlex.join(self.argv)

    @property
    def id(self) -> str:
        return f"L{self.line}:{' '.join(self.argv[:2])}"


def fenced_blocks(markdown: str) -> list[Block]:
    """Every ```` ```lang ```` block of ``markdown``, in order."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(markdown.splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, start, body = line[3:].strip(), n, []
        elif lang is not None and line.startswith("```"):
            blocks.append(Block(lang, "\n".join(body), start))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md:{start}: fenced block never closed"
    return blocks


def shell_commands(block: Block) -> list[Command]:
    """The commands of a shell block: quoted strings and ``\\`` continuations span lines,
    ``&&`` and ``;`` separate commands, and a ``for V in A B; do … done`` loop runs its body
    once with ``V=A`` (``$V`` and ``$((…))`` expanded)."""
    commands, pending, first, variables = [], "", 0, {}
    for n, raw in enumerate(block.text.splitlines(), block.line + 1):
        if not pending:
            first = n
        pending += raw.rstrip("\\") + ("\n" if not raw.endswith("\\") else " ")
        try:
            tokens = shlex.split(_expand(pending, variables), comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if raw.endswith("\\"):
            continue
        pending = ""
        if loop := re.fullmatch(r"for (\w+) in (\S+).*?; do", " ".join(tokens)):
            variables[loop[1]] = loop[2]
            continue
        if tokens in (["done"], []):
            continue
        command: list[str] = []
        for token in tokens + ["&&"]:
            if token in ("&&", ";"):
                if command:
                    commands.append(Command(tuple(command), first))
                command = []
            else:
                command.append(token)
    assert not pending.strip(), f"README.md:{first}: unterminated command {pending!r}"
    return commands


def _expand(token: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        token = token.replace(f"${name}", value)
    numbers = {name: int(value) for name, value in variables.items() if value.isdigit()}
    return re.sub(r"\$\(\((.+?)\)\)", lambda m: str(eval(m[1], {"__builtins__": {}}, numbers)), token)  # noqa: S307


BLOCKS = fenced_blocks(README.read_text())
COMMANDS = [c for b in BLOCKS if b.lang == "bash" for c in shell_commands(b)]
VGNN = [c for c in COMMANDS if c.argv[0] == "vgnn"]
SQL = [b for b in BLOCKS if b.lang == "sql"]
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def parse_only_reason(command: Command) -> str | None:
    return next((why for pattern, why in PARSE_ONLY if re.search(pattern, " ".join(command.argv))), None)


def _case(id_: str, *values):
    """A parametrize case, strict-xfail when :data:`KNOWN_README_FAILURES` names it."""
    marks = [pytest.mark.xfail(reason=KNOWN_README_FAILURES[id_], strict=True)] if id_ in KNOWN_README_FAILURES else []
    return pytest.param(*values, id=id_, marks=marks)


def test_readme_has_commands_and_every_parse_only_entry_is_used():
    assert len(VGNN) >= 20 and SQL and PYTHON
    for pattern, why in PARSE_ONLY:
        assert any(re.search(pattern, " ".join(c.argv)) for c in VGNN), f"PARSE_ONLY entry {pattern!r} ({why}) matches nothing"
    for first_line in COMPILE_ONLY:
        assert any(b.text.splitlines()[0] == first_line for b in PYTHON), f"COMPILE_ONLY {first_line!r} is stale"
    ids = {c.id for c in VGNN} | {f"L{b.line}" for b in SQL + PYTHON} | {c.id for c in COMMANDS}
    for known in KNOWN_README_FAILURES:
        assert known in ids or known.startswith("inline"), f"KNOWN_README_FAILURES {known!r} names no case"


# --------------------------------------------------------------------------- parsing


@functools.cache
def parser():
    from flows.cli import build_parser

    return build_parser()


def parse(argv: list[str]):
    """``argv`` (without ``vgnn``) through the real parser; a parser error fails the test."""
    try:
        return parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"the parser refuses `vgnn {shlex.join(argv)}` (exit {exc.code})")


@pytest.mark.parametrize("command", [_case(c.id, c) for c in VGNN])
def test_vgnn_command_parses(command):
    args = parse(list(command.argv[1:]))
    assert args.command == command.argv[1]


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))


def _extras() -> tuple[str, set[str]]:
    """The project's name and pip extras, from pyproject.toml (the installed metadata on
    Python 3.10, which has no tomllib; ``make`` reinstalls whenever pyproject.toml changes)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        from importlib.metadata import metadata

        meta = metadata("vgnn-phonondb")
        return meta["Name"], set(meta.get_all("Provides-Extra") or [])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["name"], set(project.get("optional-dependencies", {}))


def check_shell_line(argv: tuple[str, ...]) -> None:
    """A non-``vgnn`` line names a real make target, pip extra or script."""
    if argv[0] == "make":
        for target in argv[1:]:
            assert target in _makefile_targets(), f"`make {target}`: no such Makefile target"
    elif argv[:2] == ("pip", "install"):
        name, extras = _extras()
        for spec in (a for a in argv[2:] if not a.startswith("-")):
            m = re.fullmatch(r"(?P<pkg>[^\[]+)(?:\[(?P<extras>[^\]]*)\])?", spec)
            assert m, f"`pip install {spec}`: cannot read"
            if m["pkg"] not in (".", "./"):
                assert m["pkg"].replace("_", "-") == name, f"`pip install {spec}`: the package is {name}"
            for extra in filter(None, (m["extras"] or "").split(",")):
                assert extra.strip() in extras, f"`pip install {spec}`: no extra [{extra}] in pyproject.toml"
    elif argv[0] in ("python", "python3"):
        script = next((a for a in argv[1:] if a.endswith(".py")), None)
        if script:
            assert (ROOT / script).is_file() or (ROOT / "benchmarks" / script).is_file(), f"{script}: no such script"
    else:
        pytest.fail(f"`{shlex.join(argv)}`: a README shell line this test does not know how to check")


@pytest.mark.parametrize("command", [_case(c.id, c) for c in COMMANDS if c.argv[0] != "vgnn"])
def test_shell_line_names_real_targets(command):
    check_shell_line(command.argv)


def _inline_spans(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    # code spans outside fenced blocks
    outside = re.sub(r"^```.*?^```", lambda m: "\n" * m[0].count("\n"), text, flags=re.S | re.M)
    return [(outside[: m.start()].count("\n") + 1, " ".join(m[1].split()))
            for m in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)?)`", outside)]


#: the inline command spans of README.md ("L12") and of benchmarks/README.md, which holds the
#: measurements the README quotes ("benchmarks-L12")
INLINE = [(f"{prefix}L{n}", s) for prefix, path in (("", README), ("benchmarks-", BENCHMARKS_README))
          for n, s in _inline_spans(path)
          if re.match(r"(cd \S+ && )?(/usr/bin/time )?(vgnn|make|pip install|python) ", s) or s.startswith(("vgnn ", "make "))]


def test_benchmarks_readme_has_no_fenced_blocks():
    """Only README.md's fenced blocks are run here: benchmarks/README.md quotes commands inline."""
    assert fenced_blocks(BENCHMARKS_README.read_text()) == []


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", [README, BENCHMARKS_README], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = path.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    local = [link for link in links if not re.match(r"[a-z]+://|mailto:", link)]
    assert local, f"{path.name}: no relative links found (the pattern is stale)"
    for link in local:
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: link {link!r} names no file"
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", file.read_text(), flags=re.S | re.M), flags=re.M)
            assert anchor in {github_anchor(h) for h in headings}, f"{path.name}: link {link!r} names no heading"


@pytest.mark.parametrize("span", [_case(f"inline-{where}", s) for where, s in INLINE])
def test_inline_command_is_real(span):
    if folder := re.match(r"cd (\S+) && ", span):  # `cd benchmarks && python bench_scaling.py`: a real folder first
        assert (ROOT / folder[1]).is_dir(), f"`{span}`: no folder {folder[1]}"
        span = span[folder.end():]
    argv = shlex.split(span.removeprefix("/usr/bin/time "))
    argv = [a for a in argv if not re.fullmatch(r"\[.*\]|\[--\S+|N\]", a)]  # `[--limit N]` placeholders
    if argv[0] != "vgnn":
        check_shell_line(tuple(argv))
        return
    commands = set(parser()._subparsers._group_actions[0].choices)
    assert argv[1] in commands, f"`{span}`: no sub-command {argv[1]!r} (have {sorted(commands)})"
    if any(a.startswith("-") for a in argv[2:]):
        parse(argv[1:])


def test_help_of_every_command(capsys):
    """``vgnn --help`` and every sub-command's ``--help`` print and exit 0."""
    from flows.cli import main

    commands = sorted(parser()._subparsers._group_actions[0].choices)
    for argv in [["--help"]] + [[c, "--help"] for c in commands]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0, argv
        assert "usage: vgnn" in capsys.readouterr().out
    assert {"predict", "build", "query", "download", "publish", "train"} <= set(commands)


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """The demo database (35 crystals, shipped MVN + k-MVN), built once, in-process."""
    from flows.cli import main

    db = tmp_path_factory.mktemp("readme") / "demo-db"
    assert main(["build", "--source", "demo", "--models", "mvn,kmvn", "--out", str(db), "--cluster", "none"]) == 0
    return db


@pytest.fixture(scope="module")
def workdir(demo_db, tmp_path_factory):
    """A folder with the README's input files, cut from the demo database's crystals."""
    from storage import bridges

    folder = tmp_path_factory.mktemp("readme-work")
    bridges.structure(demo_db, "demo-Si-diamond").to(filename=str(folder / "Si.cif"))
    zno = bridges.structure(demo_db, "demo-ZnO-wurtzite")
    zno.to(filename=str(folder / "ZnO.cif"))
    zno.to(filename=str(folder / "ZnO.vasp"), fmt="poscar")
    return folder


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    """Run in ``workdir``, with each shipped model loaded once for the whole module."""
    import vgnn_core

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(vgnn_core, "load_pretrained", _cached_pretrained)
    return workdir


@functools.cache
def _cached_pretrained(name: str, *args, **kwargs):
    from vgnn_core.predict import load_pretrained

    return load_pretrained(name, *args, **kwargs)


def _rewrite(argv: list[str], db: Path) -> list[str]:
    """``--release db/`` or ``demo-db`` → the test database; shell globs expanded."""
    out = []
    for k, a in enumerate(argv):
        if k and argv[k - 1] == "--release" and a.rstrip("/") in ("db", "demo-db"):
            a = str(db)
        out += sorted(glob.glob(a)) or [a] if any(ch in a for ch in "*?") else [a]
    return out


@pytest.mark.parametrize("command", [_case(c.id, c) for c in VGNN if parse_only_reason(c) is None])
def test_vgnn_command_runs(command, demo_db, in_workdir, capsys):
    """The README's runnable lines run: exit 0, no error line, every file they name is written."""
    from flows.cli import main

    argv = _rewrite(list(command.argv[1:]), demo_db)
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "error:" not in captured.err
    args = parse(argv)
    for name in ("out", "plot", "export"):
        target = getattr(args, name, None)
        if target:
            assert (in_workdir / target).exists(), f"{command.text}: {name} {target} not written"
    if not getattr(args, "out", None):
        assert captured.out.strip()


@pytest.mark.parametrize("block", [_case(f"L{b.line}", b) for b in SQL])
def test_sql_example_runs(block, demo_db, capsys):
    from flows.cli import main

    assert main(["query", block.text, "--release", str(demo_db)]) == 0, capsys.readouterr().err
    assert "┌" in capsys.readouterr().out


@pytest.mark.parametrize("block", [_case(f"L{b.line}", b) for b in PYTHON])
def test_python_snippet_runs(block, demo_db, in_workdir):
    code = block.text
    if (why := COMPILE_ONLY.get(code.splitlines()[0])) is not None:
        compile(code, f"README.md:{block.line}", "exec")
        pytest.skip(f"compiled only: {why}")
    code = code.replace('"demo-db"', repr(str(demo_db)))
    import matplotlib

    matplotlib.use("Agg")
    exec(compile(code, f"README.md:{block.line}", "exec"), {"__name__": "readme"})  # noqa: S102
