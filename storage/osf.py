"""Publish a release to an OSF project and download it back, verified, bounded and resumable.

Listings come from the OSF API v2 (``GET {api}/nodes/{node}/files/osfstorage/{folder}/``,
JSON:API, 100 entries a page, following ``links.next`` on the same host only); uploads,
folders and downloads go through OSF's WaterButler file service (``PUT {wb}/v1/resources/
{node}/providers/osfstorage/{folder}/?kind=file&name=…`` for a new file, ``PUT …/{file}?kind=
file`` for a new version, ``?kind=folder&name=…`` for a folder, ``GET …/{file}`` to download).
Every request retries 429 (honouring ``Retry-After``, capped) and 5xx with bounded back-off.

* Publishing uploads every file of a release — the manifest last, so a half-published
  release is never visible as complete — streaming each file from disk, and skips files
  already there with the same sha256. The token comes from ``OSF_TOKEN`` and is sent only in
  the ``Authorization`` header: never printed, logged or written.
* Downloading reads the manifest first, checks every name and path in it and in the listings
  (nothing is written outside the output folder), then fetches each file through
  :func:`storage.download.fetch_release`: bounded by its manifest size and a deadline,
  resumed with HTTP ``Range``, refused unless its sha256 matches, the manifest written last.
  The newest release is the one whose manifest was created last (its ``created_at``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import requests

from vgnn_core.files import file_digest, inside
from vgnn_core.io.http import (
    DownloadError,
    download_verified,
    fetch_bytes,
    http_session,
    parse_json,
)
from vgnn_core.settings import env

from .download import (
    MAX_MANIFEST_BYTES,
    ManifestFile,
    ReleaseDownloadError,
    check_release_name,
    fetch_release,
    parse_manifest,
)
from .release import MANIFEST, Release

OSF_API = "https://api.osf.io/v2"
WATERBUTLER = "https://files.osf.io"
#: Entries asked for per listing page (OSF's maximum).
PAGE_SIZE = 100
#: The largest listing page or API answer accepted (bytes).
MAX_LISTING_BYTES = 16 << 20
_NODE = re.compile(r"[A-Za-z0-9]{1,64}")
_WB_PATH = re.compile(r"/(?:[A-Za-z0-9_-]{1,128}/?)?")  # "/", "/<id>" or "/<id>/"


class OSFError(RuntimeError):
    """An OSF request failed for good (auth, not found, unsafe answer, or retries exhausted)."""


def _public(url: str) -> str:
    return url.split("?")[0]


def _origin(url: str) -> tuple[str, str]:
    p = urlparse(url)
    return p.scheme, p.netloc


def _check_node(node: str) -> str:
    if not isinstance(node, str) or not _NODE.fullmatch(node):
        raise OSFError(f"OSF project id {node!r}: must be letters and digits only")
    return node


def _check_entry(where: str, attributes: object) -> dict:
    """One listing entry as {"kind", "path", "size", "sha256", "modified"}, or OSFError."""
    a = attributes if isinstance(attributes, dict) else {}
    name, kind, path, size = a.get("name"), a.get("kind"), a.get("path"), a.get("size")
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise OSFError(f"listing of {where}: unsafe entry name {name!r} (not a single file or folder name)")
    if kind not in ("file", "folder"):
        raise OSFError(f"listing of {where}: {name!r} has kind {kind!r}, not file or folder")
    if not isinstance(path, str) or not _WB_PATH.fullmatch(path) or path == "/":
        raise OSFError(f"listing of {where}: {name!r} has an unsafe storage path {path!r}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise OSFError(f"listing of {where}: {name!r} has an invalid size {size!r}")
    hashes = (a.get("extra") or {}).get("hashes") or {} if isinstance(a.get("extra"), dict) else {}
    return {"name": name, "kind": kind, "path": path, "size": size,
            "sha256": hashes.get("sha256") if isinstance(hashes, dict) else None,
            "modified": a.get("date_modified")}


class OSFClient:
    """OSF API v2 + WaterButler over one retrying session.

    ``timeout`` (s) bounds each connect and socket read; ``deadline_s`` (s) each file
    download (default: from its size, see :func:`vgnn_core.io.http.default_deadline`).
    """

    def __init__(
        self,
        token: str | None = None,
        api: str = OSF_API,
        waterbutler: str = WATERBUTLER,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 120.0,
        deadline_s: float | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.api, self.wb = api.rstrip("/"), waterbutler.rstrip("/")
        self.retries, self.timeout, self.deadline_s = retries, timeout, deadline_s
        self.session = http_session(retries, backoff)
        token = token if token is not None else env("OSF_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.log = log or (lambda msg: None)

    # -- HTTP (the session retries 429 / 5xx and dropped connections) ----------------------
    def _check(self, method: str, url: str, r: requests.Response) -> None:
        if r.status_code in (401, 403):
            raise OSFError(f"{method} {_public(url)}: HTTP {r.status_code} — authentication failed "
                           "(is OSF_TOKEN set and allowed to write to this project?)")
        if r.status_code == 404:
            raise OSFError(f"{method} {_public(url)}: not found (HTTP 404)")

    def _request(self, method: str, url: str, body: Path | None = None, **kwargs) -> requests.Response:
        try:
            if body is not None:
                with open(body, "rb") as fh:  # a file body is rewound between attempts
                    r = self.session.request(method, url, data=fh, timeout=self.timeout, **kwargs)
            else:
                r = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise OSFError(f"{method} {_public(url)}: giving up after {self.retries} retries "
                           f"({type(exc).__name__})") from exc
        self._check(method, url, r)
        if r.status_code >= 400:
            raise OSFError(f"{method} {_public(url)}: giving up after {self.retries} retries (HTTP {r.status_code})")
        return r

    def _get(self, url: str, max_bytes: int, **kwargs) -> tuple[bytes, str]:
        """A bounded GET: body and content type, or OSFError."""
        try:
            return fetch_bytes(self.session, url, max_bytes, timeout=self.timeout, deadline_s=self.deadline_s,
                               check=lambda r: self._check("GET", url, r), **kwargs)
        except DownloadError as exc:
            raise OSFError(f"GET {exc}") from None

    def _json(self, body: bytes, ctype: str, url: str):
        try:
            return parse_json(body, ctype, f"OSF answer from {_public(url)}")
        except DownloadError as exc:
            raise OSFError(str(exc)) from None

    # -- listing -------------------------------------------------------------------------
    def _wb_url(self, node: str, path: str) -> str:
        if not _WB_PATH.fullmatch(path):
            raise OSFError(f"unsafe OSF storage path {path!r}")
        return f"{self.wb}/v1/resources/{_check_node(node)}/providers/osfstorage{path}"

    def list_folder(self, node: str, folder_path: str = "/") -> dict[str, dict]:
        """Entries of a folder by name: {"name", "kind", "path", "size", "sha256", "modified"}.

        Every page is checked: names must be single names, storage paths plain ids, and
        ``links.next`` must stay on the API's host.
        """
        if not _WB_PATH.fullmatch(folder_path):
            raise OSFError(f"unsafe OSF folder path {folder_path!r}")
        url: str | None = f"{self.api}/nodes/{_check_node(node)}/files/osfstorage{folder_path}"
        params: dict | None = {"page[size]": PAGE_SIZE}
        out: dict[str, dict] = {}
        seen: set[str] = set()
        while url:
            if url in seen:
                raise OSFError(f"listing of {folder_path}: links.next loops back to {_public(url)}")
            seen.add(url)
            body = self._json(*self._get(url, MAX_LISTING_BYTES, params=params), url)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise OSFError(f"listing of {folder_path}: the answer from {_public(url)} has no 'data' list")
            for item in data:
                entry = _check_entry(folder_path, item.get("attributes") if isinstance(item, dict) else None)
                out[entry["name"]] = entry
            nxt = (body.get("links") or {}).get("next") if isinstance(body.get("links"), dict) else None
            if nxt is not None and (not isinstance(nxt, str) or _origin(nxt) != _origin(self.api)):
                raise OSFError(f"listing of {folder_path}: links.next {nxt!r} leaves {_origin(self.api)[1]}")
            url, params = nxt, None  # the next link carries its own query
        return out

    def ensure_folder(self, node: str, parent_path: str, name: str) -> str:
        """The WaterButler path of folder ``name`` under ``parent_path``, created if missing."""
        entry = self.list_folder(node, parent_path).get(name)
        if entry:
            return entry["path"]
        url = self._wb_url(node, parent_path)
        r = self._request("PUT", url, params={"kind": "folder", "name": name})
        created = self._json(r.content, r.headers.get("Content-Type", ""), url)
        try:
            return _check_entry(parent_path, created["data"]["attributes"])["path"]
        except (KeyError, TypeError):
            raise OSFError(f"PUT {_public(url)}: the answer names no created folder") from None

    def ensure_folders(self, node: str, parts: list[str]) -> str:
        path = "/"
        for part in parts:
            path = self.ensure_folder(node, path, part)
        return path

    # -- upload / download ---------------------------------------------------------------
    def upload(self, node: str, folder_path: str, local: Path, existing: dict | None) -> None:
        if existing:
            self._request("PUT", self._wb_url(node, existing["path"]), body=local, params={"kind": "file"})
        else:
            self._request("PUT", self._wb_url(node, folder_path), body=local, params={"kind": "file", "name": local.name})

    def read(self, node: str, entry: dict, max_bytes: int) -> tuple[bytes, str]:
        """A small file's bytes (at most ``max_bytes``) and content type."""
        return self._get(self._wb_url(node, entry["path"]), max_bytes)

    def download(self, node: str, entry: dict, dest: Path, sha256: str | None, size: int | None) -> None:
        """Download one file through ``dest.part``, bounded by ``size``; verify it, move it into place."""
        url = self._wb_url(node, entry["path"])
        try:
            download_verified(self.session, url, dest, size=size, digest=sha256, timeout=self.timeout,
                              attempts=self.retries, deadline_s=self.deadline_s,
                              check=lambda r: self._check("GET", url, r), log=self.log)
        except DownloadError as exc:
            raise OSFError(str(exc).replace("sha256", "sha256 (manifest)")) from exc


