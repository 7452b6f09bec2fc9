"""The build plan: what a build will do, decided once, the same for every executor.

:class:`BuildSettings` holds every number a build uses (mesh density, temperatures, size limits,
shard size). :func:`plan_build` reads every input once into a validated
:class:`~vgnn_core.crystal.crystal.Crystal` (or an :class:`InputFailure` with its cause) and
packs them into shards; :func:`finalize_build` closes the release.

A release is keyed by content. A shard's id hashes its members' ids and input digests
(:func:`input_digest`) with the settings that shape their rows, and shard boundaries are cut by
the material ids themselves (content-defined chunking), so adding, removing or editing inputs
changes only the shards around them: a rebuild into the same release recomputes those, reuses
every other complete shard, and the release holds exactly the rows a fresh build would. A
release belongs to one source: the default name carries a short hash of a source spec that
has a parameter (``dir-3f9c2a1b-20261201``), and a release refuses a build of another source
(:class:`BuildError`). A build none of whose inputs is written makes no release.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from storage.download import check_release_name
from storage.release import MANIFEST, finalize_release, release_dir
from storage.schema import SCHEMA_VERSION
from storage.writer import WORK_DIR, complete_shards, write_shard
from vgnn_core import InvalidStructureError
from vgnn_core.crystal.crystal import Crystal
from vgnn_core.files import write_text_atomic
from vgnn_core.timing import StageClock

from .sources import SourceItem, resolve_source, source_partition

#: Temperatures (K) of the ``thermo`` table.
THERMO_TEMPERATURES = (0, 50, 100, 150, 200, 250, 298.15, 300, 400, 500, 600, 700, 800, 900, 1000)


@dataclass(frozen=True)
class BuildSettings:
    """Every number a database build uses (one place; recorded with the release)."""

    #: q-mesh density (points per Å⁻¹) of the DOS and thermal properties
    mesh_density: float = 30.0
    #: temperatures (K) of the ``thermo`` table
    temperatures: tuple[float, ...] = THERMO_TEMPERATURES
    #: a shard holds about this many atoms; a crystal above ``large_cell_atoms`` gets its own
    atoms_per_shard: int = 2000
    large_cell_atoms: int = 500
    #: Size limits (atoms per cell), chosen so no shard needs more than a few GB on a 24 GB
    #: machine: above ``bands_max_atoms`` k-MVN's band structure, DOS and thermo are skipped
    #: (one dense eigen-solve of a 3m × 3m complex matrix per q-point: 3,600² takes ~10 s and
    #: 200 MB; the Γ spectrum from MVN is still written) and a ``failures`` row with stage
    #: ``limit`` says so; above ``max_atoms`` the material is refused at ingest.
    bands_max_atoms: int = 1200
    max_atoms: int = 5000
    #: the LO–TO jump at Γ with predicted Born charges and ε∞ (k-MVN rows only; metals and
    #: one-atom cells are skipped: vgnn_core.predict.nac_skip_reason; a k-MVN no Born heads fit
    #: is written without). No measurable cost (benchmarks/bench_nac.py: the heads share the
    #: backbone pass, the Γ jump is in closed form)
    nac: bool = True

    @property
    def temperature_array(self) -> np.ndarray:
        return np.asarray(self.temperatures, dtype=float)


@dataclass(frozen=True)
class Shard:
    shard_id: str
    material_ids: tuple[str, ...]
    n_atoms: int


@dataclass(frozen=True)
class InputFailure:
    """An input that could not be read or validated: it becomes a ``failures`` row."""

    material_id: str
    error_class: str
    message: str


#: What the plan holds for one material id.
PlannedInput = Crystal | InputFailure


class ShardInputs(Sequence):
    """One shard's planned inputs, in order, with their :func:`input_digest`: what a shard task
    is handed. A sequence, but not a list: Prefect walks every list, tuple and dataclass of a
    task's arguments looking for futures (~1.7 ms a crystal when the flow submits the shard),
    and stops at this object; Dask tokenizes it by the digests, without pickling the crystals."""

    __slots__ = ("_items", "digests")

    def __init__(self, items: Sequence[PlannedInput], digests: Sequence[str]) -> None:
        if len(items) != len(digests):
            raise ValueError(f"{len(items)} inputs with {len(digests)} digests")
        self._items = tuple(items)
        self.digests = tuple(digests)

    def __getitem__(self, k):
        return self._items[k]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ShardInputs({len(self)} inputs)"

    def __reduce__(self):
        # the inputs as one in-band pickle: Dask's serializer would pass each numpy array of every
        # pymatgen site out of band, one buffer at a time (3x the time in the submitting process)
        return _shard_inputs, (pickle.dumps(self._items, protocol=pickle.HIGHEST_PROTOCOL), self.digests)

    def __dask_tokenize__(self) -> tuple:
        return ("flows.ShardInputs", self.digests)


def _shard_inputs(items: bytes, digests: tuple[str, ...]) -> ShardInputs:
    return ShardInputs(pickle.loads(items), digests)


class BuildError(ValueError):
    """A build that cannot start or produced nothing to release; the message is one line."""


def _cut_after(material_id: str, n_atoms: int, atoms_per_shard: int) -> bool:
    """Whether a shard ends after this material: with probability ``n_atoms / atoms_per_shard``,
    drawn from the id's hash, so the cut depends on this material alone."""
    u = int(hashlib.sha256(material_id.encode()).hexdigest()[:13], 16) / 16**13
    return u < n_atoms / atoms_per_shard


