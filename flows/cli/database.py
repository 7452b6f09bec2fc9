"""``vgnn build``, ``query``, ``schema``, ``publish`` and ``download``: the database."""

from __future__ import annotations

import argparse
import sys


def _cmd_query(args: argparse.Namespace) -> int:
    import sys

    from storage.catalog import QueryError
    from storage.query import run_query

    from .release_url import on_database_root

    def query(release: str) -> str:
        return run_query(args.sql, release, fmt=args.format, out=args.out, max_rows=args.max_rows,
                         verify=not args.no_verify)

    print(on_database_root(query, args.release or ".", (QueryError,), log=lambda line: print(line, file=sys.stderr)))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    import sys

    from storage.osf import OSFClient, OSFError, publish

    try:
        result = publish(args.release, args.osf_project, OSFClient(log=print))
    except (OSFError, OSError) as exc:  # one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"release {result['release']}: {result['uploaded']} uploaded, {result['skipped']} already there")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    import sys

    from storage.download import ReleaseDownloadError, download_release_url
    from storage.osf import OSFClient, OSFError, download_release

    try:
        if args.url:
            if args.release:
                raise ReleaseDownloadError("--release names a release of --osf-project; a URL names its release itself")
            from .release_url import on_database_root

            out = on_database_root(lambda url: download_release_url(url, args.out, log=print), args.url,
                                   (ReleaseDownloadError,), log=print)
        else:
            out = download_release(args.osf_project, args.out, release=args.release, client=OSFClient(log=print))
    except (ReleaseDownloadError, OSFError, OSError) as exc:  # one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"verified release in {out}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    import os

    from flows.sources import check_source

    check_source(args.source)  # a typo or a missing key fails here, in one line, before any work
    if args.verbose:
        os.environ["VGNN_VERBOSE"] = "1"
    models = args.models.split(",")
    from flows.plan import BuildSettings

    nac = BuildSettings.nac if args.nac is None else args.nac
    if args.cluster == "none":
        from flows.local import build

        summary = build(args.source, models, args.out, release=args.release,
                        settings=BuildSettings(atoms_per_shard=args.atoms_per_shard, nac=nac))
    else:
        # An ephemeral Prefect server on a busy 2-core machine can take longer than the default.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home
        from flows.build_flow import run_build

        summary = run_build(args.source, models, args.out, release=args.release, cluster=args.cluster,
                            n_workers=args.workers, atoms_per_shard=args.atoms_per_shard, nac=nac)
    print(f"release {summary['release']}: {summary['written']} materials written, {summary['failed']} failed, "
          f"{summary['shards']} shards ({summary['skipped_shards']} already complete)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from storage.schema import describe

    try:
        print(describe(args.tables or None))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to ``vgnn``."""
    bu = sub.add_parser("build", help="build (or resume) a database release from a structure source")
    bu.add_argument("--source", default="demo",
                    help="demo | zeolites[:PATH] | iza:FAU+LTA | dir:PATH | togo | petretto | mp[:nsites<=40,stable,...]")
    bu.add_argument("--models", default="mvn,kmvn", help="comma-separated shipped names or checkpoint files")
    bu.add_argument("--out", required=True, help="database root")
    bu.add_argument("--release", help="release name (default SOURCE[-SPECHASH]-YYYYMMDD; rerun to resume, "
                                      "or to update it after inputs changed)")
    bu.add_argument("--cluster", default="local",
                    help="local (Dask LocalCluster) | ADDRESS | cuda | slurm | none (in-process, no Prefect)")
    bu.add_argument("--workers", type=int, default=2, help="Dask workers for local / slurm")
    bu.add_argument("--nac", action=argparse.BooleanOptionalAction,
                    help="k-MVN rows with the LO-TO splitting at Γ from predicted Born charges and ε∞ "
                         "(default on, at no measurable cost; --no-nac leaves it out)")
    bu.add_argument("--verbose", action="store_true", help="show Prefect's and Dask's INFO logs")
    bu.add_argument("--atoms-per-shard", type=int, default=2000, help="shard size (atoms); cells > 500 atoms go alone")
    bu.set_defaults(func=_cmd_build)
    qu = sub.add_parser("query", help="read-only SQL over a database release (DuckDB)")
    qu.add_argument("sql")
    qu.add_argument("--release", help="database root, release folder or release URL (default: .)")
    qu.add_argument("--format", default="table", choices=["table", "csv", "json", "parquet"])
    qu.add_argument("--out", help="write the result to this file")
    qu.add_argument("--max-rows", type=int, default=100, help="rows shown in table format")
    qu.add_argument("--no-verify", action="store_true",
                    help="skip checking each file's sha256 and size against the release manifest "
                         "(checks are otherwise remembered per file, so repeated queries stay fast)")
    qu.set_defaults(func=_cmd_query)
    sc = sub.add_parser("schema", help="the database's tables and columns, with their units and meaning")
    sc.add_argument("tables", nargs="*", metavar="TABLE", help="only these tables (default: all)")
    sc.set_defaults(func=_cmd_schema)
    pb = sub.add_parser("publish", help="upload a release to an OSF project (token from OSF_TOKEN)")
    pb.add_argument("--osf-project", required=True, help="OSF project (node) id")
    pb.add_argument("--release", default=".", help="database root or release folder (default: .)")
    pb.set_defaults(func=_cmd_publish)
    dw = sub.add_parser("download", help="fetch and verify a published release (a release URL, or from OSF)")
    dw_from = dw.add_mutually_exclusive_group(required=True)
    dw_from.add_argument("url", nargs="?", help="http(s) URL of a release folder (the one holding manifest.json)")
    dw_from.add_argument("--osf-project", help="OSF project (node) id")
    dw.add_argument("--release", help="release name (default: the newest)")
    dw.add_argument("--out", required=True)
    dw.set_defaults(func=_cmd_download)
