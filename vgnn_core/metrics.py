"""Evaluation metrics, per material and pooled (all in cm⁻¹)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def material_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, normalised MSE and max |error| of one material (any array shape)."""
    err = np.asarray(pred, dtype=float) - np.asarray(true, dtype=float)
    scale = max(float(np.abs(true).max()), 1.0) ** 2
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "nmse": float((err**2).mean() / scale),
        "max_abs_error": float(np.abs(err).max()),
    }


def pooled_r2(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> float:
    """Coefficient of determination over all (material, q, band) values pooled together."""
    p = np.concatenate([np.ravel(x) for x in preds])
    t = np.concatenate([np.ravel(x) for x in trues])
    ss_res = float(((p - t) ** 2).sum())
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def acoustic_gamma(gamma: np.ndarray) -> float:
    """Largest |ω| among the three modes closest to zero at Γ (0 for an exact sum rule)."""
    return float(np.sort(np.abs(np.asarray(gamma)))[:3].max())


def summarize(rows: Sequence[dict[str, float]], key: str) -> dict[str, float]:
    values = np.array([r[key] for r in rows], dtype=float)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max())}
