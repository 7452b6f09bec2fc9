"""What the non-analytic (LO–TO) correction does to k-MVN band accuracy on Petretto's DFPT paths.

For every material of a split the k-MVN force constants give the bands along the stored DFPT
path in four ways:

* ``none`` — the force constants as they are (what the shipped model predicts);
* ``predicted`` — taken as short-range, plus the Gonze–Lee dipole–dipole term
  (:class:`~vgnn_core.phonons.nac.NonAnalyticCorrection`) with the Born heads' Z*/ε∞;
* ``dfpt`` — the same with the DFPT Z*/ε∞ of the record (oracle charges);
* ``gamma_only`` — the predicted-charge non-analytic term added at the Γ points of the path
  alone, ``C(Γ, q̂) − C(Γ)``: the LO modes split, every q ≠ 0 stays as the model has it.

The stored path has no labels: :func:`path_segments` recovers its straight segments from the
q-points (equal steps along one direction; a repeated point or a lone long step separates two
segments), and every segment with Γ at an end approaches Γ from its own direction, as the
DFPT path does (its Γ points carry the LO–TO split of their segment).

Metrics per material, in cm⁻¹ (:func:`material_rows`): the band MAE over the whole path; the
band MAE on the ``fraction`` of every Γ-ended segment nearest to Γ (Γ included); the MAE of the
whole spectrum at the Γ end points; and the error of the LO mode at Γ — the sorted mode index
that the DFPT-charge correction splits most on our force constants, at the Γ end point where
that splitting is largest — with that splitting itself (``split_dfpt_cm1``, ``split_pred_cm1``).
A material is polar when max |Z*_DFPT| exceeds :data:`POLAR_BORN_THRESHOLD`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..crystal.graph import build_graph, collate
from ..phonons.dynamical_matrix import band_frequencies
from ..phonons.force_constants import ForceConstants
from ..phonons.nac import BornCharges, GammaJumpCorrection, NonAnalyticCorrection, path_q_directions
from . import petretto
from .born import dielectric_from_record

VARIANTS = ("none", "predicted", "dfpt", "gamma_only")
#: e: a material whose largest DFPT Born-charge component exceeds this is "polar"
POLAR_BORN_THRESHOLD = 0.5
#: the share of a Γ-ended segment, from its Γ end, scored as "near Γ"
NEAR_GAMMA_FRACTION = 0.1
_GAMMA = 1e-8


@dataclass
class PathMaterial:
    """One Petretto material: structure, stored path (fractional q, cm⁻¹ bands), DFPT charges."""

    material_id: str
    structure: object  # pymatgen Structure
    qpoints: np.ndarray  # (n_q, 3)
    bands: np.ndarray  # (n_q, 3m)
    dfpt: BornCharges  # neutral Z*, symmetric ε∞

    @property
    def max_born(self) -> float:
        return float(np.abs(self.dfpt.born).max())


def path_segments(qpoints: np.ndarray, lattice: np.ndarray, rtol: float = 1e-3) -> list[tuple[int, int]]:
    """Straight segments (inclusive index ranges) of a band path stored without labels.

    Consecutive steps belong to one segment when they point the same way and have the same
    length (relative ``rtol``: band paths are divided evenly); a zero step (a repeated point)
    or a change of direction ends a segment, the corner point then starting the next one. A
    run of a single step that is not equal to its neighbours (a jump between disconnected
    pieces of the path) is no segment.
    """
    q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
    cart = q @ np.linalg.inv(np.asarray(lattice, dtype=float)).T
    steps = np.diff(cart, axis=0)
    length = np.linalg.norm(steps, axis=1)
    scale = max(float(length.max(initial=0.0)), 1e-12)
    segments: list[tuple[int, int]] = []
    start = None
    for i, (step, size) in enumerate(zip(steps, length)):
        if size < 1e-9 * scale:  # repeated point: close the current segment
            if start is not None:
                segments.append((start, i))
            start = None
            continue
        if start is not None:
            prev = steps[i - 1]
            same = np.linalg.norm(step - prev) <= rtol * max(size, np.linalg.norm(prev))
            if not same:
                segments.append((start, i))
                start = None
        if start is None:
            start = i
    if start is not None:
        segments.append((start, len(q) - 1))
    # a one-step "segment" whose step differs from both neighbours is a jump of the path
    return [(a, b) for a, b in segments if b - a >= 2 or len(segments) == 1]


def gamma_ends(qpoints: np.ndarray, segments: Sequence[tuple[int, int]],
               fraction: float = NEAR_GAMMA_FRACTION) -> list[tuple[int, np.ndarray]]:
    """For every segment end at Γ: (the Γ index, the indices of the ``fraction`` of the
    segment nearest to it, at least Γ and its neighbour)."""
    q = np.asarray(qpoints, dtype=float).reshape(-1, 3)
    at_gamma = np.abs(q).max(axis=1) < _GAMMA
    out = []
    for a, b in segments:
        n = b - a + 1
        w = max(2, math.ceil(fraction * n))
        if at_gamma[a]:
            out.append((a, np.arange(a, a + w)))
        if at_gamma[b]:
            out.append((b, np.arange(b - w + 1, b + 1)))
    return out


def gamma_only_frequencies(fc: ForceConstants, nac: NonAnalyticCorrection, qpoints: np.ndarray,
                           directions: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``base`` bands (n_q, 3m) with the Γ points that have a direction re-solved with the jump at
    Γ alone (:class:`~vgnn_core.phonons.nac.GammaJumpCorrection` of ``nac``'s charges; cm⁻¹)."""
    q = np.asarray(qpoints, dtype=float)
    directions = np.asarray(directions, dtype=float)
    rows = np.flatnonzero((np.abs(q).max(axis=1) < _GAMMA) & (np.linalg.norm(directions, axis=1) > 0))
    out = np.array(base, copy=True)
    if len(rows):
        jump = GammaJumpCorrection(nac.lattice, nac.frac_coords, nac.born, nac.epsilon, factor=nac.factor)
        out[rows] = band_frequencies([fc], [torch.as_tensor(q[rows])], nacs=[jump],
                                     q_directions=[directions[rows]])[0].numpy()
    return out


