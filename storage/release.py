"""Releases: a directory of Parquet files made visible by its ``manifest.json``.

A database root holds ``releases/<name>/`` and a ``latest`` file naming the newest complete
release. A release is complete once its manifest exists — written last, atomically — listing
every file with its row count, size and sha256, the schema version, the models and the code
version. Readers only ever read the files a manifest lists, so a rebuild in progress is never
half-visible.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from vgnn_core.files import file_digest, write_text_atomic

from .schema import SCHEMA_VERSION, TABLES

MANIFEST = "manifest.json"


def code_version() -> str:
    """``git describe`` of the source checkout when there is one, else the package version."""
    import subprocess

    here = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        from importlib.metadata import version

        try:
            return version("vgnn-phonondb")
        except Exception:  # noqa: BLE001
            return "unknown"


def release_dir(root: Path, name: str) -> Path:
    return Path(root) / "releases" / name


def finalize_release(root: Path, name: str, models: list[dict] | None = None, extra: dict | None = None) -> Path:
    """Write the manifest of ``releases/<name>`` and point ``latest`` at it."""
    rdir = release_dir(root, name)
    files = []
    for table in TABLES:
        for path in sorted((rdir / table).rglob("*.parquet")):
            if path.name.startswith("."):
                continue
            files.append({
                "table": table,
                "path": str(path.relative_to(rdir)),
                "rows": pq.ParquetFile(path).metadata.num_rows,
                "bytes": path.stat().st_size,
                "sha256": file_digest(path),
            })
    manifest = {
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "models": models or [],
        "files": files,
        **(extra or {}),
    }
    write_text_atomic(rdir / MANIFEST, json.dumps(manifest, indent=1))
    write_text_atomic(Path(root) / "latest", name + "\n")
    return rdir


@dataclass
class Release:
    """A complete release, read through its manifest (a local folder or an https URL)."""

    location: str  # folder or URL of the release (where manifest.json lives)
    manifest: dict

    @classmethod
    def open(cls, where: str | Path) -> Release:
        """A release folder, a database root (its ``latest``) or a release URL."""
        where = str(where)
        if where.startswith(("http://", "https://")):
            from vgnn_core.io.http import http_session

            base = where.rstrip("/")
            if base.endswith(MANIFEST):
                base = base[: -len(MANIFEST) - 1]
            r = http_session(retries=3, backoff=0.5).get(f"{base}/{MANIFEST}", timeout=60)
            r.raise_for_status()
            return cls(base, r.json())
        path = Path(where)
        if not (path / MANIFEST).is_file() and (path / "latest").is_file():
            path = release_dir(path, (path / "latest").read_text().strip())
        if not (path / MANIFEST).is_file():
            raise FileNotFoundError(f"{where}: no {MANIFEST} (not a complete release or database root)")
        return cls(str(path), json.loads((path / MANIFEST).read_text()))

    @property
    def is_remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    def files(self, table: str) -> list[str]:
        """Paths (or URLs) of one table's files, as the manifest lists them."""
        sep = "/" if self.is_remote else os.sep
        return [f"{self.location}{sep}{f['path']}" for f in self.manifest["files"] if f["table"] == table]

    def verify(self) -> list[str]:
        """Local files whose size or sha256 differs from the manifest (empty = intact)."""
        bad = []
        for f in self.manifest["files"]:
            p = Path(self.location) / f["path"]
            if not p.is_file() or p.stat().st_size != f["bytes"] or file_digest(p) != f["sha256"]:
                bad.append(f["path"])
        return bad
