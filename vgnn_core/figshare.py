"""Download a public figshare collection (the Petretto 2018 DFPT data) into a local cache.

Speaks figshare's public REST API v2: ``GET /v2/collections/{id}/articles`` (paged),
``GET /v2/articles/{id}/files`` (name, size, ``computed_md5``, ``download_url``), then each
file's download URL. Downloads resume with HTTP ``Range`` after an interruption, 5xx answers
and dropped connections are retried with back-off, and every file is checked against its
md5 before it is moved into place — a corrupted file is refused, never used.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from .hashing import file_digest

FIGSHARE_API = "https://api.figshare.com/v2"
#: Petretto et al., Sci. Data 5, 180065 (2018): doi:10.6084/m9.figshare.c.3938023
PETRETTO_COLLECTION = 3938023


class DownloadError(RuntimeError):
    """A file could not be fetched intact."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    md5: str
    url: str


class FigshareClient:
    """Minimal read-only client of figshare's public API."""

    def __init__(self, api: str = FIGSHARE_API, retries: int = 5, backoff: float = 1.0, timeout: float = 60.0):
        self.api = api.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "vgnn-phonondb"

    def _get(self, url: str, **kwargs) -> requests.Response:
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                r = self.session.get(url, timeout=self.timeout, **kwargs)
                if r.status_code < 500 and r.status_code != 429:
                    r.raise_for_status()
                    return r
                last = DownloadError(f"{url}: HTTP {r.status_code}")
            except requests.HTTPError as exc:
                raise DownloadError(f"{url}: {exc}") from exc
            except requests.RequestException as exc:
                last = exc
            time.sleep(self.backoff * 2**attempt)
        raise DownloadError(f"{url}: giving up after {self.retries} attempts ({last})")

    def collection_files(self, collection_id: int, pattern: str = "*") -> list[RemoteFile]:
        """Every file of every article in a collection whose name matches ``pattern``."""
        files: list[RemoteFile] = []
        page = 1
        while True:
            articles = self._get(
                f"{self.api}/collections/{collection_id}/articles", params={"page": page, "page_size": 100}
            ).json()
            if not articles:
                break
            for article in articles:
                for f in self._get(f"{self.api}/articles/{article['id']}/files").json():
                    if f.get("is_link_only") or not fnmatch.fnmatch(f["name"], pattern):
                        continue
                    files.append(RemoteFile(f["name"], int(f["size"]), f.get("computed_md5") or f.get("supplied_md5", ""), f["download_url"]))
            if len(articles) < 100:
                break
            page += 1
        return files

    def download(self, remote: RemoteFile, dest_dir: str | Path) -> Path:
        """Fetch one file (resuming a partial ``.part``), verify its md5, move it into place."""
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / remote.name
        if final.is_file() and final.stat().st_size == remote.size and _md5(final) == remote.md5:
            return final
        part = dest_dir / (remote.name + ".part")
        for attempt in range(self.retries):
            have = part.stat().st_size if part.exists() else 0
            if have > remote.size:
                part.unlink()
                have = 0
            if have < remote.size:
                headers = {"Range": f"bytes={have}-"} if have else {}
                try:
                    with self._get(remote.url, headers=headers, stream=True) as r:
                        mode = "ab" if have and r.status_code == 206 else "wb"
                        with open(part, mode) as fh:
                            for chunk in r.iter_content(1 << 16):
                                fh.write(chunk)
                except (requests.RequestException, DownloadError):
                    time.sleep(self.backoff * 2**attempt)
                    continue
            if part.stat().st_size == remote.size:
                break
            time.sleep(self.backoff * 2**attempt)
        size = part.stat().st_size if part.exists() else 0
        if size != remote.size:
            raise DownloadError(f"{remote.name}: got {size} of {remote.size} bytes after {self.retries} attempts")
        digest = _md5(part)
        if remote.md5 and digest != remote.md5:
            part.unlink()
            raise DownloadError(f"{remote.name}: md5 {digest} does not match figshare's {remote.md5}; file removed")
        part.replace(final)
        return final


def _md5(path: Path) -> str:
    return file_digest(path, "md5")


def download_collection(
    dest_dir: str | Path,
    collection_id: int = PETRETTO_COLLECTION,
    pattern: str = "*",
    client: FigshareClient | None = None,
) -> list[Path]:
    """Download (or verify) every matching file of a figshare collection into ``dest_dir``."""
    client = client or FigshareClient()
    return [client.download(f, dest_dir) for f in client.collection_files(collection_id, pattern)]
