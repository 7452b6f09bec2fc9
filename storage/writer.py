"""Crash-safe Parquet writing: per-shard working files, compacted into a release's partitions.

A build writes each shard into the release's hidden working folder, one file per table::

    <release>/.work/shards/<source>/<shard_id>/<table>.parquet
    <release>/.work/shards/<source>/<shard_id>.json     # commit marker, written last

Every file is written to a temporary name in the same folder and renamed, so a crash leaves
the whole file or none. A shard counts as complete only when its marker exists; writing the
same shard again replaces its files, never duplicates rows. These files are the resumable
working state; a release's readers never see them.

At finalize, :func:`compact_table` merges the shards' files of one table into a few large
hive-partitioned files, ``<table>/source=<source>/bucket=<N>/part-<key>-<k>.parquet``: rows
sorted by material id, row groups of about :data:`ROW_GROUP_BYTES` and files of about
:data:`FILE_BYTES` (Arrow, uncompressed), so a release of 146k materials is on the order of a
hundred files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vgnn_core.files import atomic_write, file_digest, write_text_atomic

from .schema import SchemaError, to_table

#: Hash partitions of a released table. A bucket only spreads a table over a few files that can
#: be written and read in parallel; finding one material relies on the files being sorted by
#: ``material_id`` (row-group min/max statistics), not on the bucket. Four keeps the small
#: tables (structures, gamma, thermo, failures) at a few files of useful size even in a release
#: of 150k materials, where 16 made 16 small files per table and source.
N_BUCKETS = 4
#: Target size of one row group (Arrow bytes, uncompressed; ~20-50 MB on disk with zstd). A
#: remote reader (DuckDB httpfs, pyarrow, polars) fetches and decodes whole column chunks of a
#: row group, so groups this large keep a full scan at a few range requests per file while a
#: lookup by material id, pruned by the sorted column's statistics, reads one group.
ROW_GROUP_BYTES = 64 * 2**20
#: A compacted file is closed once it holds this much (Arrow bytes, about 4 row groups).
FILE_BYTES = 256 * 2**20
#: The hidden working folder of a release (per-shard files and markers).
WORK_DIR = ".work"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def bucket_of(material_id: str, n_buckets: int = N_BUCKETS) -> int:
    """A stable bucket for a material (same id → same bucket, on every machine)."""
    return int(hashlib.sha1(material_id.encode()).hexdigest()[:8], 16) % n_buckets


def _safe(kind: str, value: str) -> str:
    if not _SAFE.match(value) or value in (".", ".."):
        raise SchemaError(f"{kind} {value!r} may only contain letters, digits, '_', '-' and '.'")
    return value


def _parquet_options(schema: pa.Schema) -> dict:
    # dictionary-encode the string columns only: trying it on float spectra costs 2-3x time
    return {"compression": "zstd", "use_dictionary": [f.name for f in schema if pa.types.is_string(f.type)]}


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file and an atomic rename (zstd)."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    atomic_write(path, lambda fh: pq.write_table(table, fh, row_group_size=max(1, ROW_GROUP_BYTES // per_row),
                                                 **_parquet_options(table.schema)))


def shards_dir(root: Path, source: str) -> Path:
    """The working folder of one source's shards in release folder ``root``."""
    return Path(root) / WORK_DIR / "shards" / _safe("source", source)


def marker_path(root: Path, source: str, shard_id: str) -> Path:
    return shards_dir(root, source) / f"{_safe('shard id', shard_id)}.json"


def read_marker(root: Path, source: str, shard_id: str) -> dict | None:
    """The marker of a complete shard, or ``None`` (missing or unreadable: not complete)."""
    try:
        return json.loads(marker_path(root, source, shard_id).read_text())
    except (OSError, ValueError):
        return None


def shard_complete(root: Path, source: str, shard_id: str, expect: dict | None = None) -> bool:
    """Whether the shard's marker exists and records every ``expect`` item (e.g. its models)."""
    marker = read_marker(root, source, shard_id)
    return marker is not None and all(marker.get(k) == v for k, v in (expect or {}).items())


def complete_shards(root: Path) -> dict[tuple[str, str], dict]:
    """Every complete shard in release folder ``root``: ``{(source, shard_id): marker}``."""
    out = {}
    base = Path(root) / WORK_DIR / "shards"
    for marker in sorted(base.glob("*/*.json")) if base.is_dir() else []:
        try:
            content = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        out[(marker.parent.name, marker.stem)] = content
    return out


def remove_shard(root: Path, source: str, shard_id: str) -> None:
    """Delete a shard's working files (marker first, so a crash leaves it incomplete)."""
    marker_path(root, source, shard_id).unlink(missing_ok=True)
    shutil.rmtree(shards_dir(root, source) / shard_id, ignore_errors=True)


def _sort_key(table: pa.Table) -> str | None:
    return next((c for c in ("material_id", "run_id") if c in table.column_names), None)


