"""Radial basis of bond lengths with a smooth cutoff envelope.

Bessel functions ``√(2/r_c) sin(nπr/r_c)/r`` times the polynomial envelope of DimeNet
(value, first and second derivative zero at ``r_c``), so anything computed from them
vanishes smoothly as a neighbour crosses the cutoff: predictions are continuous in the
atomic positions.
"""

from __future__ import annotations

import math

import torch


def polynomial_envelope(r: torch.Tensor, r_max: float, p: int = 6) -> torch.Tensor:
    """Smooth step from 1 at r = 0 to 0 at ``r_max`` (zero beyond), C² at the cutoff."""
    x = r / r_max
    env = (
        1.0
        - (p + 1.0) * (p + 2.0) / 2.0 * x**p
        + p * (p + 2.0) * x ** (p + 1)
        - p * (p + 1.0) / 2.0 * x ** (p + 2)
    )
    return env * (x < 1.0)


class BesselBasis(torch.nn.Module):
    """``n_basis`` Bessel functions of the bond length, multiplied by the envelope."""

    def __init__(self, r_max: float, n_basis: int = 8, envelope_p: int = 6):
        super().__init__()
        self.r_max = float(r_max)
        self.envelope_p = int(envelope_p)
        # derived from r_max, so not part of the saved state
        self.register_buffer("frequencies", math.pi * torch.arange(1, n_basis + 1) / r_max, persistent=False)
        self.prefactor = math.sqrt(2.0 / r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # (E,) -> (E, n_basis)
        r = r[:, None]
        safe = torch.clamp(r, min=1e-6)
        basis = self.prefactor * torch.sin(self.frequencies.to(r.dtype) * r) / safe
        return basis * polynomial_envelope(r, self.r_max, self.envelope_p)
