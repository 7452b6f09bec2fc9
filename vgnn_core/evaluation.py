"""Model evaluation on DFPT samples: per-material rows and summary metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from .dataset import PhononSample
from .dynamical_matrix import band_frequencies, gamma_frequencies
from .graph import collate
from .metrics import acoustic_gamma, material_metrics, pooled_r2, summarize
from .model import VGNN


def predict_samples(
    model: VGNN, samples: Sequence[PhononSample], batch_size: int = 32, bands: bool = True
) -> tuple[list[np.ndarray | None], list[np.ndarray], float]:
    """(bands per sample or None, Γ per sample, seconds) with the model in eval mode."""
    model.eval()
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    out_bands: list[np.ndarray | None] = []
    out_gamma: list[np.ndarray] = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for a in range(0, len(samples), batch_size):
            chunk = samples[a : a + batch_size]
            batch = collate([s.graph for s in chunk], dtype=dtype, device=device)
            if model.kind == "vvn":
                out_gamma += [w.cpu().numpy() for w in model.gamma_frequencies(batch)]
                out_bands += [None] * len(chunk)
                continue
            fcs = [fc.to(torch.float64) for fc in model.force_constants(batch)]
            out_gamma += [w.cpu().numpy() for w in gamma_frequencies(fcs)]
            if bands and model.supports_bands:
                qs = [torch.as_tensor(s.qpoints, device=device) for s in chunk]
                out_bands += [w.cpu().numpy() for w in band_frequencies(fcs, qs)]
            else:
                out_bands += [None] * len(chunk)
    return out_bands, out_gamma, time.perf_counter() - t0


def evaluate(model: VGNN, samples: Sequence[PhononSample], batch_size: int = 32) -> dict:
    """Band and Γ metrics of ``model`` on ``samples`` (cm⁻¹).

    Γ targets are the first Γ point of each stored path (samples without one are skipped for
    Γ metrics). Bands use every stored q-point (k-MVN only).
    """
    pred_bands, pred_gamma, seconds = predict_samples(model, samples, batch_size)
    rows = []
    for s, pb, pg in zip(samples, pred_bands, pred_gamma):
        row: dict = {"material_id": s.material_id, "n_atoms": s.n_atoms, "acoustic_gamma_cm1": acoustic_gamma(pg)}
        if s.gamma is not None:
            row.update({f"gamma_{k}": v for k, v in material_metrics(pg, s.gamma).items()})
        if pb is not None:
            row.update({f"bands_{k}": v for k, v in material_metrics(pb, s.bands).items()})
        rows.append(row)
    summary: dict = {"n_materials": len(samples), "seconds_per_material": seconds / max(1, len(samples))}
    with_gamma = [r for r in rows if "gamma_mae" in r]
    if with_gamma:
        summary["gamma"] = {
            "mae": summarize(with_gamma, "gamma_mae"),
            "nmse": summarize(with_gamma, "gamma_nmse"),
            "r2": pooled_r2(
                [pg for s, pg in zip(samples, pred_gamma) if s.gamma is not None],
                [s.gamma for s in samples if s.gamma is not None],
            ),
        }
    if pred_bands and pred_bands[0] is not None:
        summary["bands"] = {
            "mae": summarize(rows, "bands_mae"),
            "nmse": summarize(rows, "bands_nmse"),
            "r2": pooled_r2(pred_bands, [s.bands for s in samples]),
        }
    summary["acoustic_gamma_cm1"] = summarize(rows, "acoustic_gamma_cm1")
    return {"summary": summary, "materials": rows}
