"""Releases: a directory of Parquet files made visible by its ``manifest.json``.

A database root holds ``releases/<name>/`` and a ``latest`` file naming the newest complete
release. A release is complete once its manifest exists — written last, atomically — listing
every file with its row count, size and sha256, the schema version, the models and the code
version. Readers only ever read the files a manifest lists, so a rebuild in progress is never
half-visible.

A build writes per-shard files into the release's hidden working folder ``.work/`` (see
:mod:`storage.writer`); :func:`finalize_release` compacts the shards of the build's plan into a
few large files per table, source and bucket, lists them in the manifest and deletes the
working shards the plan no longer has. The working folder stays, unlisted, so a rebuild after
adding, removing or editing inputs reuses every unchanged shard.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from vgnn_core.files import file_digest, unsafe_relative_path, write_text_atomic

from .schema import SCHEMA_VERSION, TABLES, schema
from .writer import compact_table, complete_shards, remove_shard

MANIFEST = "manifest.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


def finalize_release(root: Path, name: str, models: list[dict] | None = None, extra: dict | None = None,
                     shards: Collection[tuple[str, str]] | None = None) -> Path:
    """Compact the release's complete shards into its tables, write the manifest, point ``latest``.

    ``shards``: the ``(source, shard_id)`` to release (default: every complete shard of the
    working folder); a listed shard that is not complete raises ``ValueError``, and working
    shards not listed are deleted once the manifest is written (rows of removed or changed
    inputs). Each table becomes a few files per source and bucket
    (:func:`storage.writer.compact_table`), named after the content they hold, so readers of the
    previous manifest keep their files until the new manifest replaces it; then the files no
    manifest lists are removed. Every table has at least one (possibly empty) file. A release
    folder without a working folder (written before compaction existed) is indexed as it is.
    """
    rdir = release_dir(root, name)
    work = complete_shards(rdir)
    if shards is None:
        chosen = dict(work)
    else:
        missing = [f"{src}/{sid}" for src, sid in shards if (src, sid) not in work]
        if missing:
            raise ValueError(f"release {name}: shard {missing[0]} is not complete ({len(missing)} missing); "
                             "rerun the build to finish it")
        chosen = {key: work[key] for key in shards}
    if chosen:
        files = _compact(rdir, chosen)
    else:
        files = [(t, p) for t in TABLES for p in sorted((rdir / t).rglob("*.parquet")) if not p.name.startswith(".")]
    entries = [{"table": table, "path": path.relative_to(rdir).as_posix(),
                "rows": pq.ParquetFile(path).metadata.num_rows, "bytes": path.stat().st_size,
                "sha256": file_digest(path)} for table, path in files]
    manifest = {
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "models": models or [],
        "files": entries,
        **(extra or {}),
    }
    write_text_atomic(rdir / MANIFEST, json.dumps(manifest, indent=1))
    if chosen:
        listed = {rdir / e["path"] for e in entries}
        for table in TABLES:  # files of earlier manifests, and leftovers of a killed compaction
            for path in (rdir / table).rglob("*") if (rdir / table).is_dir() else []:
                if path.is_file() and path not in listed:
                    path.unlink()
        for key in set(work) - set(chosen):
            remove_shard(rdir, *key)
        shutil.rmtree(rdir / "_shards", ignore_errors=True)  # per-shard markers of the layout before compaction
    write_text_atomic(Path(root) / "latest", name + "\n")
    return rdir


def _compact(rdir: Path, shards: dict[tuple[str, str], dict]) -> list[tuple[str, Path]]:
    """Compact ``shards`` (``{(source, id): marker}``) table by table; ``[(table, file)]`` written."""
    order = sorted(shards, key=lambda k: (k[0], str(shards[k].get("first_id", k[1])), k[1]))
    sources = sorted({src for src, _ in order})
    out = []
    for table in TABLES:
        per_source = {src: [(sid, shards[(src, sid)]["tables"][table]) for s, sid in order
                            if s == src and table in shards[(src, sid)].get("tables", {})] for src in sources}
        if not any(per_source.values()):
            per_source = {sources[0]: []}  # an empty table still gets its one file
        for src, parts in per_source.items():
            if not parts and len(per_source) > 1:
                continue
            key = hashlib.sha256(json.dumps([table, src, [(sid, p["sha256"]) for sid, p in parts]]).encode())
            written = compact_table([rdir / p["path"] for _, p in parts], rdir / table / f"source={src}",
                                    f"part-{key.hexdigest()[:12]}", schema(table))
            out += [(table, path) for path in written]
    return out


class ReleaseIntegrityError(ValueError):
    """A release file differs from its manifest, is missing, or its manifest entry is unsafe."""


def check_entry_path(path: str) -> PurePosixPath:
    """A manifest entry's path as a relative path that stays inside the release folder.

    Raises :class:`ReleaseIntegrityError` for what :func:`vgnn_core.files.unsafe_relative_path`
    refuses (absolute, a drive, ``..``, a NUL byte, a backslash, an empty path).
    """
    why = unsafe_relative_path(path)
    if why is not None:
        raise ReleaseIntegrityError(f"manifest entry {path!r} escapes the release folder ({why}); refused")
    return PurePosixPath(path)


@dataclass
class VerificationCache:
    """Files already checked against a manifest: ``{absolute path: {size, mtime_ns, ctime_ns, sha256}}``.

    Stored as JSON (``<cache dir>/verified-files.json`` by default), so an unchanged file is
    hashed once, not at every query. A file counts as verified only while its size, mtime and
    ctime (ns) are the ones recorded and the manifest expects the recorded sha256.
    """

    path: Path | None = None
    entries: dict = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def load(cls, path: str | Path | None = None) -> VerificationCache:
        """The cache at ``path`` (default ``<cache dir>/verified-files.json``); empty when unreadable."""
        if path is None:
            from vgnn_core.settings import cache_dir

            path = cache_dir() / "verified-files.json"
        path = Path(path)
        try:
            entries = json.loads(path.read_text())
            entries = entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries)

    @staticmethod
    def _stamp(st: os.stat_result) -> dict:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}

    def is_verified(self, path: Path, st: os.stat_result, sha256: str) -> bool:
        got = self.entries.get(str(Path(path).resolve()))
        return isinstance(got, dict) and got == {**self._stamp(st), "sha256": sha256}

    def remember(self, path: Path, st: os.stat_result, sha256: str) -> None:
        self.entries[str(Path(path).resolve())] = {**self._stamp(st), "sha256": sha256}
        self.changed = True

    def save(self) -> None:
        """Write the cache atomically (entries of vanished files dropped); a read-only cache dir is ignored."""
        if not self.changed or self.path is None:
            return
        live = {k: v for k, v in self.entries.items() if os.path.isfile(k)}
        try:
            write_text_atomic(self.path, json.dumps(live, indent=0, sort_keys=True))
            self.changed = False
        except OSError:
            pass  # verification still happened; it is only not remembered


def verify_file(path: Path, entry: dict, cache: VerificationCache | None = None) -> None:
    """Check one file's size and sha256 against its manifest ``entry``; remember a success.

    Raises :class:`ReleaseIntegrityError` naming the file.
    """
    try:
        st = path.stat()
    except OSError:
        raise ReleaseIntegrityError(f"{path}: listed in the release manifest but missing") from None
    if st.st_size != entry["bytes"]:
        raise ReleaseIntegrityError(f"{path}: size mismatch ({st.st_size} bytes, the manifest says {entry['bytes']})")
    if cache is not None and cache.is_verified(path, st, entry["sha256"]):
        return
    if file_digest(path) != entry["sha256"]:
        raise ReleaseIntegrityError(f"{path}: sha256 mismatch with the release manifest (changed or corrupted file)")
    if cache is not None:
        cache.remember(path, st, entry["sha256"])


def release_cache_dir(location: str, name: str) -> Path:
    """Where a remote release's files are kept once downloaded and verified: one folder per release URL."""
    from vgnn_core.settings import cache_dir

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name or "release"))[:64]
    return cache_dir() / "releases" / f"{safe}-{hashlib.sha256(location.encode()).hexdigest()[:16]}"


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

    @property
    def local_root(self) -> Path:
        """The local folder holding the files: the release itself, or a remote release's download cache."""
        if self.is_remote:
            return release_cache_dir(self.location, self.manifest.get("name", ""))
        return Path(self.location)

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

    def checked_entries(self) -> list[dict]:
        """The manifest's file entries, each with a safe relative path, a size and a sha256.

        Raises :class:`ReleaseIntegrityError` (one line) for the first entry that escapes the
        release folder or lacks a field; nothing is read or downloaded before all pass.
        """
        files = self.manifest.get("files") if isinstance(self.manifest, dict) else None
        if not isinstance(files, list):
            raise ReleaseIntegrityError(f"{self.location}/{MANIFEST}: no list of files")
        for f in files:
            check_entry_path(f.get("path", "") if isinstance(f, dict) else "")
            if not (isinstance(f.get("table"), str) and type(f.get("bytes")) is int and f["bytes"] >= 0
                    and isinstance(f.get("sha256"), str) and _SHA256.match(f["sha256"])):
                raise ReleaseIntegrityError(f"{self.location}/{MANIFEST}: entry {f['path']!r} lacks a "
                                            "table, a size in bytes or a sha256")
        return files

    def local_files(self, tables: list[str] | None = None, verify: bool = True,
                    cache: VerificationCache | None = None, log=None) -> dict[str, list[Path]]:
        """Local paths of the files of ``tables`` (default all), checked against the manifest.

        A local release is read in place; each file's size and sha256 are checked once per
        (path, size, mtime, ctime) and remembered in ``cache`` (default: the user's
        :class:`VerificationCache`). A remote release's files are downloaded once into
        :func:`release_cache_dir` and kept only when their size and sha256 match. With
        ``verify=False`` only presence (and, for downloads, size) is checked. Raises
        :class:`ReleaseIntegrityError` naming the first bad file.
        """
        wanted = set(TABLES if tables is None else tables)
        cache = cache if cache is not None else (VerificationCache.load() if verify else None)
        base = self.local_root
        session = None
        out: dict[str, list[Path]] = {t: [] for t in wanted}
        try:
            for entry in self.checked_entries():
                if entry["table"] not in wanted:
                    continue
                rel = check_entry_path(entry["path"])
                path = base.joinpath(*rel.parts)
                if self.is_remote:
                    if session is None:
                        from vgnn_core.io.http import http_session

                        session = http_session(retries=3, backoff=0.5)
                    self._fetch(session, entry, rel, path, verify, cache, log)
                elif verify:
                    verify_file(path, entry, cache)
                elif not path.is_file():
                    raise ReleaseIntegrityError(f"{path}: listed in the release manifest but missing")
                out[entry["table"]].append(path)
        finally:
            if cache is not None:
                cache.save()
        return out

    def _fetch(self, session, entry: dict, rel: PurePosixPath, dest: Path, verify: bool,
               cache: VerificationCache | None, log) -> None:
        """Download one remote file into ``dest`` unless a good copy is there; verify it first."""
        from vgnn_core.io.http import DownloadError, download_verified

        if dest.is_file():
            try:
                if verify:
                    verify_file(dest, entry, cache)
                elif dest.stat().st_size != entry["bytes"]:
                    raise ReleaseIntegrityError(f"{dest}: size mismatch")
                return
            except ReleaseIntegrityError:
                dest.unlink()  # a bad cached copy is fetched again
        url = f"{self.location}/{rel.as_posix()}"
        staging = dest.with_name(f".{dest.name}.unverified")
        if log:
            log(f"downloading {url}")
        try:
            download_verified(session, url, staging, size=entry["bytes"], timeout=60)
        except DownloadError as exc:
            raise ReleaseIntegrityError(f"{url}: {exc}") from None
        try:
            if verify:
                verify_file(staging, entry)
        except ReleaseIntegrityError:
            staging.unlink(missing_ok=True)
            raise ReleaseIntegrityError(f"{url}: sha256 mismatch with the release manifest; "
                                        "the download was discarded") from None
        os.replace(staging, dest)
        if verify and cache is not None:
            cache.remember(dest, dest.stat(), entry["sha256"])
