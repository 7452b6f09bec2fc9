"""Where the project's shared data lives (``VGNN_DATA_DIR``), without hard-coded paths."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "VGNN_DATA_DIR"


def shared_data_dir() -> Path | None:
    """The shared data folder, or ``None`` when it is absent (a user's machine).

    ``$VGNN_DATA_DIR`` wins when set. Otherwise ``../shared/data`` is looked up relative to
    the current directory and to the source checkout that holds this package.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    candidates = [
        Path.cwd() / ".." / "shared" / "data",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None
