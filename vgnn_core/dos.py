"""Phonon density of states from mesh frequencies, with Gaussian smearing.

``g(ω) = Σ_q w_q Σ_ν G_σ(ω − ω_qν) / Σ_q w_q`` is normalised to the 3m states of the cell;
the partial DOS of a group of atoms weights each mode by the group's share of its eigenvector,
so the partial DOS add up to the total. Imaginary modes appear at negative frequencies.
Frequencies in cm⁻¹, densities in states/cm⁻¹ per cell (``to_thz`` converts both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .units import THZ_TO_CM1

#: Default Gaussian width (standard deviation), cm⁻¹.
DEFAULT_SIGMA_CM1: float = 5.0
#: Default spacing of the frequency grid, cm⁻¹.
DEFAULT_PITCH_CM1: float = 2.0


@dataclass
class PhononDOS:
    """Total and partial DOS on a frequency grid (cm⁻¹; states per cm⁻¹ per cell)."""

    frequencies: np.ndarray
    total: np.ndarray
    partial: dict[str, np.ndarray] = field(default_factory=dict)
    sigma: float = DEFAULT_SIGMA_CM1

    def integral(self) -> float:
        """Number of states under the total DOS (≈ 3m)."""
        return float(np.trapezoid(self.total, self.frequencies))

    def to_thz(self) -> PhononDOS:
        """The same DOS with frequencies in THz and densities in states/THz."""
        return PhononDOS(
            self.frequencies / THZ_TO_CM1,
            self.total * THZ_TO_CM1,
            {k: v * THZ_TO_CM1 for k, v in self.partial.items()},
            self.sigma / THZ_TO_CM1,
        )


def frequency_grid(frequencies: np.ndarray, sigma: float, pitch: float = DEFAULT_PITCH_CM1) -> np.ndarray:
    """A grid covering every frequency with 5σ of margin."""
    lo = min(0.0, float(np.min(frequencies))) - 5 * sigma
    hi = float(np.max(frequencies)) + 5 * sigma
    return np.arange(lo, hi + pitch, pitch)


def phonon_dos(
    frequencies: np.ndarray,
    weights: np.ndarray,
    sigma: float = DEFAULT_SIGMA_CM1,
    grid: np.ndarray | None = None,
    projections: np.ndarray | None = None,
    group_names: list[str] | None = None,
) -> PhononDOS:
    """DOS of mesh ``frequencies`` (n_q, n_modes) with mesh ``weights`` (n_q,).

    ``projections`` (n_q, n_modes, n_groups) from :func:`vgnn_core.modes.modes` give the
    partial DOS, named by ``group_names``.
    """
    f = np.asarray(frequencies, dtype=float)
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = frequency_grid(f, sigma) if grid is None else np.asarray(grid, dtype=float)
    mode_weight = np.broadcast_to(w[:, None], f.shape).ravel()
    flat = f.ravel()
    norm = 1.0 / (sigma * np.sqrt(2 * np.pi))
    total = np.zeros_like(x)
    parts = None
    if projections is not None:
        proj = np.asarray(projections, dtype=float).reshape(flat.size, -1)
        parts = np.zeros((proj.shape[1], x.size))
    chunk = max(1, int(2e7 // max(1, x.size)))
    for a in range(0, flat.size, chunk):
        kernel = norm * np.exp(-0.5 * ((x[None, :] - flat[a : a + chunk, None]) / sigma) ** 2)
        kernel *= mode_weight[a : a + chunk, None]
        total += kernel.sum(0)
        if parts is not None:
            parts += proj[a : a + chunk].T @ kernel
    partial = {}
    if parts is not None:
        names = group_names or [str(k) for k in range(parts.shape[0])]
        partial = dict(zip(names, parts))
    return PhononDOS(x, total, partial, float(sigma))