def plan_shards(sizes: dict[str, int], atoms_per_shard: int = BuildSettings.atoms_per_shard,
                large_cell_atoms: int = BuildSettings.large_cell_atoms,
                digests: dict[str, str] | None = None, salt: str = "") -> list[Shard]:
    """Deterministic shards of at most ``atoms_per_shard`` atoms; the same inputs give the same plan.

    Materials are taken in id order; a shard ends after a material with probability (atoms /
    ``atoms_per_shard``) decided by a hash of its id, or before one that would overfill it, and
    a cell above ``large_cell_atoms`` goes alone. Boundaries thus follow the ids, not positions:
    an added or removed material changes its own shard (and at most the next few up to a
    boundary the ids decide), never every shard after it. A shard's id hashes ``salt`` and its
    members' ids and ``digests`` (their content), so a finished shard is recognised on a rerun
    and a changed one is not mistaken for it.
    """
    digests = digests or {}
    shards: list[Shard] = []
    current: list[str] = []
    atoms = 0

    def close(ids: list[str], n: int) -> None:
        text = salt + "\n" + "\n".join(f"{m}\t{digests.get(m, '')}" for m in ids)
        shards.append(Shard(hashlib.sha256(text.encode()).hexdigest()[:20], tuple(ids), n))

    for mid in sorted(sizes):
        n = max(1, int(sizes[mid]))
        if n > large_cell_atoms:
            close([mid], n)
            continue
        if current and atoms + n > atoms_per_shard:
            close(current, atoms)
            current, atoms = [], 0
        current.append(mid)
        atoms += n
        if _cut_after(mid, n, atoms_per_shard):
            close(current, atoms)
            current, atoms = [], 0
    if current:
        close(current, atoms)
    return shards


def input_digest(x: PlannedInput) -> str:
    """A digest of everything of an input its rows depend on: the cell (lattice, species,
    fractional positions, to 1e-10) of a crystal, or the cause of an input failure."""
    h = hashlib.sha256()
    if isinstance(x, InputFailure):
        h.update(f"failure\t{x.material_id}\t{x.error_class}\t{x.message}".encode())
        return h.hexdigest()[:20]
    s = x.structure
    h.update(f"crystal\t{x.name}\t{[str(site.species) for site in s]}".encode())
    h.update(np.round(np.asarray(s.lattice.matrix, dtype=float), 10).tobytes())
    h.update(np.round(np.asarray(s.frac_coords, dtype=float), 10).tobytes())
    return h.hexdigest()[:20]


