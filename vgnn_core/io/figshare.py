"""Download a public figshare collection (the Petretto 2018 DFPT data) into a local cache.

Speaks figshare's public REST API v2: ``GET /v2/collections/{id}/articles`` (paged),
``GET /v2/articles/{id}/files`` (name, size, ``computed_md5``, ``download_url``), then each
file's download URL, through :mod:`vgnn_core.io.http` (retries with back-off, resumed and
md5-checked downloads: a corrupted file is refused, never used).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import requests

from ..files import inside
from .http import DownloadError, download_verified, http_session

FIGSHARE_API = "https://api.figshare.com/v2"
#: Petretto et al., Sci. Data 5, 180065 (2018): doi:10.6084/m9.figshare.c.3938023
PETRETTO_COLLECTION = 3938023


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
        self.timeout = timeout
        self.session = http_session(retries, backoff)

    def _get(self, url: str, **kwargs) -> requests.Response:
        try:
            r = self.session.get(url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: giving up after {self.retries} retries ({type(exc).__name__})") from exc
        if r.status_code >= 400:
            raise DownloadError(f"{url}: HTTP {r.status_code}")
        return r

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
        return download_verified(self.session, remote.url, inside(dest_dir, remote.name), size=remote.size,
                                 digest=remote.md5 or None, algorithm="md5", timeout=self.timeout,
                                 attempts=self.retries)


def download_collection(
    dest_dir: str | Path,
    collection_id: int = PETRETTO_COLLECTION,
    pattern: str = "*",
    client: FigshareClient | None = None,
) -> list[Path]:
    """Download (or verify) every matching file of a figshare collection into ``dest_dir``."""
    client = client or FigshareClient()
    return [client.download(f, dest_dir) for f in client.collection_files(collection_id, pattern)]
