"""HTTP for every download of the project: one retrying session and bounded, verified reads.

:func:`http_session` is a ``requests.Session`` whose adapter retries connection errors, 429
and 5xx answers with exponential back-off (urllib3's ``Retry``, honouring ``Retry-After`` up
to :data:`MAX_RETRY_AFTER_S`; file bodies are rewound between attempts).

:func:`download_verified` fetches one file into ``<name>.part`` and renames it into place only
once its size and digest check out. Every read is bounded three ways: never more bytes than
announced (the read stops at the first byte too many, and the ``.part`` is removed), a read
timeout per socket read, and an overall deadline per file (by default derived from its size).
A dropped connection is resumed with HTTP ``Range``; a ``.part`` left by an earlier run is
resumed only when the result can be verified, and a resumed file that fails verification is
downloaded once more from the start, so a stale ``.part`` never blocks a retry.

:func:`fetch_bytes` and :func:`parse_json` read small documents (manifests, listings) under
the same bounds and name what came back when it is not JSON (an HTML error page, say).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..files import file_digest

#: Statuses retried: rate limits and server-side failures.
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: The longest ``Retry-After`` honoured (s); a longer one is shortened to this.
MAX_RETRY_AFTER_S = 120.0
#: Default per-file deadline: this floor (s) plus the size at :data:`MIN_RATE_BPS`.
MIN_DEADLINE_S = 120.0
#: The slowest transfer rate (bytes/s) the default deadline allows for.
MIN_RATE_BPS = 50_000
#: Cap on a document read by :func:`fetch_bytes` when no size is known (bytes).
MAX_DOCUMENT_BYTES = 64 << 20

_CHUNK = 1 << 16
#: Network failures that a retry may cure (requests wraps some, raw reads raise urllib3's).
_TRANSIENT = (requests.RequestException, urllib3.exceptions.HTTPError)


class DownloadError(RuntimeError):
    """A file could not be fetched intact; the message names it and the cause."""


class _BoundedRetry(Retry):
    """urllib3's ``Retry`` with ``Retry-After`` capped at :data:`MAX_RETRY_AFTER_S`."""

    def get_retry_after(self, response):  # type: ignore[override]
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER_S)


