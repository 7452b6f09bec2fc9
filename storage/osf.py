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
import os
import time
from collections.abc import Callable
from pathlib import Path

import requests

from vgnn_core.hashing import file_digest

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
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.session = requests.Session()
        token = token if token is not None else os.environ.get("OSF_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.log = log or (lambda msg: None)

    # -- HTTP with retries ---------------------------------------------------------------
    def _request(self, method: str, url: str, data_factory=None, **kwargs) -> requests.Response:
        last = ""
        for attempt in range(self.retries):
            try:
                data = data_factory() if data_factory else None
                r = self.session.request(method, url, data=data, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                last = type(exc).__name__
            else:
                if r.status_code in (401, 403):
                    raise OSFError(f"{method} {_public(url)}: HTTP {r.status_code} — authentication failed "
                                   "(is OSF_TOKEN set and allowed to write to this project?)")
                if r.status_code == 404:
                    raise OSFError(f"{method} {_public(url)}: not found (HTTP 404)")
                if r.status_code < 500 and r.status_code != 429:
                    r.raise_for_status()
                    return r
                last = f"HTTP {r.status_code}"
            finally:
                if data_factory and data is not None and hasattr(data, "close"):
                    data.close()
            time.sleep(self.backoff * 2**attempt)
        raise OSFError(f"{method} {_public(url)}: giving up after {self.retries} attempts ({last})")

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
        def body():
            return open(local, "rb")  # streamed by requests, reopened on each retry

        if existing:
            self._request("PUT", self._wb_url(node, existing["path"]), data_factory=body, params={"kind": "file"})
        else:
            self._request("PUT", self._wb_url(node, folder_path), data_factory=body,
                          params={"kind": "file", "name": local.name})

    def download(self, node: str, entry: dict, dest: Path, sha256: str | None, size: int | None) -> None:
        """Download one file, resuming ``dest.part``; verify it before moving it into place."""
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = self._wb_url(node, entry["path"])
        for attempt in range(self.retries):
            have = part.stat().st_size if part.exists() else 0
            if size is not None and have >= size:
                break
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with self._request("GET", url, headers=headers, stream=True) as r:
                    mode = "ab" if have and r.status_code == 206 else "wb"
                    with open(part, mode) as fh:
                        for chunk in r.iter_content(1 << 16):
                            fh.write(chunk)
            except (requests.RequestException, OSFError) as exc:
                self.log(f"{dest.name}: interrupted ({type(exc).__name__}), resuming")
                time.sleep(self.backoff * 2**attempt)
                continue
            if size is None or part.stat().st_size >= size:
                break
        got = part.stat().st_size if part.exists() else 0
        if size is not None and got != size:
            raise OSFError(f"{dest.name}: received {got} of {size} bytes")
        if sha256 and _sha256(part) != sha256:
            part.unlink()
            raise OSFError(f"{dest.name}: sha256 does not match the manifest — corrupted download refused")
        part.replace(dest)


def _public(url: str) -> str:
    return url.split("?")[0]


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


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
        digest = f["sha256"] or _sha256(local)
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
        if dest.is_file() and dest.stat().st_size == f["bytes"] and _sha256(dest) == f["sha256"]:
            continue
        entry = _find(client, node, ["releases", release] + f["path"].split("/"), listings)
        client.download(node, entry, dest, sha256=f["sha256"], size=f["bytes"])
    tmp_manifest.replace(out / MANIFEST)  # visible as complete only once every file checked out
    return out
