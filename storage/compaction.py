"""Compaction: merge a release's many small shard files into a few large ones.

Copy-on-compact: the merged files go into a new release directory, finalized with its own
manifest, so an interrupted compaction leaves the source release untouched and the new one
invisible (no manifest) — run it again.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .release import Release, finalize_release, release_dir
from .writer import write_parquet_atomic

TARGET_BYTES = 256 * 2**20


def compact_release(root: Path, source_name: str, target_name: str, target_bytes: int = TARGET_BYTES) -> Path:
    """Write ``releases/<target_name>`` with each (table, partition) merged into files of
    about ``target_bytes`` (uncompressed Arrow size), and point ``latest`` at it."""
    src = Release.open(release_dir(root, source_name))
    dst = release_dir(root, target_name)
    groups: dict[str, list[dict]] = defaultdict(list)
    for f in src.manifest["files"]:
        groups[str(Path(f["path"]).parent)].append(f)
    for partition, files in sorted(groups.items()):
        batch: list[pa.Table] = []
        size, k = 0, 0
        for f in sorted(files, key=lambda x: x["path"]):
            table = pq.read_table(Path(src.location) / f["path"])
            batch.append(table)
            size += table.nbytes
            if size >= target_bytes:
                write_parquet_atomic(pa.concat_tables(batch), dst / partition / f"part-compacted-{k:04d}.parquet")
                batch, size, k = [], 0, k + 1
        if batch:
            write_parquet_atomic(pa.concat_tables(batch), dst / partition / f"part-compacted-{k:04d}.parquet")
    extra = {k: v for k, v in src.manifest.items() if k not in ("name", "files", "created_at", "schema_version", "code_version", "models")}
    finalize_release(root, target_name, models=src.manifest.get("models"), extra={**extra, "compacted_from": source_name})
    return dst