def publish(release_path: str | Path, node: str, client: OSFClient | None = None) -> dict:
    """Upload a complete local release to ``releases/<name>/`` of an OSF project."""
    client = client or OSFClient()
    try:
        release = Release.open(release_path)
    except ValueError as exc:  # a manifest entry the release module refuses
        raise OSFError(f"{release_path}: {exc}") from None
    root = Path(release.location)
    try:
        name = check_release_name(release.manifest.get("name"))
        local = {f["path"]: inside(root, f["path"]) for f in release.manifest["files"]}
    except ValueError as exc:
        raise OSFError(f"{root / MANIFEST}: {exc}") from None
    uploaded, skipped = 0, 0
    folders: dict[str, str] = {}
    entries_cache: dict[str, dict] = {}
    for f in release.manifest["files"] + [{"path": MANIFEST, "sha256": None}]:
        parts = ["releases", name] + f["path"].split("/")[:-1]
        key = "/".join(parts)
        if key not in folders:
            folders[key] = client.ensure_folders(node, parts)
            entries_cache[key] = client.list_folder(node, folders[key])
        path = local.get(f["path"], root / MANIFEST)
        existing = entries_cache[key].get(path.name)
        digest = f["sha256"] or file_digest(path)
        if existing and existing.get("sha256") == digest:
            skipped += 1
            continue
        client.upload(node, folders[key], path, existing)
        uploaded += 1
        client.log(f"uploaded {f['path']}")
    return {"release": name, "uploaded": uploaded, "skipped": skipped}