def source_key(source: str) -> str:
    """The source spec with its folder made absolute (``dir:in`` → ``dir:/home/me/in``): what
    identifies a release's source."""
    kind, _, arg = source.partition(":")
    if kind in ("dir", "zeolites") and arg:
        return f"{kind}:{Path(arg).expanduser().resolve()}"
    return source


def default_release_name(source: str, day=None) -> str:
    """``SOURCE-YYYYMMDD``, with a short hash of the spec when it has a parameter
    (``dir-3f9c2a1b-20261201``), so two folders built the same day are two releases."""
    import datetime as dt

    day = day or dt.date.today()
    kind, key = source_partition(source), source_key(source)
    tag = "" if key == kind else f"-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return f"{kind}{tag}-{day:%Y%m%d}"


def _source_file(out: Path, release: str) -> Path:
    return release_dir(out, release) / WORK_DIR / "source.json"


def check_release_source(out: Path, release: str, source: str) -> None:
    """:class:`BuildError` when ``release`` at ``out`` holds another source than ``source``
    (as its working folder or its manifest records it); reads only."""
    key = source_key(source)
    for path in (_source_file(out, release), release_dir(out, release) / MANIFEST):
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        recorded = content.get("source_key") or (source_key(content["source"]) if content.get("source") else None)
        if recorded is None:
            continue
        if recorded != key:
            raise BuildError(f"release {release} in {out} holds source {recorded!r}, not {key!r}: "
                             "build it into another --release or --out")
        return


def claim_release(out: Path, release: str, source: str) -> None:
    """Record in ``release``'s working folder that it holds ``source`` (after checking it may)."""
    check_release_source(out, release, source)
    path = _source_file(out, release)
    if not path.is_file():
        write_text_atomic(path, json.dumps({"source": source, "source_key": source_key(source)}))


def read_inputs(items: list[SourceItem]) -> dict[str, PlannedInput]:
    """Read and validate every input once: a :class:`Crystal`, or why it cannot be one.

    A material id held by several inputs is a failure for every one of them (keyed
    ``<id>#<n>``, a key no input has, in the plan; the failure row keeps the id and names every
    origin): no input silently replaces another. No inputs at all raise
    :class:`~flows.sources.EmptySourceError`, before anything is written.
    """
    from collections import Counter

    from .sources import EmptySourceError

    if not items:
        raise EmptySourceError("the source has no structures: nothing to build")
    counts = Counter(item.material_id for item in items)
    origins: dict[str, list[str]] = {}
    for item in items:
        origins.setdefault(item.material_id, []).append(item.origin)
    out: dict[str, PlannedInput] = {}
    seen: Counter = Counter()
    for item in items:
        mid = item.material_id
        if counts[mid] > 1:
            seen[mid] += 1
            key = f"{mid}#{seen[mid]}"
            while key in counts or key in out:  # an input's own id may look like that
                key += "#"
            out[key] = InputFailure(
                mid, "DuplicateMaterialId",
                f"{mid}: duplicate material id, held by {counts[mid]} inputs ({'; '.join(origins[mid])}): "
                f"none of them is built")
        else:
            out[mid] = read_input(item)
    return out


def read_input(item: SourceItem) -> PlannedInput:
    """One input read and validated, or an :class:`InputFailure` naming the cause."""
    try:
        return item.read()
    except Exception as exc:  # noqa: BLE001 - one bad input is that material's failure row
        message = str(exc)
        if not isinstance(exc, InvalidStructureError) and exc.__traceback__ is not None:
            frame = traceback.extract_tb(exc.__traceback__)[-1]  # where an unexpected reader crash happened
            message += f" (raised at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
        return InputFailure(item.material_id, type(exc).__name__, message)


def sizes_of(inputs: dict[str, PlannedInput]) -> dict[str, int]:
    """Atom counts for the shard plan (1 for inputs that could not be read)."""
    return {mid: x.n_atoms if isinstance(x, Crystal) else 1 for mid, x in inputs.items()}


