"""Storage tests keep downloads and the file-verification cache in their own temporary folder."""

import pytest


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path, monkeypatch):
    """``$VGNN_CACHE_DIR`` → ``<tmp_path>/cache``, never the user's ``~/.cache/vgnn``."""
    monkeypatch.setenv("VGNN_CACHE_DIR", str(tmp_path / "cache"))
