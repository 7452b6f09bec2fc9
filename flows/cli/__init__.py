"""The ``vgnn`` command line: one module per command group."""

from __future__ import annotations

import argparse
import errno
import sys

from ..exit import fast_exit
from . import database, models, phonons


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgnn", description="VGNN phonon predictions and database")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (phonons, models, database):
        group.add_commands(sub)
    return parser


#: The project's own errors that mean the input, the environment or a server is wrong, not the
#: code: each is printed as one ``error: …`` line with this exit code. Anything else is a bug and
#: keeps its traceback, which is what a bug report needs (a build can take hours to rerun, so
#: the traceback is not hidden behind a ``--verbose`` rerun). Named by module and looked up in
#: ``sys.modules`` only: an error whose module was never imported cannot have been raised, so
#: catching them imports nothing (``vgnn query`` stays free of torch, Prefect and pymatgen).
USER_ERRORS: tuple[tuple[str, str, int], ...] = (
    ("builtins", "FileNotFoundError", 2),  # also flows.sources.EmptySourceError
    ("vgnn_core.crystal.structures", "InvalidStructureError", 2),
    ("vgnn_core.pretrained.registry", "PretrainedNotAvailableError", 2),
    ("vgnn_core.pretrained.registry", "ChecksumError", 2),
    ("vgnn_core.io.http", "DownloadError", 2),
    ("storage.catalog", "QueryError", 2),
    ("storage.release", "ReleaseIntegrityError", 2),
    ("storage.download", "ReleaseDownloadError", 2),
    ("storage.osf", "OSFError", 2),
    ("storage.bridges", "MaterialNotFoundError", 2),
    ("flows.sources.item", "SourceSpecError", 2),
    ("flows.sources.materials_project", "MPError", 2),
    ("flows.sources.iza", "IZAError", 2),
    ("flows.plan", "BuildError", 1),  # a build with nothing to release, or a release it may not touch
)


#: errno values of an ``OSError`` that the machine, not the code, caused: a full or read-only
#: disk, a quota, a permission; one line, exit 2
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})


def user_error_code(exc: BaseException) -> int | None:
    """The exit code of ``exc`` when it is one of :data:`USER_ERRORS` or an environment
    ``OSError`` (:data:`ENVIRONMENT_ERRNOS`), else ``None`` (a bug)."""
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        return 2
    for module, name, code in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return code
    return None


def usage_error(args: argparse.Namespace) -> str | None:
    """What the parser cannot say about a combination of options (``None`` when fine)."""
    if getattr(args, "format", None) == "parquet" and not getattr(args, "out", None):
        return f"vgnn {args.command}: --format parquet needs --out FILE (Parquet is not printed)"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``vgnn`` with ``argv``; returns the exit status (0 ok, 1 or 2 an error, printed as one line)."""
    args = build_parser().parse_args(argv)
    if problem := usage_error(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        code = user_error_code(exc)
        if code is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return code


def console(argv: list[str] | None = None) -> int:
    """The ``vgnn`` program (its console script and ``python -m flows.cli``): :func:`main` in a
    process of its own, which exits without a last pass over every object (:func:`fast_exit`).
    Code that calls :func:`main` in its own process keeps its exit as it was."""
    fast_exit()
    return main(argv)


if __name__ == "__main__":
    sys.exit(console())
