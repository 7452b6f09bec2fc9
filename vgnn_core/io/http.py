"""HTTP for every download of the project: one retrying session and one verified download.

:func:`http_session` is a ``requests.Session`` whose adapter retries connection errors, 429
and 5xx answers with exponential back-off (urllib3's ``Retry``, honouring ``Retry-After``;
file bodies are rewound between attempts). :func:`download_verified` fetches one file into
``<name>.part``, resuming with HTTP ``Range`` after a dropped connection, never accepting more
bytes than announced or running past a deadline, then checks its size and digest before
renaming it into place: a corrupted file is refused, never used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..files import file_digest

#: Statuses retried: rate limits and server-side failures.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class DownloadError(RuntimeError):
    """A file could not be fetched intact; the message names it and the cause."""


def http_session(retries: int = 5, backoff: float = 1.0, user_agent: str = "vgnn-phonondb") -> requests.Session:
    """A session that retries transient failures ``retries`` times with ``backoff``·2ⁿ s waits.

    After the last attempt a 429 / 5xx answer is returned (not raised), so callers can name it.
    """
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, other=0,
                  backoff_factor=backoff, status_forcelist=RETRY_STATUSES, allowed_methods=None,
                  respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def download_verified(
    session: requests.Session,
    url: str,
    dest: str | Path,
    size: int | None = None,
    digest: str | None = None,
    algorithm: str = "sha256",
    timeout: float = 60.0,
    attempts: int = 5,
    deadline_s: float = 3600.0,
    check: Callable[[requests.Response], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed), verified, renamed into place.

    ``size`` (bytes) bounds what is accepted; ``digest`` (hex, ``algorithm``) is checked when
    given. A leftover ``.part`` larger than ``size`` is discarded, never trusted. ``check`` may
    raise on a response (e.g. to name an authentication failure). Raises
    :class:`DownloadError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    name = dest.name
    if dest.is_file() and (size is None or dest.stat().st_size == size) and digest and \
            file_digest(dest, algorithm) == digest:
        return dest
    part = dest.with_name(name + ".part")
    give_up_at = time.monotonic() + deadline_s
    for attempt in range(attempts):
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        if size is not None and have == size:
            break
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
                if check is not None:
                    check(r)
                if r.status_code >= 400:
                    raise DownloadError(f"{name}: HTTP {r.status_code} from {url.split('?')[0]}")
                resumed = have and r.status_code == 206
                received = have if resumed else 0
                with open(part, "ab" if resumed else "wb") as fh:
                    for chunk in r.iter_content(1 << 16):
                        received += len(chunk)
                        if size is not None and received > size:
                            raise DownloadError(f"{name}: the server sent more than the announced {size} bytes")
                        if time.monotonic() > give_up_at:
                            raise DownloadError(f"{name}: not complete after {deadline_s:.0f} s")
                        fh.write(chunk)
        except requests.RequestException as exc:
            if log:
                log(f"{name}: interrupted ({type(exc).__name__}), resuming")
            time.sleep(min(30.0, 0.5 * 2**attempt))
            continue
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        if size is None or part.stat().st_size == size:
            break
    got = part.stat().st_size if part.exists() else 0
    if size is not None and got != size:
        raise DownloadError(f"{name}: received {got} of {size} bytes after {attempts} attempts")
    actual = file_digest(part, algorithm) if digest else None
    if digest and actual != digest:
        part.unlink()
        raise DownloadError(f"{name}: {algorithm} {actual} does not match the expected {digest}; "
                            "corrupted download refused")
    part.replace(dest)
    return dest
