"""Model evaluation on DFPT samples: per-material rows and summary metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..crystal.crystal import Crystal, as_crystal
from ..nn.ensemble import MemberAgreement, VGNNEnsemble
from ..nn.model import Model
from ..nn.uncertainty import ErrorPredictors, UncertaintyModel
from ..predict import Predictor
from .metrics import (
    acoustic_gamma,
    instability_scores,
    material_metrics,
    pooled_r2,
    summarize,
    uncertainty_scores,
)
from .samples import PhononSample


def predict_samples(
    model: Model, samples: Sequence[PhononSample], batch_size: int = 32, bands: bool = True
) -> tuple[list[np.ndarray | None], list[np.ndarray], float]:
    """(bands per sample or None, Γ per sample, seconds), through the :class:`Predictor`."""
    predictor = Predictor(model, device=next(model.parameters()).device, batch_size=batch_size)
    qpoints = [s.qpoints for s in samples] if bands and model.supports_bands else None
    t0 = time.perf_counter()
    gamma, band_list = predictor.spectra_from_graphs([s.graph for s in samples], qpoints)
    seconds = time.perf_counter() - t0
    return band_list if band_list is not None else [None] * len(samples), gamma, seconds


def evaluate(model: Model, samples: Sequence[PhononSample], batch_size: int = 32) -> dict:
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
            row.update(bands_min_predicted=float(np.min(pb)), bands_min_reference=float(np.min(s.bands)))
        if s.supercell_cells is not None:
            row["supercell_cells"] = s.supercell_cells
        row["has_hydrogen"] = bool((s.graph.numbers == 1).any())
        row["elements"] = sorted({int(z) for z in s.graph.numbers})  # atomic numbers present
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
        hydrogen = [r for r in rows if r["has_hydrogen"]]
        if hydrogen:
            summary["bands"]["mae_hydrogen"] = summarize(hydrogen, "bands_mae") | {"n": len(hydrogen)}
    summary["acoustic_gamma_cm1"] = summarize(rows, "acoustic_gamma_cm1")
    if isinstance(model, VGNNEnsemble) and rows:
        graphs = [s.graph for s in samples]
        crystals = [as_crystal(g.structure()) for g in graphs]  # one symmetry search each, for both uses
        for r, a, c in zip(rows, member_agreement(model, graphs, batch_size, crystals), crystals):
            r["spread_cm1"], r["member_lowest_cm1"], r["member_highest_cm1"] = a.spread_cm1, a.lowest_cm1, a.highest_cm1
            r["primitive_atoms"] = c.primitive_atoms
        key = "bands_mae" if "bands_mae" in rows[0] else "gamma_mae"
        expected_error = UncertaintyModel.from_metadata(getattr(model, "checkpoint_metadata", {}))
        summary["uncertainty"] = score_uncertainty(rows, key, expected_error or UncertaintyModel.proportional(1.0))
    if "bands" in summary:
        summary["bands"].update(instability_flags(rows))
        if any("supercell_cells" in r for r in rows):
            summary["bands"]["by_supercell_cells"] = by_supercell_cells(rows)
    return {"summary": summary, "materials": rows}


def instability_flags(rows: list[dict]) -> dict[str, dict]:
    """:func:`~vgnn_core.training.metrics.instability_scores` of evaluated rows with bands: of the bands'
    own minimum (``instability``) and, for an ensemble's rows, of ``likely_unstable`` (as
    :attr:`~vgnn_core.phonons.result.PhononResult.likely_unstable`: the bands or any member alone below
    −5 cm⁻¹ at Γ and the 2×2×2 zone-boundary points)."""
    reference = [r["bands_min_reference"] for r in rows]
    out = {"instability": instability_scores([r["bands_min_predicted"] for r in rows], reference)}
    if rows and all("member_lowest_cm1" in r for r in rows):
        out["likely_unstable"] = instability_scores(
            [min(r["bands_min_predicted"], r["member_lowest_cm1"]) for r in rows], reference)
    return out


#: Ranges of :attr:`~vgnn_core.training.samples.PhononSample.supercell_cells` (primitive cells in the DFT
#: supercell; inclusive, ``None``: no upper end) that :func:`by_supercell_cells` scores apart.
SUPERCELL_CELL_BINS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 4), (5, 8), (9, None))


def supercell_bin_label(lo: int, hi: int | None) -> str:
    """A :data:`SUPERCELL_CELL_BINS` range as text: "1", "2–4", "≥9"."""
    return str(lo) if hi == lo else (f"≥{lo}" if hi is None else f"{lo}–{hi}")


def by_supercell_cells(rows: list[dict]) -> list[dict]:
    """Band MAE and :func:`instability_flags` of evaluated rows, per range of primitive cells in the DFT
    supercell (:data:`SUPERCELL_CELL_BINS`; rows without ``supercell_cells`` and empty ranges are left out).

    A phonondb reference is exact only at its supercell's commensurate q-points, one per primitive cell
    in it; elsewhere on the path it is phonopy's interpolation of that supercell's force constants. Each
    entry: ``cells`` (:func:`supercell_bin_label`), ``n``, ``bands_mae`` (mean, cm⁻¹) and the flags' scores.
    """
    out = []
    for lo, hi in SUPERCELL_CELL_BINS:
        kept = [r for r in rows if "supercell_cells" in r and lo <= r["supercell_cells"] and (hi is None or r["supercell_cells"] <= hi)]
        if kept:
            out.append({"cells": supercell_bin_label(lo, hi), "n": len(kept),
                        "bands_mae": float(np.mean([r["bands_mae"] for r in kept]))} | instability_flags(kept))
    return out


def score_uncertainty(rows: list[dict], error_key: str, expected_error: UncertaintyModel) -> dict:
    """Set every row's ``uncertainty_cm1`` from ``expected_error`` and score how well it ranks the
    rows' actual ``error_key`` (see :func:`~vgnn_core.training.metrics.uncertainty_scores`)."""
    for r in rows:
        r["uncertainty_cm1"] = expected_error(error_predictors(r))
    scored = [r for r in rows if error_key in r]
    summary = uncertainty_scores([r["uncertainty_cm1"] for r in scored], [r[error_key] for r in scored])
    return summary | {"error": error_key, "model": expected_error.to_dict()}