def http_session(retries: int = 5, backoff: float = 1.0, user_agent: str = "vgnn-phonondb") -> requests.Session:
    """A session that retries transient failures ``retries`` times with ``backoff``·2ⁿ s waits.

    429 and 5xx answers are retried (any method, file bodies rewound), honouring
    ``Retry-After`` up to :data:`MAX_RETRY_AFTER_S`. After the last attempt the 429 / 5xx
    answer is returned (not raised), so callers can name it.
    """
    retry = _BoundedRetry(total=retries, connect=retries, read=retries, status=retries, other=0,
                          backoff_factor=backoff, status_forcelist=RETRY_STATUSES, allowed_methods=None,
                          respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def default_deadline(size: int | None) -> float:
    """Seconds allowed for a whole file of ``size`` bytes: 120 s plus the size at 50 kB/s."""
    return MIN_DEADLINE_S + (size or 0) / MIN_RATE_BPS


def _public(url: str) -> str:
    return url.split("?")[0]


def _pump(r: requests.Response, write: Callable[[bytes], None], allowed: int | None, give_up_at: float,
          deadline_s: float, name: str) -> int:
    """Copy the body of ``r`` to ``write`` as it arrives; the bytes copied.

    Stops with :class:`DownloadError` at the first byte past ``allowed`` (before writing it)
    and at the first read after ``give_up_at`` (``time.monotonic``). Reads return whatever
    the socket has (``read1``), so a trickling server cannot hold a read open past the
    deadline by more than the read timeout.
    """
    received = 0
    while True:
        if time.monotonic() > give_up_at:
            raise DownloadError(f"{name}: not complete after the {deadline_s:g} s deadline")
        chunk = r.raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return received
        received += len(chunk)
        if allowed is not None and received > allowed:
            raise DownloadError(f"{name}: the server sent more than the announced {allowed} bytes")
        write(chunk)


def _announced(r: requests.Response) -> int | None:
    try:
        return int(r.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _range_start(r: requests.Response, default: int) -> int | None:
    """The first byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``).

    ``default`` when the header is missing (the single range asked for; the digest check
    catches a server that got it wrong), ``None`` when it cannot be read.
    """
    value = r.headers.get("Content-Range")
    if value is None:
        return default
    try:
        unit, span = value.split(" ", 1)
        return int(span.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _cannot_write(name: str, path: Path, exc: OSError) -> DownloadError:
    return DownloadError(f"{name}: cannot write {path}: {exc.strerror or exc}")


def _writer(fh, name: str, part: Path) -> Callable[[bytes], None]:
    """``fh.write`` turning a disk failure (full, read-only) into a one-line DownloadError."""

    def write(chunk: bytes) -> None:
        try:
            fh.write(chunk)
        except OSError as exc:
            raise _cannot_write(name, part, exc) from exc

    return write


def download_verified(
    session: requests.Session,
    url: str,
    dest: str | Path,
    size: int | None = None,
    digest: str | None = None,
    algorithm: str = "sha256",
    timeout: float = 60.0,
    attempts: int = 5,
    deadline_s: float | None = None,
    max_bytes: int | None = None,
    check: Callable[[requests.Response], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, verified, renamed into place.

    ``size`` (bytes) is the exact size expected and bounds what is accepted (``max_bytes``
    bounds it when the size is unknown); ``digest`` (hex, ``algorithm``) is checked when
    given. ``timeout`` (s) bounds each connect and socket read, ``deadline_s`` (s) the whole
    file, all attempts together (default :func:`default_deadline` of the size). ``check``
    may raise on a response (e.g. to name an authentication failure). An existing ``dest``
    with the right digest is kept without a request. Raises :class:`DownloadError`; a ``.part``
    that broke a bound or failed verification is removed, an incomplete one (network failures
    after every attempt) is kept for a later run to resume when a digest can check it.
    """
    dest = Path(dest)
    name = dest.name
    limit = size if size is not None else max_bytes
    deadline = deadline_s if deadline_s is not None else default_deadline(limit)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(name, dest.parent, exc) from exc
    if dest.is_file() and digest and (size is None or dest.stat().st_size == size) and \
            file_digest(dest, algorithm) == digest:
        return dest
    part = dest.with_name(name + ".part")
    if size is None or digest is None:
        _discard(part)  # an earlier run's bytes are resumed only when the result can be verified
    give_up_at = time.monotonic() + deadline
    for fresh in (False, True):
        resumed = _fetch(session, url, part, size, limit, timeout, attempts, give_up_at, deadline, check, log)
        got = _size(part)
        if size is not None and got != size:
            if digest is None:  # kept for a later run only when that run can verify the result
                _discard(part)
            raise DownloadError(f"{name}: received {got} of {size} bytes after {attempts} attempts")
        actual = file_digest(part, algorithm) if digest else None
        if actual == digest:
            try:
                part.replace(dest)
            except OSError as exc:
                raise _cannot_write(name, dest, exc) from exc
            return dest
        _discard(part)
        if fresh or not resumed:
            raise DownloadError(f"{name}: {algorithm} {actual} does not match the expected {digest}; "
                                "corrupted download refused")
        if log:
            log(f"{name}: the resumed file failed its {algorithm} check; downloading it again from the start")
    raise AssertionError("unreachable")


def _fetch(session: requests.Session, url: str, part: Path, size: int | None, limit: int | None,
           timeout: float, attempts: int, give_up_at: float, deadline: float,
           check: Callable[[requests.Response], None] | None, log: Callable[[str], None] | None) -> bool:
    """Fill ``part`` (resuming what is there); whether any bytes came from before a resume."""
    name = part.name[: -len(".part")]
    resumed = False
    for attempt in range(attempts):
        have = _size(part)
        if size is not None and have > size:
            _discard(part)
            have = 0
        if size is not None and have == size:
            return resumed or have > 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
                if check is not None:
                    check(r)
                if have and r.status_code == 416:  # the server's file is not what .part began
                    _discard(part)
                    continue
                if r.status_code >= 400:
                    raise DownloadError(f"{name}: HTTP {r.status_code} from {_public(url)}")
                start = have if (have and r.status_code == 206 and _range_start(r, have) == have) else 0
                if r.status_code == 206 and start == 0:  # a range we did not ask for: start over
                    _discard(part)
                    continue
                announced = _announced(r)
                if limit is not None and announced is not None and start + announced > limit:
                    raise DownloadError(f"{name}: the server announced {start + announced} bytes, "
                                        f"more than the expected {limit}")
                resumed = resumed or start > 0
                try:
                    fh = open(part, "ab" if start else "wb")
                except OSError as exc:
                    raise _cannot_write(name, part, exc) from exc
                with fh:
                    allowed = None if limit is None else limit - start
                    _pump(r, _writer(fh, name, part), allowed, give_up_at, deadline, name)
        except _TRANSIENT as exc:
            if time.monotonic() > give_up_at:
                _discard(part)
                raise DownloadError(f"{name}: not complete after the {deadline:g} s deadline") from exc
            if log:
                log(f"{name}: interrupted ({type(exc).__name__}), resuming")
            time.sleep(min(30.0, 0.5 * 2**attempt, max(0.0, give_up_at - time.monotonic())))
            continue
        except DownloadError:
            _discard(part)
            raise
        if size is None or _size(part) == size:
            break
    return resumed


def fetch_bytes(
    session: requests.Session,
    url: str,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    timeout: float = 60.0,
    deadline_s: float | None = None,
    check: Callable[[requests.Response], None] | None = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """The body (at most ``max_bytes``) and ``Content-Type`` of a GET, within ``deadline_s`` s.

    ``kwargs`` go to ``session.get`` (``params``, ``headers``). Raises :class:`DownloadError`
    on an HTTP error, a network failure after the session's retries, a body over the bound
    or past the deadline (default :func:`default_deadline` of ``max_bytes``, at most 10 min).
    """
    deadline = deadline_s if deadline_s is not None else min(600.0, default_deadline(max_bytes))
    give_up_at = time.monotonic() + deadline
    what = _public(url)
    try:
        with session.get(url, stream=True, timeout=timeout, **kwargs) as r:
            if check is not None:
                check(r)
            if r.status_code >= 400:
                raise DownloadError(f"{what}: HTTP {r.status_code}")
            announced = _announced(r)
            if announced is not None and announced > max_bytes:
                raise DownloadError(f"{what}: the server announced {announced} bytes, more than the "
                                    f"{max_bytes} accepted")
            parts: list[bytes] = []
            _pump(r, parts.append, max_bytes, give_up_at, deadline, what)
            return b"".join(parts), r.headers.get("Content-Type", "")
    except _TRANSIENT as exc:
        raise DownloadError(f"{what}: {type(exc).__name__} (network failure after retries)") from exc


def parse_json(body: bytes, content_type: str, what: str) -> Any:
    """``body`` decoded as JSON, or :class:`DownloadError` naming ``what`` and what came instead."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        head = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        kind = content_type.split(";")[0].strip() or "no content type"
        raise DownloadError(f"{what}: not JSON ({kind}, begins {head!r})") from None
