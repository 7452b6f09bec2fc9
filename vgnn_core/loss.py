"""The training loss: the VGNN paper's per-material normalised mean squared error.

For one material, ``mean((ω_pred − ω_true)²) / max|ω_true|²`` over its bands (and q-points),
then averaged over materials — so a soft crystal counts as much as a stiff one. Frequencies
are signed, so imaginary modes are learned as negative numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalized_mse(pred: torch.Tensor, target: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Per-material normalised MSE of one material; ``floor`` (cm⁻¹) guards max|ω| ≈ 0."""
    scale = torch.clamp(target.abs().max(), min=floor) ** 2
    return ((pred - target) ** 2).mean() / scale


def batch_normalized_mse(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over materials of :func:`normalized_mse`."""
    losses = [normalized_mse(p, t.to(p.dtype)) for p, t in zip(preds, targets)]
    return torch.stack(losses).mean()
