"""Units and conversions, in one place.

Conventions follow phonopy: lengths in Å, masses in atomic mass units (amu), force
constants in eV/Å². The eigenvalues λ of the mass-weighted dynamical matrix are then
in eV/(Å²·amu), and the phonon frequency is ν = √λ / 2π in these units.
Constants are CODATA (via :mod:`scipy.constants`).
"""

from __future__ import annotations

import math

from scipy import constants as _c

#: √(eV/(Å²·amu)) / 2π expressed in THz: converts √λ to a frequency ν in THz.
EV_ANGSTROM2_AMU_TO_THZ: float = (
    math.sqrt(_c.electron_volt / _c.atomic_mass) / _c.angstrom / (2.0 * math.pi) / 1e12
)
#: 1 THz in cm⁻¹ (wavenumber ν/c).
THZ_TO_CM1: float = 1e12 / (_c.c * 100.0)
#: 1 THz in meV (hν).
THZ_TO_MEV: float = _c.h * 1e12 / _c.electron_volt * 1e3
#: √(eV/(Å²·amu)) → cm⁻¹.
EV_ANGSTROM2_AMU_TO_CM1: float = EV_ANGSTROM2_AMU_TO_THZ * THZ_TO_CM1
#: A crystal counts as dynamically unstable when its lowest frequency is below this (cm⁻¹): the
#: margin keeps the numerical noise of an interpolated near-Γ acoustic branch out.
INSTABILITY_THRESHOLD_CM1: float = -5.0


def thz_to_cm1(x):
    """THz → cm⁻¹ (works on floats, numpy arrays and torch tensors)."""
    return x * THZ_TO_CM1


def cm1_to_thz(x):
    """cm⁻¹ → THz."""
    return x / THZ_TO_CM1


def thz_to_mev(x):
    """THz → meV."""
    return x * THZ_TO_MEV


def mev_to_thz(x):
    """meV → THz."""
    return x / THZ_TO_MEV


def cm1_to_mev(x):
    """cm⁻¹ → meV."""
    return thz_to_mev(cm1_to_thz(x))
