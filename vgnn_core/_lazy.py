"""Lazy public names: a package's ``__init__`` names what it exports without importing torch.

``import vgnn_core`` (and ``vgnn_core.phonons.units`` for a query that only converts units)
stays cheap; a name is imported from its module the first time it is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in ``exports[name]``
    (a module relative to the package)."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # resolved once
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