def _find(client: OSFClient, node: str, parts: list[str], cache: dict | None = None) -> dict:
    """The entry at ``parts`` (folder names, then a file name), listing each folder once."""
    cache = {} if cache is None else cache
    path = "/"
    entry = None
    for part in parts:
        if path not in cache:
            cache[path] = client.list_folder(node, path)
        entry = cache[path].get(part)
        if entry is None:
            raise OSFError(f"{'/'.join(parts)}: not found in OSF project {node}")
        path = entry["path"]
    return entry


def _manifest_entry(client: OSFClient, node: str, release: str, cache: dict) -> dict:
    entry = _find(client, node, ["releases", release, MANIFEST], cache)
    if entry["kind"] != "file":
        raise OSFError(f"releases/{release}/{MANIFEST}: not a file in OSF project {node}")
    return entry


def _read_manifest(client: OSFClient, node: str, release: str, entry: dict):
    size = entry["size"] if isinstance(entry["size"], int) else MAX_MANIFEST_BYTES
    body, ctype = client.read(node, entry, min(size, MAX_MANIFEST_BYTES))
    return parse_manifest(body, ctype, f"OSF {node} releases/{release}/{MANIFEST}")


def _when(value: object) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def newest_release(client: OSFClient, node: str, cache: dict | None = None):
    """(name, manifest) of the release whose manifest was created last.

    Folders that are not release names or have no readable manifest (a half-published
    release) are skipped. The manifest's ``created_at`` orders them; where it is missing,
    OSF's ``date_modified`` of the manifest file.
    """
    cache = {} if cache is None else cache
    folders = client.list_folder(node, _find(client, node, ["releases"], cache)["path"])
    best, best_key = None, None
    for name, entry in sorted(folders.items()):
        if entry["kind"] != "folder":
            continue
        try:
            check_release_name(name)
            m_entry = _manifest_entry(client, node, name, cache)
            manifest = _read_manifest(client, node, name, m_entry)
        except (ValueError, OSFError, ReleaseDownloadError) as exc:
            client.log(f"releases/{name}: skipped ({exc})")
            continue
        when = manifest.created_at or _when(m_entry.get("modified"))
        key = (when or dt.datetime.min.replace(tzinfo=dt.timezone.utc), name)
        if best_key is None or key > best_key:
            best, best_key = (name, manifest), key
    if best is None:
        raise OSFError(f"OSF project {node} has no complete releases")
    return best


def download_release(node: str, out_dir: str | Path, release: str | None = None, client: OSFClient | None = None) -> Path:
    """Fetch a published release (the newest when ``release`` is None) into ``out_dir/<release>``.

    Raises :class:`OSFError` with a one-line cause; nothing is written outside ``out_dir``.
    """
    client = client or OSFClient()
    _check_node(node)
    cache: dict = {}
    try:
        if release is None:
            release, manifest = newest_release(client, node, cache)
        else:
            check_release_name(release)
            manifest = _read_manifest(client, node, release, _manifest_entry(client, node, release, cache))
        target = inside(out_dir, release)

        def fetch(f: ManifestFile, dest: Path) -> None:
            entry = _find(client, node, ["releases", release] + f.path.split("/"), cache)
            if entry["kind"] != "file":
                raise OSFError(f"releases/{release}/{f.path}: not a file in OSF project {node}")
            client.download(node, entry, dest, sha256=f.sha256, size=f.bytes)

        return fetch_release(manifest, target, fetch, client.log)
    except (ValueError, ReleaseDownloadError) as exc:
        raise OSFError(str(exc)) from None
