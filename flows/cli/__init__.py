"""The ``vgnn`` command line: one module per command group."""

from __future__ import annotations

import argparse
import sys

from . import database, models, phonons


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgnn", description="VGNN phonon predictions and database")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (phonons, models, database):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from storage.catalog import QueryError
    from storage.osf import OSFError
    from storage.release import ReleaseIntegrityError
    from vgnn_core import InvalidStructureError

    try:
        return int(args.func(args) or 0)
    except (InvalidStructureError, QueryError, ReleaseIntegrityError, FileNotFoundError, OSFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
