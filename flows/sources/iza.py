"""Zeolite frameworks from the IZA Structure Commission's database, by framework code.

``https://europe.iza-structure.org/IZA-SC/cif/<CODE>.cif`` serves the idealised SiO₂ framework
of each type (conventional cell). Files are cached (``$VGNN_CACHE_DIR/iza``), checked to be
CIFs with a cell and atoms before they are kept, and requests are retried on 5xx / network
errors. ``VGNN_IZA_URL`` points at a mirror (the tests run a local one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import requests

from vgnn_core.files import atomic_write
from vgnn_core.io.http import RETRY_STATUSES, http_session
from vgnn_core.settings import env

IZA_CIF_URL = "https://europe.iza-structure.org/IZA-SC/cif/"
CODE = re.compile(r"^-?[A-Z]{3}$")


class IZAError(RuntimeError):
    """A framework could not be downloaded; the message names the code and the cause."""


def framework_url(code: str, base_url: str | None = None) -> str:
    base = base_url or env("VGNN_IZA_URL") or IZA_CIF_URL
    return base.rstrip("/") + f"/{code}.cif"


def download_frameworks(
    codes: Sequence[str],
    dest: str | Path | None = None,
    base_url: str | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    session: requests.Session | None = None,
) -> Path:
    """Download the CIFs of framework ``codes`` (e.g. ``["FAU", "LTA"]``) into ``dest``.

    Already cached files are not fetched again. Raises :class:`IZAError` naming every code
    that failed, after fetching all the others.
    """
    from vgnn_core.settings import cache_dir

    dest = Path(dest) if dest else cache_dir() / "iza"
    dest.mkdir(parents=True, exist_ok=True)
    session = session or http_session(retries, backoff_s)
    errors = []
    for raw in codes:
        code = raw.strip().lstrip("*").upper()
        if not CODE.match(code):
            errors.append(f"{raw}: not an IZA framework code (three capital letters, e.g. LTA)")
            continue
        target = dest / f"{code}.cif"
        if target.is_file():
            continue
        try:
            text = _fetch(session, framework_url(code, base_url), retries)
        except IZAError as exc:
            errors.append(f"{code}: {exc}")
            continue
        if "_cell_length_a" not in text or "_atom_site" not in text:
            errors.append(f"{code}: the server's answer is not a framework CIF")
            continue
        atomic_write(target, lambda fh, t=text: fh.write(t.encode()))
    if errors:
        raise IZAError("; ".join(errors))
    return dest


def _fetch(session: requests.Session, url: str, retries: int) -> str:
    """The text at ``url``; the session has already retried transient failures."""
    try:
        response = session.get(url, timeout=60)
    except requests.RequestException as exc:
        raise IZAError(f"{url}: network error: {exc} after {retries + 1} attempts") from exc
    if response.status_code == 200:
        return response.text
    if response.status_code == 404:
        raise IZAError(f"no such framework at {url} (HTTP 404)")
    if response.status_code in RETRY_STATUSES:
        raise IZAError(f"{url}: HTTP {response.status_code} after {retries + 1} attempts")
    raise IZAError(f"{url}: HTTP {response.status_code}")
