"""The Materials Project as a structure source, through mp-api's ``MPRester``.

Two steps, both chunked, retried and rate-limited:

1. list the ids matching a :class:`MPQuery` (only ``material_id`` is fetched);
2. fetch structures for consecutive id ranges of ``chunk_size`` ids, each range cached as one
   gzip JSON file under ``cache/<database version>/``, so an interrupted ingest resumes where
   it stopped and a new MP release starts a fresh cache.

Every request carries at least one filter: mp-api turns a filter-less search into a download
of the whole collection from its S3 bucket, which this module refuses to do by accident.
The API key comes from ``MP_API_KEY`` (or the argument); ``MP_API_ENDPOINT`` points the client
at another server (the tests run a local one).
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pymatgen.core import Structure

from vgnn_core.files import atomic_write
from vgnn_core.settings import env

from .item import SourceItem, SourceSpecError

#: Fields fetched per material: nothing else is transferred.
STRUCTURE_FIELDS = ["material_id", "structure", "nsites", "energy_above_hull", "deprecated"]
DEFAULT_CHUNK_SIZE = 1000


class MPError(RuntimeError):
    """The Materials Project could not be queried (no key, refused, or unreachable)."""


@dataclass(frozen=True)
class MPQuery:
    """Which materials to ingest. ``energy_above_hull_max=0`` keeps the stable ones only."""

    elements: tuple[str, ...] = ()
    exclude_elements: tuple[str, ...] = ()
    nsites_min: int = 1
    nsites_max: int | None = None
    energy_above_hull_max: float | None = None
    include_deprecated: bool = False

    def criteria(self) -> dict:
        """Keyword arguments of ``MPRester.materials.summary.search`` (never empty)."""
        c: dict = {"num_sites": (self.nsites_min, self.nsites_max or 100_000)}
        if self.elements:
            c["elements"] = list(self.elements)
        if self.exclude_elements:
            c["exclude_elements"] = list(self.exclude_elements)
        if self.energy_above_hull_max is not None:
            c["energy_above_hull"] = (0.0, float(self.energy_above_hull_max))
        if not self.include_deprecated:
            c["deprecated"] = False
        return c

    @classmethod
    def from_spec(cls, spec: str) -> MPQuery:
        """``"nsites<=40,elements=Si+O,exclude=Pb,ehull<=0.05,deprecated"`` → a query."""
        kw: dict = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if m := re.fullmatch(r"nsites<=(\d+)", part):
                kw["nsites_max"] = int(m[1])
            elif m := re.fullmatch(r"nsites>=(\d+)", part):
                kw["nsites_min"] = int(m[1])
            elif m := re.fullmatch(r"elements=([A-Za-z+]+)", part):
                kw["elements"] = tuple(m[1].split("+"))
            elif m := re.fullmatch(r"exclude=([A-Za-z+]+)", part):
                kw["exclude_elements"] = tuple(m[1].split("+"))
            elif m := re.fullmatch(r"ehull<=([0-9.eE+-]+)", part):
                kw["energy_above_hull_max"] = float(m[1])
            elif part == "stable":
                kw["energy_above_hull_max"] = 0.0
            elif part == "deprecated":
                kw["include_deprecated"] = True
            else:
                raise SourceSpecError(f"mp query: cannot read {part!r} (use nsites<=N, nsites>=N, elements=A+B, "
                                 "exclude=A+B, ehull<=X, stable, deprecated)")
        return cls(**kw)


def id_sort_key(material_id: str) -> tuple[str, int]:
    prefix, _, number = material_id.partition("-")
    return prefix, int(number) if number.isdigit() else 0


@dataclass
class MaterialsProjectClient:
    """Thin, polite wrapper over ``MPRester``: retries with back-off, a minimum interval
    between requests, and a refusal of filter-less (bulk) searches."""

    api_key: str | None = None
    endpoint: str | None = None
    retries: int = 4
    backoff_s: float = 1.0
    min_interval_s: float = 0.1
    log: Callable[[str], None] | None = None
    _rester: object = field(default=None, init=False, repr=False)
    _last_call: float = field(default=0.0, init=False, repr=False)

    def rester(self):
        if self._rester is None:
            key = self.api_key or env("MP_API_KEY")
            if not key:
                raise MPError("no Materials Project API key: set MP_API_KEY (https://next-gen.materialsproject.org/api)")
            try:
                from mp_api.client import MPRester
            except ImportError as exc:
                raise MPError("the Materials Project source needs mp-api: pip install 'vgnn-phonondb[mp]'") from exc
            endpoint = self.endpoint or env("MP_API_ENDPOINT")
            kwargs = {"endpoint": endpoint} if endpoint else {}
            self._rester = self._call(lambda: MPRester(api_key=key, mute_progress_bars=True,
                                                       use_document_model=False, **kwargs))
        return self._rester

    @property
    def database_version(self) -> str:
        return str(self.rester().db_version)

    def _call(self, fn):
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            wait = self.min_interval_s - (time.monotonic() - self._last_call)
            if wait > 0:
                time.sleep(wait)
            try:
                self._last_call = time.monotonic()
                return fn()
            except Exception as exc:  # noqa: BLE001 - mp-api raises MPRestError, requests errors, …
                message = str(exc)
                # the status, not any "403" in the text (a URL's port can hold it: :40315)
                if re.search(r"status code (401|403)\b", message) or "API key" in message:
                    raise MPError(f"Materials Project refused the request: {message.splitlines()[0]}") from exc
                last = exc
                if attempt < self.retries:
                    delay = self.backoff_s * 2**attempt
                    if self.log:
                        self.log(f"Materials Project request failed ({message.splitlines()[0][:120]}); retry in {delay:.0f} s")
                    time.sleep(delay)
        raise MPError(f"Materials Project unreachable after {self.retries + 1} attempts: {last}") from last

    def search(self, fields: Sequence[str], **criteria) -> list[dict]:
        if not criteria:
            raise MPError("refusing a Materials Project search without filters (it would download the whole collection)")
        rester = self.rester()
        return self._call(lambda: rester.materials.summary.search(fields=list(fields), **criteria))

    def material_ids(self, query: MPQuery) -> list[str]:
        """Ids matching ``query``, sorted by number."""
        docs = self.search(["material_id"], **query.criteria())
        return sorted({str(d["material_id"]) for d in docs}, key=id_sort_key)

    def structures(self, material_ids: Sequence[str]) -> dict[str, Structure]:
        """Structures of the given ids (those MP does not know are absent)."""
        docs = self.search(STRUCTURE_FIELDS, material_ids=list(material_ids))
        out = {}
        for d in docs:
            s = d["structure"]
            s = s if isinstance(s, Structure) else Structure.from_dict(s)
            s.properties = {"material_id": str(d["material_id"])}
            out[str(d["material_id"])] = s
        return out


def fetch_structures(material_ids: Sequence[str], client: MaterialsProjectClient | None = None) -> dict[str, Structure]:
    """Structures of a few ``mp-XXXX`` ids (``vgnn predict mp-149``)."""
    return (client or MaterialsProjectClient()).structures(list(material_ids))


def ingest(
    query: MPQuery,
    cache_dir: str | Path,
    client: MaterialsProjectClient | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, list[SourceItem]]:
    """``(database version, [SourceItem, ...])`` for ``query``.

    Id ranges already in ``cache_dir/<version>/`` are read from disk, the rest fetched and
    cached (written atomically), so a rerun after a crash fetches only what is missing.
    """
    client = client or MaterialsProjectClient(log=progress)
    version = client.database_version
    root = Path(cache_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    root.mkdir(parents=True, exist_ok=True)
    ids = client.material_ids(query)
    out: list[SourceItem] = []
    for k in range(0, len(ids), chunk_size):
        chunk = ids[k : k + chunk_size]
        path = root / f"chunk-{chunk[0]}--{chunk[-1]}-{len(chunk)}.json.gz"
        if path.is_file():
            with gzip.open(path, "rt") as fh:
                stored = json.load(fh)
            structures = {mid: Structure.from_dict(d) for mid, d in stored.items()}
        else:
            structures = client.structures(chunk)
            text = json.dumps({mid: s.as_dict() for mid, s in structures.items()})
            atomic_write(path, lambda fh, t=text: fh.write(gzip.compress(t.encode())))
        if progress:
            progress(f"MP {version}: ids {chunk[0]}…{chunk[-1]} ({len(structures)} structures)")
        for mid in chunk:
            if mid in structures:
                s = structures[mid]
                s.properties = {"material_id": mid}
                out.append(SourceItem(mid, structure=s))
    return version, out