def material_rows(material: PathMaterial, fc: ForceConstants, predicted: BornCharges,
                  fraction: float = NEAR_GAMMA_FRACTION) -> dict:
    """Every metric of one material (see the module), for every variant of :data:`VARIANTS`."""
    fc = fc.cpu().to(torch.float64)
    s = material.structure
    lattice = np.asarray(s.lattice.matrix)
    q = material.qpoints
    true = material.bands
    segments = path_segments(q, lattice)
    dirs = path_q_directions(q, segments, lattice)
    qt = [torch.as_tensor(q)]
    nac_pred = NonAnalyticCorrection.from_born(s, predicted)
    nac_dfpt = NonAnalyticCorrection.from_born(s, material.dfpt)
    bands = {"none": band_frequencies([fc], qt)[0].numpy()}
    bands["predicted"] = band_frequencies([fc], qt, nacs=[nac_pred], q_directions=[dirs])[0].numpy()
    bands["dfpt"] = band_frequencies([fc], qt, nacs=[nac_dfpt], q_directions=[dirs])[0].numpy()
    bands["gamma_only"] = gamma_only_frequencies(fc, nac_pred, q, dirs, bands["none"])
    row: dict = {"material_id": material.material_id, "n_atoms": len(s), "max_born_e": material.max_born,
                 "polar": material.max_born > POLAR_BORN_THRESHOLD, "n_segments": len(segments)}
    ends = gamma_ends(q, segments, fraction)
    near = np.unique(np.concatenate([w for _, w in ends])) if ends else np.zeros(0, int)
    gam = np.array(sorted({g for g, _ in ends}), dtype=int)
    row["n_gamma_ends"] = len(ends)
    for v, pred in bands.items():
        err = np.abs(pred - true)
        row[f"mae_{v}"] = float(err.mean())
        row[f"near_gamma_mae_{v}"] = float(err[near].mean()) if len(near) else None
        row[f"gamma_end_mae_{v}"] = float(err[gam].mean()) if len(gam) else None
    if len(gam) and len(s) > 1:
        # the LO mode: what the DFPT-charge correction moves most at a Γ end of the path
        to_dfpt = band_frequencies([fc], [torch.zeros(1, 3, dtype=torch.float64)], nacs=[nac_dfpt])[0].numpy()[0]
        to_pred = band_frequencies([fc], [torch.zeros(1, 3, dtype=torch.float64)], nacs=[nac_pred])[0].numpy()[0]
        split = bands["dfpt"][gam] - to_dfpt[None]
        g_row, mode = np.unravel_index(np.argmax(split), split.shape)
        g = gam[g_row]
        row["lo_dfpt_path_cm1"] = float(true[g, mode])
        row["split_dfpt_cm1"] = float(split[g_row, mode])
        row["split_pred_cm1"] = float(bands["predicted"][g, mode] - to_pred[mode])
        for v, pred in bands.items():
            row[f"lo_error_{v}"] = float(pred[g, mode] - true[g, mode])
    return row


def iter_materials(ids: Iterable[str], archive: str | Path | None = None) -> list[PathMaterial]:
    """The :class:`PathMaterial` of ``ids`` (those with a dielectric block), in the order of ``ids``."""
    wanted = list(ids)
    keep = set(wanted)
    found: dict[str, PathMaterial] = {}
    for material_id, load in petretto._json_members(Path(archive or petretto.default_archive())):
        if material_id not in keep:
            continue
        data = load()
        record = petretto.parse_record(data)
        sample = dielectric_from_record(data, r_max=4.0)
        if sample is not None:
            found[material_id] = PathMaterial(material_id, record.structure, record.qpoints, record.bands,
                                              sample.charges)
        keep.discard(material_id)
        if not keep:
            break
    return [found[i] for i in wanted if i in found]