def estimated_cost(x: PlannedInput) -> float:
    """A material's work in a CPU build (for ordering shards only), in units of a 16-atom
    crystal's eigen-solves (path and mesh, ~0.03 core-s here): a fixed part for the graph, the
    networks, the DOS and the rows (~4 such units: the 1,004-structure benchmark's stage split,
    ``benchmarks/bench_pipeline.py``) plus the eigen-solves, which grow as atoms^2.5 at database
    sizes (``benchmarks/bench_scaling.py``). Unreadable inputs cost almost nothing."""
    if not isinstance(x, Crystal):
        return 0.01
    return 4.0 + (x.n_atoms / 16.0) ** 2.5


@dataclass(frozen=True)
class BuildPlan:
    """What a build will do: its release, run id, settings and shards."""

    source: str
    release: str
    run_id: str
    started: object  # datetime (UTC)
    shards: list[Shard]
    inputs: dict[str, PlannedInput]
    #: each input's :func:`input_digest` (computed for the shard ids)
    digests: dict[str, str]
    settings: BuildSettings = field(default_factory=BuildSettings)
    source_version: str = ""

    @property
    def source_name(self) -> str:
        return source_partition(self.source)

    def items(self, shard: Shard) -> ShardInputs:
        """The shard's inputs, in its order."""
        return ShardInputs([self.inputs[m] for m in shard.material_ids], [self.digests[m] for m in shard.material_ids])

    def shards_costliest_first(self) -> list[Shard]:
        """The shards in the order to run them: the costliest first (:func:`estimated_cost`), so
        that the last shards, which decide how long a worker waits for the others at the end,
        are the short ones. Ties keep the plan's order."""
        cost = {s.shard_id: sum(estimated_cost(self.inputs[m]) for m in s.material_ids) for s in self.shards}
        return sorted(self.shards, key=lambda s: -cost[s.shard_id])


def _shard_salt(settings: BuildSettings) -> str:
    """What, besides its inputs, shapes a shard's rows: the schema and the row settings."""
    rows = {k: v for k, v in asdict(settings).items() if k not in ("atoms_per_shard", "large_cell_atoms")}
    return json.dumps({"schema": SCHEMA_VERSION, **rows}, sort_keys=True)


def plan_build(source: str, release: str | None = None, settings: BuildSettings | None = None,
               out: str | Path | None = None) -> BuildPlan:
    """Ingest ``source`` and plan its shards (default release: :func:`default_release_name`).

    ``release`` must be one safe path component. With ``out``, the release there must hold
    ``source`` or nothing yet, and is claimed for it once the inputs are read
    (:func:`claim_release`). Raises :class:`BuildError`.
    """
    import datetime as dt
    import uuid

    settings = settings or BuildSettings()
    try:
        release = check_release_name(release) if release is not None else default_release_name(source)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    if out is not None:
        check_release_source(Path(out), release, source)  # before reading thousands of inputs
    items, version = resolve_source(source)
    inputs = read_inputs(items)
    if out is not None:
        claim_release(Path(out), release, source)
    digests = {mid: input_digest(x) for mid, x in inputs.items()}
    return BuildPlan(
        source=source,
        release=release,
        run_id=uuid.uuid4().hex[:12],
        started=dt.datetime.now(dt.timezone.utc),
        shards=plan_shards(sizes_of(inputs), settings.atoms_per_shard, settings.large_cell_atoms,
                           digests, _shard_salt(settings)),
        inputs=inputs,
        settings=settings,
        source_version=version,
        digests=digests,
    )