def member_agreement(model: VGNNEnsemble, graphs: Sequence, batch_size: int = 32,
                     crystals: Sequence[Crystal] | None = None) -> list[MemberAgreement]:
    """How far the members agree on every graph (spread uncalibrated), as a prediction measures it:
    a cell that is not primitive on its primitive cell's modes, projected from its D(q) (``crystals``: the graphs' own, when
    the caller has them); see :meth:`~vgnn_core.nn.ensemble.VGNNEnsemble.force_constants_and_agreement`."""
    predictor = Predictor(model, device=next(model.parameters()).device, batch_size=batch_size)
    if crystals is None:
        crystals = [as_crystal(g.structure()) for g in graphs]
    cells = [c.primitive_sites for c in crystals]
    out: list[MemberAgreement] = []
    with torch.inference_mode():
        for idx, batch in predictor._each_batch(graphs):
            out += model.force_constants_and_agreement(batch, primitive_sites=[cells[k] for k in idx])[1]
    return out


def evaluate_heat_capacity(model: Model, records: Sequence, density: float | None = None) -> dict:
    """Heat capacity C_v(T) from a k-MVN model's mesh against the DFPT ``thermo`` block.

    ``records`` are :class:`~vgnn_core.training.petretto.PhononRecord` (structure + thermo). Both sides
    are per formula unit (J/K/mol), as in the Petretto database, at its temperatures (5–800 K).
    """
    from ..phonons.mesh import DEFAULT_MESH_DENSITY
    from ..phonons.result import formula_units, mesh_properties

    if not model.supports_bands:
        raise ValueError("heat capacity needs force constants at every q: use a k-MVN model")
    usable = [r for r in records if "C_v" in r.thermo and "temperature" in r.thermo]
    predictor = Predictor(model, device=next(model.parameters()).device)
    t0 = time.perf_counter()
    fcs = predictor.predict_force_constants([r.structure for r in usable])
    rows = []
    for r, fc in zip(usable, fcs):
        temps, reference = r.thermo["temperature"], r.thermo["C_v"]
        _, _, thermal = mesh_properties(fc, r.structure, density=density or DEFAULT_MESH_DENSITY,
                                        temperatures=temps, partial=False)
        predicted = thermal.heat_capacity / formula_units(r.structure)
        ref300 = float(np.interp(300.0, temps, reference))
        pred300 = float(np.interp(300.0, temps, predicted))
        rows.append({
            "material_id": r.material_id,
            "cv_mae_J_K_mol": float(np.mean(np.abs(predicted - reference))),
            "cv300_reference": ref300,
            "cv300_predicted": pred300,
            "cv300_relative_error": abs(pred300 - ref300) / ref300 if ref300 > 0 else float("nan"),
        })
    seconds = time.perf_counter() - t0
    mae = np.array([r["cv_mae_J_K_mol"] for r in rows])
    rel = np.array([r["cv300_relative_error"] for r in rows])
    summary = {
        "n_materials": len(rows),
        "seconds_per_material": seconds / max(1, len(rows)),
        "cv_mae_J_K_mol": {"mean": float(mae.mean()), "median": float(np.median(mae))} if rows else None,
        "cv300_relative_error": {"mean": float(np.nanmean(rel)), "median": float(np.nanmedian(rel))} if rows else None,
    }
    return {"summary": summary, "materials": rows}


def error_predictors(row: dict) -> ErrorPredictors:
    """The :class:`~vgnn_core.nn.uncertainty.ErrorPredictors` of one evaluated ensemble row."""
    return ErrorPredictors(spread_cm1=row["spread_cm1"], highest_cm1=row["member_highest_cm1"],
                           lowest_cm1=row["member_lowest_cm1"], has_hydrogen=row["has_hydrogen"],
                           primitive_atoms=row["primitive_atoms"])
