"""Download a published release into a local folder, safely, from any host that serves files.

A release folder served over HTTP(S) — OSF, a CDN, ``python -m http.server`` — is read through
its ``manifest.json``, which lists every file with its size and sha256. Everything read from
the remote side is untrusted:

* the release name must be one safe path component (:func:`check_release_name`) and every
  manifest path must resolve inside the release folder (:func:`vgnn_core.files.inside`); all
  of them are checked before the first byte is written;
* each file is bounded by its manifest size and a deadline, lands under ``<name>.part`` and is
  renamed into place once its sha256 matches (:func:`vgnn_core.io.http.download_verified`);
* the manifest is written last, atomically, so a half download is never a visible release
  (an older manifest in the same folder is removed first when the release changes).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import requests

from vgnn_core.files import atomic_write, file_digest, inside
from vgnn_core.io.http import (
    DownloadError,
    download_verified,
    fetch_bytes,
    http_session,
    parse_json,
)

from .release import MANIFEST

#: A release name: one path component of letters, digits, ``.``, ``_`` and ``-``.
RELEASE_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
#: The largest manifest accepted (bytes).
MAX_MANIFEST_BYTES = 64 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ReleaseDownloadError(RuntimeError):
    """A release could not be downloaded safely and intact; the message names the cause."""


def check_release_name(name: object) -> str:
    """``name`` if it is a safe release name (one path component), else ``ValueError``."""
    if not isinstance(name, str) or not RELEASE_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"release name {name!r}: must be one path component of letters, digits, "
                         "'.', '_' or '-' (not '.' or '..')")
    return name


@dataclass(frozen=True)
class ManifestFile:
    """One file a manifest lists: its path inside the release, size (bytes) and sha256 (hex)."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RemoteManifest:
    """A manifest read from a remote release, checked for shape; ``body`` is its exact bytes."""

    name: str | None
    created_at: dt.datetime | None
    files: tuple[ManifestFile, ...]
    body: bytes


def _created_at(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def parse_manifest(body: bytes, content_type: str, where: str) -> RemoteManifest:
    """The manifest in ``body`` (from ``where``), or :class:`ReleaseDownloadError` naming the flaw."""
    try:
        data = parse_json(body, content_type, where)
    except DownloadError as exc:
        raise ReleaseDownloadError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ReleaseDownloadError(f"{where}: not a release manifest (no 'files' list)")
    files, seen = [], set()
    for k, f in enumerate(data["files"]):
        if not isinstance(f, dict):
            raise ReleaseDownloadError(f"{where}: files[{k}] is not an object")
        path, size, digest = f.get("path"), f.get("bytes"), f.get("sha256")
        if not isinstance(path, str) or not path:
            raise ReleaseDownloadError(f"{where}: files[{k}] has no path")
        if path == MANIFEST or path.endswith(".part") or path in seen:
            raise ReleaseDownloadError(f"{where}: unsafe path {path!r}: the manifest itself, a .part name "
                                       "or a duplicate")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ReleaseDownloadError(f"{where}: {path}: 'bytes' is not a byte count ({size!r})")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ReleaseDownloadError(f"{where}: {path}: 'sha256' is not a sha256 hex digest")
        seen.add(path)
        files.append(ManifestFile(path, size, digest))
    name = data.get("name")
    return RemoteManifest(name if isinstance(name, str) else None, _created_at(data.get("created_at")),
                          tuple(files), body)


def _intact(path: Path, f: ManifestFile) -> bool:
    return path.is_file() and path.stat().st_size == f.bytes and file_digest(path) == f.sha256


def fetch_release(
    manifest: RemoteManifest,
    target: Path,
    fetch: Callable[[ManifestFile, Path], None],
    log: Callable[[str], None] | None = None,
) -> Path:
    """Fill the release folder ``target`` with the files of ``manifest``, then the manifest.

    ``fetch(file, dest)`` downloads one file to ``dest`` (verified). Files already intact are
    kept. Every destination is resolved and checked to lie inside ``target`` before anything
    is written. Raises :class:`ReleaseDownloadError`.
    """
    try:
        plan = [(f, inside(target, f.path)) for f in manifest.files]
    except ValueError as exc:
        raise ReleaseDownloadError(f"manifest of {target.name}: {exc}") from None
    visible = target / MANIFEST
    try:
        target.mkdir(parents=True, exist_ok=True)
        if visible.is_file() and visible.read_bytes() != manifest.body:
            visible.unlink()  # the release changes: not visible as complete until it is again
        for f, dest in plan:
            if _intact(dest, f):
                continue
            fetch(f, dest)
            if log:
                log(f"downloaded {f.path}")
        if not (visible.is_file() and visible.read_bytes() == manifest.body):
            atomic_write(visible, lambda fh: fh.write(manifest.body))
    except DownloadError as exc:
        raise ReleaseDownloadError(str(exc)) from None
    except OSError as exc:
        raise ReleaseDownloadError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target


def release_url_base(url: str) -> str:
    """The release folder of ``url`` (the folder itself or its ``manifest.json``), no trailing /."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ReleaseDownloadError(f"{url}: not an http(s) URL of a release folder")
    base = url.split("?")[0].split("#")[0].rstrip("/")
    return base[: -len(MANIFEST) - 1] if base.endswith("/" + MANIFEST) else base


def download_release_url(
    url: str,
    out_dir: str | Path,
    session: requests.Session | None = None,
    timeout: float = 60.0,
    attempts: int = 5,
    deadline_s: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download the release folder at ``url`` into ``out_dir/<name>``, verified; that folder.

    ``name`` is the manifest's ``name`` (else the URL's last part). ``timeout`` (s) bounds each
    socket read, ``deadline_s`` (s) each file (default: from its size). Raises
    :class:`ReleaseDownloadError` with a one-line cause.
    """
    base = release_url_base(url)
    session = session or http_session()
    where = f"{base}/{MANIFEST}"
    try:
        body, ctype = fetch_bytes(session, where, MAX_MANIFEST_BYTES, timeout=timeout, deadline_s=deadline_s)
    except DownloadError as exc:
        raise ReleaseDownloadError(str(exc)) from None
    manifest = parse_manifest(body, ctype, where)
    try:
        name = check_release_name(manifest.name if manifest.name is not None
                                  else unquote(base.rsplit("/", 1)[-1]))
        target = inside(out_dir, name)
    except ValueError as exc:
        raise ReleaseDownloadError(f"{where}: {exc}") from None

    def fetch(f: ManifestFile, dest: Path) -> None:
        download_verified(session, f"{base}/{quote(f.path)}", dest, size=f.bytes, digest=f.sha256,
                          timeout=timeout, attempts=attempts, deadline_s=deadline_s, log=log)

    return fetch_release(manifest, target, fetch, log)