def write_shard(root: Path, source: str, shard_id: str, tables: dict[str, Sequence[dict]],
                meta: dict | None = None) -> dict:
    """Write one shard's rows of several tables into ``root``'s working folder; returns its marker.

    All rows are validated before anything is written, so bad input leaves no file behind.
    ``meta`` (JSON) is recorded in the marker (the models that made the rows, counts…).
    """
    root = Path(root)
    arrow = {name: to_table(name, rows) for name, rows in tables.items() if rows is not None}
    marker = marker_path(root, source, shard_id)
    folder = shards_dir(root, source) / shard_id
    marker.unlink(missing_ok=True)  # the shard is being (re)written: incomplete until the new marker lands
    written: dict[str, dict] = {}
    first: list[str] = []
    for name, table in arrow.items():
        path = folder / f"{name}.parquet"
        if table.num_rows == 0:
            path.unlink(missing_ok=True)  # left by an earlier attempt with rows
            continue
        key = _sort_key(table)
        if key is not None:
            first.append(pc.min(table.column(key)).as_py())
        write_parquet_atomic(table, path)
        written[name] = {"path": str(path.relative_to(root)), "rows": table.num_rows, "sha256": file_digest(path)}
    for stale in folder.glob("*.parquet") if folder.is_dir() else []:
        if stale.stem not in written:
            stale.unlink()
    content = {**(meta or {}), "source": source, "shard_id": shard_id, "first_id": min(first, default=shard_id),
               "tables": written}
    write_text_atomic(marker, json.dumps(content, indent=1))
    return content


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` with ``target``'s columns in its order: missing ones as nulls, types cast."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in target]
    return pa.Table.from_arrays(columns, schema=target)


@dataclass
class _RollingWriter:
    """One partition's compacted files: rows buffered into row groups, files rolled by size."""

    folder: Path
    stem: str
    schema: pa.Schema
    buffered: list[pa.Table] = field(default_factory=list)
    buffered_bytes: int = 0
    file_bytes: int = 0
    writer: pq.ParquetWriter | None = None
    tmp: Path | None = None
    paths: list[Path] = field(default_factory=list)

    def add(self, table: pa.Table) -> None:
        self.buffered.append(table)
        self.buffered_bytes += table.nbytes
        if self.buffered_bytes >= ROW_GROUP_BYTES:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write the buffered rows as full row groups; the rest stays buffered unless ``final``."""
        if not self.buffered:
            return
        table = pa.concat_tables(self.buffered).combine_chunks()
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        rows_per_group = max(1, ROW_GROUP_BYTES // per_row)
        full = table.num_rows if final else table.num_rows - table.num_rows % rows_per_group
        for start in range(0, full, rows_per_group):
            part = table.slice(start, min(rows_per_group, full - start))
            if self.writer is None:
                self._open()
            self.writer.write_table(part, row_group_size=part.num_rows)
            self.file_bytes += part.nbytes
            if self.file_bytes >= FILE_BYTES:
                self._close_file()
        rest = table.slice(full)
        self.buffered = [rest] if rest.num_rows else []
        self.buffered_bytes = rest.nbytes if rest.num_rows else 0

    def _open(self) -> None:
        path = self.folder / f"{self.stem}-{len(self.paths)}.parquet"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, self.schema, **_parquet_options(self.schema))
        self.paths.append(path)
        self.file_bytes = 0

    def _close_file(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.paths[-1])  # whole or absent, like every other file
        self.writer, self.tmp = None, None

    def close(self) -> list[Path]:
        self._flush(final=True)
        if self.writer is not None:
            self._close_file()
        return self.paths

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.tmp.unlink(missing_ok=True)


def compact_table(files: Sequence[Path], dest: Path, stem: str, empty_schema: pa.Schema,
                  n_buckets: int = N_BUCKETS) -> list[Path]:
    """Merge one table's per-shard ``files`` (in order) into ``dest/bucket=<N>/<stem>-<k>.parquet``.

    Each shard's rows are sorted by material id (or run id) and dealt to their bucket; a
    bucket's rows are written in row groups of about :data:`ROW_GROUP_BYTES` and files of
    about :data:`FILE_BYTES`. The files' schemas are unified (a column some files lack reads as
    null). Without any row, one empty file with ``empty_schema`` is written in ``bucket=0``, so
    the table still exists for readers of the folder. Returns the files written.
    """
    if not files:
        path = dest / "bucket=0" / f"{stem}-0.parquet"
        write_parquet_atomic(empty_schema.empty_table(), path)
        return [path]
    schemas = [pq.read_schema(f) for f in files]
    target = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    target = target.with_metadata(schemas[0].metadata)  # the schema version and table name
    writers: dict[int, _RollingWriter] = {}
    try:
        for f in files:
            table = _conform(pq.read_table(f), target)
            key = _sort_key(table)
            if key is None:
                buckets = np.zeros(table.num_rows, dtype=np.int64)
            else:
                table = table.sort_by([(key, "ascending")])
                buckets = np.array([bucket_of(v, n_buckets) for v in table.column(key).to_pylist()], dtype=np.int64)
            for b in np.unique(buckets):
                b = int(b)
                if b not in writers:
                    writers[b] = _RollingWriter(dest / f"bucket={b}", stem, target)
                writers[b].add(table.filter(pa.array(buckets == b)))
        return [p for b in sorted(writers) for p in writers[b].close()]
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
