"""Harmonic thermal properties from mesh frequencies, in phonopy's units.

For each mode of energy ``ħω`` at temperature ``T`` (``x = ħω / k_B T``):

* heat capacity   ``C_v = k_B x² eˣ / (eˣ − 1)²``
* entropy         ``S = k_B [x / (eˣ − 1) − ln(1 − e⁻ˣ)]``
* free energy     ``F = ħω/2 + k_B T ln(1 − e⁻ˣ)``

averaged over the mesh with its weights and multiplied by Avogadro's number: J/K/mol and
kJ/mol *per mole of cells*, like phonopy; divide by ``formula_units`` for per formula unit.
Modes at or below zero frequency are left out (imaginary modes, counted in
``n_imaginary``; and the three acoustic modes at Γ, which are exactly zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import constants as c

#: Default temperatures, K (phonopy's default range).
DEFAULT_TEMPERATURES = np.arange(0.0, 1001.0, 10.0)
#: Modes below this (cm⁻¹) at Γ count as the acoustic zero modes, not as imaginary.
GAMMA_ACOUSTIC_TOLERANCE_CM1: float = 0.5

_HC = c.h * c.c * 100.0  # J per cm⁻¹


@dataclass
class ThermalProperties:
    """Thermal properties per mole of cells (divide by ``formula_units`` for per f.u.)."""

    temperatures: np.ndarray  # K
    heat_capacity: np.ndarray  # J/K/mol
    entropy: np.ndarray  # J/K/mol
    free_energy: np.ndarray  # kJ/mol
    zero_point_energy: float  # kJ/mol
    n_imaginary: int  # imaginary modes on the full mesh (Γ acoustic modes not counted)
    n_modes: int  # all modes on the full mesh
    formula_units: float = 1.0

    def per_formula_unit(self) -> ThermalProperties:
        z = self.formula_units
        return ThermalProperties(
            self.temperatures, self.heat_capacity / z, self.entropy / z, self.free_energy / z,
            self.zero_point_energy / z, self.n_imaginary, self.n_modes, 1,
        )

    def at(self, temperature: float) -> dict[str, float]:
        """C_v and S (J/K/mol) and F (kJ/mol) interpolated at one temperature (K), per mole of cells
        (or of formula units after :meth:`per_formula_unit`)."""
        t = self.temperatures
        return {
            "heat_capacity": float(np.interp(temperature, t, self.heat_capacity)),
            "entropy": float(np.interp(temperature, t, self.entropy)),
            "free_energy": float(np.interp(temperature, t, self.free_energy)),
        }


def thermal_properties(
    frequencies: np.ndarray,
    weights: np.ndarray,
    temperatures: np.ndarray | None = None,
    formula_units: float = 1.0,
    gamma_index: int | None = 0,
) -> ThermalProperties:
    """Thermal properties of mesh ``frequencies`` (cm⁻¹, (n_q, n_modes)) with ``weights``.

    ``gamma_index`` names the row of Γ, whose three lowest modes are set to exactly zero
    (``None`` when the mesh has no Γ).
    """
    f = np.array(frequencies, dtype=float)
    w = np.asarray(weights, dtype=float)
    t = DEFAULT_TEMPERATURES if temperatures is None else np.asarray(temperatures, dtype=float)
    if (t < 0).any():
        raise ValueError("temperatures must be ≥ 0 K")
    acoustic = np.zeros(f.shape, dtype=bool)
    if gamma_index is not None:
        low = np.argsort(np.abs(f[gamma_index]))[:3]
        low = low[np.abs(f[gamma_index, low]) < GAMMA_ACOUSTIC_TOLERANCE_CM1]
        acoustic[gamma_index, low] = True
        f[gamma_index, low] = 0.0
    counts = np.broadcast_to(w[:, None], f.shape)
    n_imaginary = int(np.sum(counts[(f < 0) & ~acoustic]))
    positive = f > 0
    energy = f[positive] * _HC  # J
    mode_w = counts[positive] / w.sum()
    zpe = 0.5 * np.sum(mode_w * energy) * c.N_A / 1000.0
    cv, s, free = np.zeros_like(t), np.zeros_like(t), np.full_like(t, zpe)
    for k, temp in enumerate(t):
        if temp <= 0:
            continue
        kt = c.k * temp
        x = energy / kt
        em1 = np.expm1(x)
        log_term = np.log(-np.expm1(-x))  # ln(1 − e⁻ˣ)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            cv_modes = np.where(x < 700, x**2 * np.exp(np.minimum(x, 700)) / em1**2, 0.0)
            s_modes = np.where(x < 700, x / em1, 0.0) - log_term
        cv[k] = np.sum(mode_w * cv_modes) * c.k * c.N_A
        s[k] = np.sum(mode_w * s_modes) * c.k * c.N_A
        free[k] = zpe + np.sum(mode_w * log_term) * kt * c.N_A / 1000.0
    return ThermalProperties(t, cv, s, free, float(zpe), n_imaginary, int(counts.sum()), float(formula_units))

