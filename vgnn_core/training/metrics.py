"""Evaluation metrics, per material and pooled (all in cm⁻¹)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..phonons.units import INSTABILITY_THRESHOLD_CM1


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


def flag_f1(flag: Sequence[bool], truth: Sequence[bool]) -> float:
    """F1 of boolean ``flag`` against boolean ``truth`` (nan when neither flags anything)."""
    p, t = np.asarray(flag, dtype=bool), np.asarray(truth, dtype=bool)
    denominator = int(p.sum() + t.sum())
    return 2 * int((p & t).sum()) / denominator if denominator else float("nan")


def every_material_f1(n_unstable: int, n: int) -> float:
    """F1 of calling every one of ``n`` materials unstable when ``n_unstable`` are: the trivial rule a
    flag must beat (precision n_unstable / n, recall 1)."""
    return 2 * n_unstable / (n_unstable + n) if n else float("nan")


def instability_scores(pred_min: Sequence[float], true_min: Sequence[float],
                       threshold: float = INSTABILITY_THRESHOLD_CM1) -> dict[str, float]:
    """Precision, recall and F1 of "lowest ω below ``threshold``" (predicted vs reference)."""
    p = np.asarray(pred_min, dtype=float) < threshold
    t = np.asarray(true_min, dtype=float) < threshold
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": flag_f1(p, t), "n_unstable": int(t.sum()),
            "n_predicted_unstable": int(p.sum()), "accuracy": float((p == t).mean()) if len(t) else float("nan")}


def uncertainty_scores(uncertainty: Sequence[float], error: Sequence[float], top: float = 0.1) -> dict[str, float]:
    """How well a per-material uncertainty ranks the actual per-material error, and how well it
    states its size.

    Ranking: Spearman rank correlation, and the mean error of the ``top`` fraction most uncertain
    materials against the mean error of the rest (their ratio should be well above 1). Size: the
    mean uncertainty against the mean error (equal on the materials it was calibrated on), and the
    share of materials whose error is at most the uncertainty, and at most twice it.
    """
    from scipy.stats import spearmanr

    u, e = np.asarray(uncertainty, dtype=float), np.asarray(error, dtype=float)
    order = np.argsort(-u)
    n_top = max(1, int(round(top * len(u))))
    top_err, rest_err = float(e[order[:n_top]].mean()), float(e[order[n_top:]].mean()) if len(u) > n_top else float("nan")
    return {"spearman": float(spearmanr(u, e).statistic), "top_fraction": top, "top_mean_error": top_err,
            "rest_mean_error": rest_err, "top_to_rest_ratio": top_err / rest_err if rest_err else float("nan"),
            "mean_uncertainty": float(u.mean()), "mean_error": float(e.mean()),
            "share_within_uncertainty": float((e <= u).mean()), "share_within_twice_uncertainty": float((e <= 2 * u).mean())}