def build_timeline(reports: list, begun: float, ended: float) -> dict[str, float]:
    """Where a build's wall time outside its shards went, from the computed shards' reports
    (``worker``: the task slot, host:pid:thread, that ran it; ``started``, ``finished``: Unix s) and
    the wall span ``begun`` → ``ended`` (Unix s) they ran in. Per slot, averaged over the slots that
    ran shards (``workers``; a slot runs one shard at a time), in s:

    ``to_first_shard_s``: from ``begun`` to the worker's first shard (reading and planning the
    input, Prefect's task submission, a worker still loading its models); ``between_shards_s``: gaps
    between its shards (task dispatch and result handling; a failed attempt of a retried shard and the
    marker check of an already complete one count here too); ``tail_s``: idle after its last shard
    until the last shard of the build ended (the shards' granularity); and, for the build,
    ``after_last_shard_s``: from the last shard's end to ``ended`` (run record, release).
    ``shards_s`` is the mean slot's time in shards; the five parts sum to ``ended - begun``. The
    stamps come from each host's clock: on a cluster of several nodes, their skew enters too."""
    spans: dict[str, list] = {}
    for r in reports:
        if r.worker and r.finished:
            spans.setdefault(r.worker, []).append(r)
    if not spans:
        return {}
    last = max(r.finished for rs in spans.values() for r in rs)
    parts = {"to_first_shard_s": [], "shards_s": [], "between_shards_s": [], "tail_s": []}
    for rs in spans.values():
        first, end = min(r.started for r in rs), max(r.finished for r in rs)
        busy = sum(r.finished - r.started for r in rs)
        parts["to_first_shard_s"].append(first - begun)
        parts["shards_s"].append(busy)
        parts["between_shards_s"].append(end - first - busy)
        parts["tail_s"].append(last - end)
    timeline = {k: float(np.mean(v)) for k, v in parts.items()}
    timeline["after_last_shard_s"] = ended - last
    timeline["workers"] = len(spans)
    return timeline


def finalize_build(out: Path, plan: BuildPlan, models: list[dict], reports: list) -> dict:
    """Record the run in the ``runs`` table, release exactly the plan's shards, summarise.

    ``models`` are ``{"name", "sha256", "kind"}`` of the models used; ``reports`` the
    :class:`~flows.shard.ShardReport` of every shard (a reused shard reports its recorded
    counts). Working shards of inputs the plan no longer has are deleted; the ``runs`` table
    keeps one row per finished build of the release. Summary: ``written`` / ``failed``
    materials in the release, ``computed`` / ``reused`` materials this run, shard counts, and the
    wall seconds of this run's shards (``shard_seconds``) and their split by stage
    (``stage_seconds``), both summed over the shards (so over the workers).
    Raises :class:`BuildError` — no release, ``latest`` unchanged — when no material is written.
    """
    import datetime as dt

    from storage.release import code_version

    written, failed = sum(r.written for r in reports), sum(r.failed for r in reports)
    if written == 0:
        causes = [f"{f['material_id']}: {f['message']}" for r in reports for f in r.failures][:1]
        raise BuildError(f"release {plan.release}: none of the {len(plan.inputs)} inputs of {plan.source} was "
                         f"written ({failed} failed{'; first: ' + causes[0].splitlines()[0] if causes else ''}); "
                         "no release made, latest unchanged")
    rdir = release_dir(out, plan.release)
    write_shard(rdir, plan.source_name, f"run-{plan.run_id}", {"runs": [{
        "run_id": plan.run_id, "started_at": plan.started, "finished_at": dt.datetime.now(dt.timezone.utc),
        "code_version": code_version(), "models": [m["name"] for m in models],
        "model_sha256s": [m["sha256"] for m in models], "source_version": plan.source_version or plan.source,
        "n_written": written, "n_failed": failed}]})
    planned = {(plan.source_name, s.shard_id) for s in plan.shards}
    work = complete_shards(rdir)
    runs = {key for key in work if key[1].startswith("run-")}
    finalize_release(out, plan.release, models=models, shards=sorted(planned | runs),
                     extra={"source": plan.source, "source_key": source_key(plan.source),
                            "settings": asdict(plan.settings)})
    reused = [r for r in reports if r.skipped]
    computed = [r for r in reports if not r.skipped]
    stages = StageClock()
    for r in computed:
        stages.merge(r.stage_seconds)
    return {"release": plan.release, "shards": len(plan.shards), "skipped_shards": len(reused),
            "shard_seconds": sum(r.seconds for r in computed), "stage_seconds": stages.seconds,
            "written": written, "failed": failed,
            "computed": sum(r.written + r.failed for r in computed),
            "reused": sum(r.written + r.failed for r in reused),
            "removed_shards": len(set(work) - planned - runs)}
