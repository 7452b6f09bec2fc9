"""Release URLs as users type them: a release folder, or the database root above it.

A local database root is read through its ``latest`` file (:meth:`storage.release.Release.open`);
a URL must name the release folder itself (the one holding ``manifest.json``). When a command
given a URL fails, :func:`on_database_root` checks whether the URL was a database root that
serves ``latest`` and, if so, runs the command again on the newest release it names, saying so
in one ``note:`` line, so a root URL behaves as a root folder does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: ``latest`` holds one release name: anything longer is not a database root's.
MAX_LATEST_BYTES = 1024


def is_url(where: object) -> bool:
    """Whether ``where`` is an http(s) URL (not a local path)."""
    return isinstance(where, str) and where.startswith(("http://", "https://"))


def newest_release_url(url: str, timeout: float = 30.0) -> str | None:
    """``URL/releases/NAME`` when ``url`` is a database root whose ``latest`` names ``NAME``;
    ``None`` when it serves no readable ``latest`` (not a root, or unreachable)."""
    from storage.download import ReleaseDownloadError, check_release_name, release_url_base
    from vgnn_core.io.http import DownloadError, fetch_bytes, http_session

    try:
        base = release_url_base(url)
        body, _ = fetch_bytes(http_session(retries=2, backoff=0.5), f"{base}/latest",
                              max_bytes=MAX_LATEST_BYTES, timeout=timeout)
        name = check_release_name(body.decode("utf-8").strip())
    except (ReleaseDownloadError, DownloadError, UnicodeDecodeError, ValueError):
        return None
    return f"{base}/releases/{name}"


def on_database_root(run: Callable[[str], T], where: str, errors: tuple[type[BaseException], ...],
                     log: Callable[[str], None]) -> T:
    """``run(where)``; when that raises one of ``errors`` and ``where`` is the URL of a
    database root, ``run`` on its newest release instead (logging one ``note:`` line), else
    the original error."""
    try:
        return run(where)
    except errors:
        newest = newest_release_url(where) if is_url(where) else None
        if newest is None:
            raise
    log(f"note: {where} is a database root; reading its newest release {newest}")
    return run(newest)
