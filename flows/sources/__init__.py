"""Structure sources for the build; each yields :class:`SourceItem` (an id and a structure or a file).

* ``demo`` — built in code from crystal prototypes and experimental lattice constants (no data
  files needed);
* ``dir:PATH`` — a folder of CIF / POSCAR / extxyz files;
* ``zeolites`` / ``zeolites:PATH`` — IZA framework CIFs, reduced to primitive cells;
  ``iza:FAU+LTA`` downloads those frameworks from the IZA Structure Commission site;
* ``mp`` / ``mp:FILTERS`` — the Materials Project through mp-api
  (:mod:`flows.sources.materials_project`);
* ``togo`` and ``petretto`` — the structures of those datasets in ``$VGNN_DATA_DIR``.

:func:`resolve_source` returns the items and a version string recorded in the ``runs`` table.
"""

from __future__ import annotations

from .demo import demo_source, demo_structures
from .files import directory_source, primitive_cell, zeolite_source
from .item import EmptySourceError, SourceItem, SourceSpecError
from .petretto import petretto_source
from .phonondb import togo_source

__all__ = ["EmptySourceError", "SourceItem", "SourceSpecError", "check_source", "demo_source", "demo_structures", "directory_source", "petretto_source", "primitive_cell",
           "resolve_source", "source_partition", "togo_source", "zeolite_source"]


def resolve_source(spec: str) -> tuple[list[SourceItem], str]:
    """A source spec → ``(items, version)``."""
    if spec == "demo":
        return demo_source(), "demo"
    if spec == "zeolites" or spec.startswith("zeolites:"):
        folder = spec.partition(":")[2] or None
        return list(zeolite_source(folder)), f"zeolites:{folder or 'VGNN_DATA_DIR'}"
    if spec.startswith("iza:"):
        from .iza import download_frameworks

        codes = [c for c in spec[4:].replace(",", "+").split("+") if c]
        folder = download_frameworks(codes)
        return list(zeolite_source(folder)), f"iza:{'+'.join(codes)}"
    if spec.startswith("dir:"):
        return list(directory_source(spec[4:])), spec
    if spec == "togo":
        return list(togo_source()), "togo_phonondb-20180417"
    if spec == "petretto":
        return list(petretto_source()), "petretto2018"
    if spec == "mp" or spec.startswith("mp:"):
        from vgnn_core.settings import cache_dir

        from .materials_project import MPQuery, ingest

        version, items = ingest(MPQuery.from_spec(spec.partition(":")[2]), cache_dir() / "materials_project", progress=print)
        return items, f"materials_project-{version}"
    raise SourceSpecError(f"unknown source {spec!r}: use {SOURCE_SPECS}")


#: Every form of a ``--source`` spec, for messages.
SOURCE_SPECS = "demo, zeolites[:PATH], iza:CODES, dir:PATH, togo, petretto or mp[:FILTERS]"


def check_source(spec: str) -> None:
    """Refuse, before any work starts, a spec :func:`resolve_source` would refuse later for
    its form alone: an unknown kind or an unreadable MP filter (:class:`SourceSpecError`), or
    the Materials Project without ``MP_API_KEY`` (:class:`~.materials_project.MPError`).
    Reads no file and makes no request."""
    kind, _, arg = spec.partition(":")
    if spec in ("demo", "togo", "petretto", "zeolites") or (kind in ("zeolites", "iza", "dir") and arg):
        return
    if kind != "mp" or (spec != "mp" and not arg):
        raise SourceSpecError(f"unknown source {spec!r}: use {SOURCE_SPECS}")
    from vgnn_core.settings import env

    from .materials_project import MPError, MPQuery

    MPQuery.from_spec(arg)
    if not env("MP_API_KEY"):
        raise MPError("--source mp: no Materials Project API key: set MP_API_KEY (https://next-gen.materialsproject.org/api)")


def source_partition(source: str) -> str:
    """The ``source`` partition of a spec: its kind (``dir``, ``mp``, ``zeolites``…)."""
    kind = source.partition(":")[0]
    return "zeolites" if kind == "iza" else kind
