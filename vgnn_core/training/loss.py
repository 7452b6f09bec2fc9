"""Training losses on signed frequencies (imaginary modes are learned as negative numbers).

``nmse``, the VGNN paper's: for one material ``mean((ω_pred − ω_true)²) / max|ω_true|²`` over its
bands (and q-points), averaged over materials, so a soft crystal counts as much as a stiff one.
``mae``: the per-material mean absolute error in cm⁻¹ (÷ ``MAE_SCALE_CM1``), averaged over
materials: the metric the models are reported on, for fine-tuning toward it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalized_mse(pred: torch.Tensor, target: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Per-material normalised MSE of one material; ``floor`` (cm⁻¹) guards max|ω| ≈ 0."""
    scale = torch.clamp(target.abs().max(), min=floor) ** 2
    return ((pred - target) ** 2).mean() / scale


#: cm⁻¹ that the ``mae`` loss is divided by, to keep it O(0.1–1) like the learning rates expect.
MAE_SCALE_CM1: float = 100.0


def batch_mae(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over materials of each material's mean |ω_pred − ω_true| (cm⁻¹) / ``MAE_SCALE_CM1``."""
    losses = [(p - t.to(p.dtype)).abs().mean() for p, t in zip(preds, targets)]
    return torch.stack(losses).mean() / MAE_SCALE_CM1


def batch_normalized_mse(preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over materials of :func:`normalized_mse`."""
    losses = [normalized_mse(p, t.to(p.dtype)) for p, t in zip(preds, targets)]
    return torch.stack(losses).mean()


#: The losses by the name ``TrainConfig.loss`` gives.
LOSSES = {"nmse": batch_normalized_mse, "mae": batch_mae}