@torch.no_grad()
def evaluate(model: torch.nn.Module, born_model: torch.nn.Module, materials: Sequence[PathMaterial],
             batch_size: int = 16, fraction: float = NEAR_GAMMA_FRACTION, log=print) -> list[dict]:
    """:func:`material_rows` of every material: force constants from ``model`` (a k-MVN), Z*/ε∞
    from ``born_model`` (:class:`~vgnn_core.nn.born.BornModel`), both on the same batches."""
    model.eval()
    born_model.eval()
    dtype = next(model.parameters()).dtype
    rows: list[dict] = []
    started = time.time()
    for start in range(0, len(materials), batch_size):
        chunk = materials[start : start + batch_size]
        batch = collate([build_graph(m.structure, r_max=model.config.graph_cutoff) for m in chunk], dtype=dtype)
        fcs = model.force_constants(batch)
        charges = born_model.predict(batch)
        for m, fc, z in zip(chunk, fcs, charges):
            rows.append(material_rows(m, fc, z, fraction))
        log(f"{len(rows)}/{len(materials)} materials, {time.time() - started:.0f} s")
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize(rows: Sequence[dict]) -> dict:
    """Per group (``all``, ``polar``): means over materials of every metric and variant, the LO
    errors' mean |·| and median |·|, and the charge-splitting comparison."""
    out = {}
    for group, keep in (("all", lambda r: True), ("polar", lambda r: r["polar"])):
        chosen = [r for r in rows if keep(r)]
        lo = [r for r in chosen if "lo_error_none" in r]
        g: dict = {"n": len(chosen), "n_with_gamma_end": len(lo)}
        for v in VARIANTS:
            g[v] = {
                "band_mae": _mean([r[f"mae_{v}"] for r in chosen]),
                "near_gamma_mae": _mean([r[f"near_gamma_mae_{v}"] for r in chosen]),
                "gamma_end_mae": _mean([r[f"gamma_end_mae_{v}"] for r in chosen]),
                "lo_abs_error_mean": _mean([abs(r[f"lo_error_{v}"]) for r in lo]),
                "lo_abs_error_median": float(np.median([abs(r[f"lo_error_{v}"]) for r in lo])) if lo else None,
                "lo_error_mean_signed": _mean([r[f"lo_error_{v}"] for r in lo]),
            }
        g["split_dfpt_charges_mean_cm1"] = _mean([r["split_dfpt_cm1"] for r in lo])
        g["split_pred_charges_mean_cm1"] = _mean([r["split_pred_cm1"] for r in lo])
        out[group] = g
    return out


def table(summaries: dict[str, dict]) -> str:
    """A Markdown table of :func:`summarize` per split."""
    lines = ["| split | group | n | variant | band MAE | near-Γ MAE | Γ-end MAE | LO |err| mean / median | LO err signed |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    for split, summary in summaries.items():
        for group, g in summary.items():
            for v in VARIANTS:
                m = g[v]
                lines.append(f"| {split} | {group} | {g['n']} | {v} | {fmt(m['band_mae'])} | {fmt(m['near_gamma_mae'])} | "
                             f"{fmt(m['gamma_end_mae'])} | {fmt(m['lo_abs_error_mean'])} / {fmt(m['lo_abs_error_median'])} | "
                             f"{fmt(m['lo_error_mean_signed'])} |")
    return "\n".join(lines)


def run(out: str | Path, model_path: str | Path | None = None, splits: Sequence[str] = ("val", "test"),
        split_file: str | Path | None = None, log=print, born_heads: str | Path | None = None) -> dict:
    """The measurement on ``splits`` of Petretto: ``out/nac_eval.json`` (summaries and per-material
    rows) and ``out/nac_eval.md`` (the table). ``model_path``: a k-MVN checkpoint (default: the
    shipped ``kmvn``); the Born model is the heads of ``born_heads`` (default: the shipped heads)
    on its matching members."""
    from ..pretrained.registry import load_born_model, load_checkpoint, load_pretrained_model

    model = load_checkpoint(model_path) if model_path else load_pretrained_model("kmvn")
    born_model = load_born_model(model, heads_file=born_heads)
    split = petretto.load_split(split_file)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries, all_rows = {}, {}
    for name in splits:
        materials = iter_materials(split[name])
        log(f"{name}: {len(materials)} materials with DFPT charges")
        rows = evaluate(model, born_model, materials, log=log)
        summaries[name] = summarize(rows)
        all_rows[name] = rows
    (out / "nac_eval.json").write_text(json.dumps({"summaries": summaries, "rows": all_rows}, indent=1))
    (out / "nac_eval.md").write_text(table(summaries) + "\n")
    log(table(summaries))
    return summaries


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m vgnn_core.training.nac_eval OUT [MODEL.pt] [--splits val,test] [--born-heads HEADS.pt]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vgnn_core.training.nac_eval", description=run.__doc__)
    parser.add_argument("out", help="output folder (nac_eval.json, nac_eval.md)")
    parser.add_argument("model", nargs="?", help="k-MVN checkpoint (default: the shipped kmvn)")
    parser.add_argument("--splits", default="val,test", help="comma-separated Petretto splits (default: val,test)")
    parser.add_argument("--born-heads", help="Born heads file (default: the shipped heads)")
    args = parser.parse_args(argv)
    return run(args.out, args.model, splits=[s for s in args.splits.split(",") if s], born_heads=args.born_heads)


if __name__ == "__main__":
    main()
