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
#: Gaussians are summed within this many σ of their centre: the tail beyond is below 1e-21
#: of the peak, far under the float64 round-off of the sums.
GAUSSIAN_CUTOFF_SIGMAS: float = 10.0


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
    cutoff: float | None = GAUSSIAN_CUTOFF_SIGMAS,
) -> PhononDOS:
    """DOS of mesh ``frequencies`` (n_q, n_modes) with mesh ``weights`` (n_q,).

    ``projections`` (n_q, n_modes, n_groups) from :func:`vgnn_core.phonons.modes.modes` give the
    partial DOS, named by ``group_names``. On a uniform grid each Gaussian is summed within
    ``cutoff`` σ of its centre only (``None``: over the whole grid, the reference it equals).
    """
    f = np.asarray(frequencies, dtype=float)
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = frequency_grid(f, sigma) if grid is None else np.asarray(grid, dtype=float)
    mode_weight = np.broadcast_to(w[:, None], f.shape).ravel()
    flat = f.ravel()
    proj = None if projections is None else np.asarray(projections, dtype=float).reshape(flat.size, -1)
    total = np.zeros_like(x)
    parts = None if proj is None else np.zeros((proj.shape[1], x.size))
    window = None if cutoff is None else _window_offsets(x, sigma, cutoff)
    width = x.size if window is None else window.size
    chunk = max(1, int(2e7 // max(1, width)))
    for a in range(0, flat.size, chunk):
        idx, kernel = _gaussians(x, flat[a : a + chunk], sigma, window)
        kernel *= mode_weight[a : a + chunk, None]
        total += np.bincount(idx.ravel(), kernel.ravel(), x.size)
        if parts is not None:
            for g, share in enumerate(proj[a : a + chunk].T):
                parts[g] += np.bincount(idx.ravel(), (kernel * share[:, None]).ravel(), x.size)
    partial = {}
    if parts is not None:
        names = group_names or [str(k) for k in range(parts.shape[0])]
        partial = dict(zip(names, parts))
    return PhononDOS(x, total, partial, float(sigma))


def _window_offsets(x: np.ndarray, sigma: float, cutoff: float) -> np.ndarray | None:
    """Grid offsets within ``cutoff`` σ of a mode, on a uniform grid (None otherwise, or when
    the window would be no smaller than the grid)."""
    if x.size < 2:
        return None
    pitch = x[1] - x[0]
    if pitch <= 0 or not np.allclose(np.diff(x), pitch, rtol=1e-9, atol=0.0):
        return None
    half = int(np.ceil(cutoff * sigma / pitch))
    return None if 2 * half + 1 >= x.size else np.arange(-half, half + 1)


def _gaussians(x: np.ndarray, centres: np.ndarray, sigma: float, window: np.ndarray | None):
    """Grid indices (n, k) and normalised Gaussian values there for each centre: the whole grid,
    or the ``window`` of offsets around each centre's nearest grid point (uniform grids)."""
    if window is None:
        idx = np.broadcast_to(np.arange(x.size), (centres.size, x.size))
    else:
        nearest = np.rint((centres - x[0]) / (x[1] - x[0])).astype(np.int64)
        idx = nearest[:, None] + window[None, :]
    inside = (idx >= 0) & (idx < x.size)
    idx = np.clip(idx, 0, x.size - 1)
    kernel = np.exp(-0.5 * ((x[idx] - centres[:, None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return idx, np.where(inside, kernel, 0.0)
