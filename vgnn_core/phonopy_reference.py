"""Exact reference phonons from phonopy finite-displacement data (FORCE_SETS).

Used to validate the assembly Φ_ij(T) → D(q) → ω against phonopy itself, by the tests, the
demo and the benchmarks.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .units import THZ_TO_CM1


def load_force_sets(directory: str | Path, primitive_matrix: str = "auto"):
    """A ``Phonopy`` object with force constants from ``phonopy_disp.yaml`` + ``FORCE_SETS``.

    No non-analytic (LO-TO) correction is applied, as in VGNN.
    """
    import phonopy

    directory = Path(directory)
    for required in ("phonopy_disp.yaml", "FORCE_SETS"):
        if not (directory / required).is_file():
            raise FileNotFoundError(f"{directory.name}: {required} missing in {directory}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # phonopy's notice about its primitive_matrix default
        ph = phonopy.load(
            directory / "phonopy_disp.yaml",
            force_sets_filename=directory / "FORCE_SETS",
            primitive_matrix=primitive_matrix,
            is_nac=False,
            log_level=0,
        )
    ph.produce_force_constants()
    return ph


def phonopy_frequencies_cm1(phonon, qpoints: np.ndarray) -> np.ndarray:
    """phonopy's frequencies (cm⁻¹, imaginary as negative) at fractional ``qpoints``."""
    phonon.run_qpoints(np.asarray(qpoints, dtype=float))
    return np.asarray(phonon.qpoints.frequencies) * THZ_TO_CM1


def example_directories(root: str | Path) -> list[Path]:
    """The example crystals under ``root`` that have FORCE_SETS, sorted by name."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if (p / "FORCE_SETS").is_file() and (p / "phonopy_disp.yaml").is_file())
