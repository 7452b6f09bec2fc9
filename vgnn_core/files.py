"""Files: atomic writes (a private temporary name, then a rename) and content digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path`` and rename it into place.

    Readers see the old file or the new one, never a partial one; concurrent writers of the
    same path each use their own temporary file (the last rename wins).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # the permissions a plain open() would give, not mkstemp's 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before it becomes visible under its name
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` of plain arrays, atomically (read back with ``allow_pickle=False``)."""
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``sha256``, ``md5``, …), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def unsafe_relative_path(relative: str) -> str | None:
    """Why ``relative`` (a path from outside input) is not a plain relative POSIX path, or ``None``:
    empty, a NUL byte, a backslash, a drive (``C:``), absolute, or an empty, ``.`` or ``..`` part."""
    if not isinstance(relative, str) or not relative:
        return "empty or not a string"
    if "\x00" in relative:
        return "contains a NUL byte"
    if "\\" in relative:
        return "contains a backslash"
    if relative.startswith("/"):
        return "is absolute"
    if len(relative) > 1 and relative[1] == ":":
        return "starts with a drive"
    if any(part in ("", ".", "..") for part in relative.split("/")):
        return "has an empty, '.' or '..' part"
    return None


def inside(root: str | Path, relative: str) -> Path:
    """``root / relative`` resolved, refused (``ValueError``) unless it stays inside ``root``.

    ``relative`` comes from outside input (a manifest, a listing): it must pass
    :func:`unsafe_relative_path`, and its resolved location (symbolic links followed) must lie
    under the resolved ``root``.
    """
    why = unsafe_relative_path(relative)
    if why is None:
        base = Path(root).resolve()
        target = (base / relative).resolve()
        if target == base or base not in target.parents:
            why = f"resolves to {target}, outside {base}"
        else:
            return target
    raise ValueError(f"unsafe path {relative!r}: {why}")
