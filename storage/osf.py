"""Publish a release to an OSF project and download it back, verified and resumable.

Listings come from the OSF API v2 (``GET {api}/nodes/{node}/files/osfstorage/{folder}/``,
JSON:API, paged through ``links.next``); uploads, folders and downloads go through OSF's
WaterButler file service (``PUT {wb}/v1/resources/{node}/providers/osfstorage/{folder}/
?kind=file&name=…`` for a new file, ``PUT …/{file}?kind=file`` for a new version,
``?kind=folder&name=…`` for a folder, ``GET …/{file}`` to download).

* Publishing uploads every file of a release — the manifest last, so a half-published
  release is never visible as complete — streaming each file from disk, and skips files
  already there with the same sha256. The token comes from ``OSF_TOKEN`` and is sent only in
  the ``Authorization`` header: never printed, logged or written.
* Downloading reads the manifest first, resumes partial ``.part`` files with HTTP ``Range``,
  checks every file's sha256 against the manifest and refuses a corrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests

from vgnn_core.files import file_digest
from vgnn_core.io.http import DownloadError, download_verified, http_session
from vgnn_core.settings import env

from .release import MANIFEST, Release

OSF_API = "https://api.osf.io/v2"
WATERBUTLER = "https://files.osf.io"


class OSFError(RuntimeError):
    """An OSF request failed for good (auth, not found, or retries exhausted)."""


class OSFClient:
    def __init__(
        self,
        token: str | None = None,
        api: str = OSF_API,
        waterbutler: str = WATERBUTLER,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 120.0,
        log: Callable[[str], None] | None = None,
    ):
        self.api, self.wb = api.rstrip("/"), waterbutler.rstrip("/")
        self.retries, self.timeout = retries, timeout
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

    # -- listing -------------------------------------------------------------------------
    def _wb_url(self, node: str, path: str) -> str:
        return f"{self.wb}/v1/resources/{node}/providers/osfstorage{path}"

    def list_folder(self, node: str, folder_path: str = "/") -> dict[str, dict]:
        """Entries of a folder by name: {"kind", "path", "size", "sha256"}."""
        url = f"{self.api}/nodes/{node}/files/osfstorage{folder_path}"
        out: dict[str, dict] = {}
        while url:
            body = self._request("GET", url).json()
            for item in body.get("data", []):
                a = item["attributes"]
                hashes = (a.get("extra") or {}).get("hashes") or {}
                out[a["name"]] = {"kind": a["kind"], "path": a["path"], "size": a.get("size"),
                                  "sha256": hashes.get("sha256")}
            url = (body.get("links") or {}).get("next")
        return out

    def ensure_folder(self, node: str, parent_path: str, name: str) -> str:
        """The WaterButler path of folder ``name`` under ``parent_path``, created if missing."""
        entry = self.list_folder(node, parent_path).get(name)
        if entry:
            return entry["path"]
        r = self._request("PUT", self._wb_url(node, parent_path), params={"kind": "folder", "name": name})
        return r.json()["data"]["attributes"]["path"]

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

    def download(self, node: str, entry: dict, dest: Path, sha256: str | None, size: int | None) -> None:
        """Download one file, resuming ``dest.part``; verify it before moving it into place."""
        url = self._wb_url(node, entry["path"])
        try:
            download_verified(self.session, url, dest, size=size, digest=sha256, timeout=self.timeout,
                              attempts=self.retries, check=lambda r: self._check("GET", url, r), log=self.log)
        except DownloadError as exc:
            raise OSFError(str(exc).replace("sha256", "sha256 (manifest)")) from exc


def _public(url: str) -> str:
    return url.split("?")[0]


def publish(release_path: str | Path, node: str, client: OSFClient | None = None) -> dict:
    """Upload a complete local release to ``releases/<name>/`` of an OSF project."""
    client = client or OSFClient()
    release = Release.open(release_path)
    root = Path(release.location)
    name = release.manifest["name"]
    uploaded, skipped = 0, 0
    folders: dict[str, str] = {}
    entries_cache: dict[str, dict] = {}
    for f in release.manifest["files"] + [{"path": MANIFEST, "sha256": None}]:
        parts = ["releases", name] + f["path"].split("/")[:-1]
        key = "/".join(parts)
        if key not in folders:
            folders[key] = client.ensure_folders(node, parts)
            entries_cache[key] = client.list_folder(node, folders[key])
        local = root / f["path"]
        existing = entries_cache[key].get(local.name)
        digest = f["sha256"] or file_digest(local)
        if existing and existing.get("sha256") == digest:
            skipped += 1
            continue
        client.upload(node, folders[key], local, existing)
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


def download_release(node: str, out_dir: str | Path, release: str | None = None, client: OSFClient | None = None) -> Path:
    """Fetch a published release (the newest when ``release`` is None) into ``out_dir``."""
    client = client or OSFClient()
    if release is None:
        names = sorted(n for n, e in client.list_folder(node, _find(client, node, ["releases"])["path"]).items()
                       if e["kind"] == "folder")
        if not names:
            raise OSFError(f"OSF project {node} has no releases")
        release = names[-1]
    out = Path(out_dir) / release
    manifest_entry = _find(client, node, ["releases", release, MANIFEST])
    tmp_manifest = out / (MANIFEST + ".remote")
    client.download(node, manifest_entry, tmp_manifest, sha256=None, size=None)
    manifest = json.loads(tmp_manifest.read_text())
    listings: dict = {}
    for f in manifest["files"]:
        dest = out / f["path"]
        if dest.is_file() and dest.stat().st_size == f["bytes"] and file_digest(dest) == f["sha256"]:
            continue
        entry = _find(client, node, ["releases", release] + f["path"].split("/"), listings)
        client.download(node, entry, dest, sha256=f["sha256"], size=f["bytes"])
    tmp_manifest.replace(out / MANIFEST)  # visible as complete only once every file checked out
    return out
