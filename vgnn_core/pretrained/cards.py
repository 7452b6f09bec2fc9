"""Model cards: how a shipped checkpoint was trained and how well it does, for people.

A card is a JSON document (everything, with per-material rows) and its Markdown rendering.
:func:`vgnn_core.training.ship.ship` makes both; this module only reads runs and renders.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from ..nn.uncertainty import UncertaintyModel
from ..training.metrics import every_material_f1

PUBLISHED = {
    "kmvn": {"checkpoint": "kmvn_241026", "bands_mae_mean": 28.0, "bands_mae_median": 21.2, "bands_r2": 0.970,
             "bands_nmse": 0.0040, "acoustic_mean": 62.0, "acoustic_max": 249.0},
    "mvn": {"checkpoint": "mvn_241026", "gamma_mae_mean": 40.4, "gamma_mae_median": 31.9, "gamma_r2": 0.935,
            "gamma_nmse": 0.0101, "acoustic_mean": 39.0, "acoustic_max": 215.0},
}


def training_summary(run_dir: Path) -> dict:
    """Epochs, best epoch (by the run's own selection metric), wall time and hardware of a run;
    a run started from another run's checkpoint (``--init``) carries that run's summary too, and
    an ensemble (:func:`~vgnn_core.pretrained.registry.combine_runs`) carries each member's."""
    if (run_dir / "ensemble.json").is_file():
        members = [training_summary(Path(m)) for m in json.loads((run_dir / "ensemble.json").read_text())["members"]]
        return {"ensemble_of": members, "hardware": members[0]["hardware"],
                "wall_seconds": sum(_chain_seconds(m) for m in members)}
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    cfg = json.loads((run_dir / "train_config.json").read_text())
    key = f"val_{cfg.get('select_on', 'nmse')}"
    best = min(log, key=lambda r: r[key]) if log else {}
    summary = {
        "train_config": cfg,
        "epochs_run": len(log),
        "best_epoch": best.get("epoch"),
        "wall_seconds": float(sum(r["seconds"] for r in log)),
        "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} threads ({platform.platform()})",
    }
    parent = Path(cfg["init_from"]).parent if cfg.get("init_from") else None
    if parent is not None and (parent / "log.jsonl").is_file() and (parent / "train_config.json").is_file():
        summary["initialised_from"] = training_summary(parent)
    return summary


def _fmt(d: dict | None, key: str) -> str:
    if not d or key not in d:
        return "–"
    v = d[key]
    return f"{v['mean']:.1f} / {v['median']:.1f}" if isinstance(v, dict) else f"{v:.4f}"


def _chain_seconds(summary: dict) -> float:
    """Wall time of a run and of every run it was initialised from."""
    parent = summary.get("initialised_from")
    return summary["wall_seconds"] + (_chain_seconds(parent) if parent else 0.0)


def _training_lines(t: dict) -> list[str]:
    """Card lines on how a checkpoint was trained: one run and its parents, or each member."""
    if "ensemble_of" in t:
        lines = [f"- training: an ensemble of {len(t['ensemble_of'])} independently trained runs (force "
                 f"constants averaged), {t['wall_seconds'] / 60:.0f} min in all on {t['hardware']}"]
        for k, member in enumerate(t["ensemble_of"]):
            lines += [f"- member {k}: {member['epochs_run']} epochs (best {member['best_epoch']}), "
                      f"{member['wall_seconds'] / 60:.0f} min: `{json.dumps(member['train_config'])}`"]
            lines += ["  " + line for line in _parent_lines(member.get("initialised_from"))]
        return lines
    return [f"- training: {t['epochs_run']} epochs (best {t['best_epoch']}), "
            f"{t['wall_seconds'] / 60:.0f} min on {t['hardware']}",
            f"- optimisation: `{json.dumps(t['train_config'])}`",
            *_parent_lines(t.get("initialised_from"))]


def _parent_lines(parent: dict | None) -> list[str]:
    """Card lines for the run(s) a fine-tuned checkpoint started from, oldest last."""
    lines = []
    while parent:
        t = parent
        lines.append(f"- initialised from a run of {t['epochs_run']} epochs (best {t['best_epoch']}), "
                     f"{t['wall_seconds'] / 60:.0f} min: `{json.dumps(t['train_config'])}`")
        parent = t.get("initialised_from")
    return lines


def _trust_lines(card: dict) -> list[str]:
    """Instability detection, hydrogen-bearing materials and uncertainty, per split."""
    rows = []
    for split, m in card["metrics"].items():
        b, u = m.get("bands") or {}, m.get("uncertainty")
        ins, hyd, flag = b.get("instability"), b.get("mae_hydrogen"), b.get("likely_unstable")
        if not (ins or u or hyd):
            continue
        cells = [split]
        cells.append(f"{ins['precision']:.2f} / {ins['recall']:.2f} / {ins['f1']:.2f} ({ins['n_unstable']})" if ins else "–")
        cells.append(f"{flag['precision']:.2f} / {flag['recall']:.2f} / {flag['f1']:.2f} ({flag['n_predicted_unstable']} flagged)"
                     if flag else "–")
        cells.append(f"{hyd['mean']:.1f} ({hyd['n']})" if hyd else "–")
        cells.append(f"{u['spearman']:.2f}" if u else "–")
        cells.append(f"{u['top_mean_error']:.1f} / {u['rest_mean_error']:.1f} ({u['top_to_rest_ratio']:.1f}×)" if u else "–")
        cells.append(f"{u['mean_uncertainty']:.1f} / {u['mean_error']:.1f} ({100 * u['share_within_uncertainty']:.0f} % / "
                     f"{100 * u['share_within_twice_uncertainty']:.0f} %)" if u and "mean_error" in u else "–")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    if card.get("uncertainty_model"):
        how = (f" = {UncertaintyModel.from_dict(card['uncertainty_model']).describe()} (spread: the members' "
               "spread; ω_max: the highest frequency any member predicts where the spread is measured, cm⁻¹; "
               "[H]: 1 with hydrogen; n_prim: atoms in the primitive cell; [unstable]: 1 when a member "
               "predicts a mode below -5 cm⁻¹ there; fitted on the val splits pooled: their mean uncertainty = "
               "their mean MAE)")
    elif card.get("uncertainty_scale"):  # cards written before the uncertainty model
        how = f" = the members' spread × {card['uncertainty_scale']:.2f} (calibrated on val: mean uncertainty = mean MAE)"
    else:
        how = " = the members' spread (uncalibrated)"
    return ["", "## Instabilities, hydrogen, uncertainty", "",
            "Unstable = lowest ω on the path below −5 cm⁻¹; `likely_unstable` also counts any member alone "
            "below it at Γ and the 2×2×2 zone-boundary points. Uncertainty" + how
            + "; ranked against the actual per-material MAE.", "",
            "| split | instability precision / recall / F1 (n unstable) | `likely_unstable` precision / recall / F1 (n flagged) "
            "| H-bearing bands MAE (n) | Spearman(uncertainty, MAE) | MAE of the 10 % most uncertain / the rest "
            "| mean uncertainty / mean MAE (materials with MAE ≤ uncertainty / ≤ twice it) |",
            "|---|---|---|---|---|---|---|", *rows]


def _supercell_lines(card: dict) -> list[str]:
    """Band MAE and instability scores per size of the DFT supercell (phonondb splits)."""

    def prf(scores: dict | None) -> str:
        return f"{scores['precision']:.2f} / {scores['recall']:.2f} / {scores['f1']:.2f}" if scores else "–"

    rows = []
    for split, m in card["metrics"].items():
        for b in (m.get("bands") or {}).get("by_supercell_cells", []):
            ins = b["instability"]
            rows.append(f"| {split} | {b['cells']} | {b['n']} | {ins['n_unstable']} | {b['bands_mae']:.1f} | "
                        f"{prf(ins)} | {prf(b.get('likely_unstable'))} | "
                        f"{every_material_f1(ins['n_unstable'], b['n']):.2f} |")
    if not rows:
        return []
    return ["", "## Instabilities and the size of the DFT supercell", "",
            "A phonondb reference is exact at its supercell's commensurate q-points (one per primitive cell in "
            "the supercell); along the path between them it is phonopy's interpolation of that supercell's "
            "force constants. The phonondb rows above, by primitive cells in the DFT supercell (precision / "
            "recall / F1 of the bands' own minimum and of `likely_unstable`, and the F1 of calling every "
            "material unstable). Large crystals were computed in supercells of few cells, so the size of the "
            "supercell and the size of the crystal go together:", "",
            "| split | primitive cells in the supercell | n | n unstable (DFT) | bands MAE | instability | "
            "`likely_unstable` | flag every material |", "|---|---|---|---|---|---|---|---|", *rows]


def _twin_lines(card: dict) -> list[str]:
    """Metrics without the held-out materials that have a structural twin in the training data."""
    rows = []
    for split, m in card["metrics"].items():
        t = m.get("twin_free")
        if not t or not t.get("n_twins_left_out"):
            continue
        cells = [f"{t[k]:.1f}" if t.get(k) is not None and t[k] == t[k] else "–"  # an MVN has no bands
                 for k in ("bands_mae_mean", "gamma_mae_mean")]
        rows.append(f"| {split} | {t['n']} ({t['n_twins_left_out']} left out) | {cells[0]} | {cells[1]} |")
    if not rows:
        return []
    return ["", "## Without structural twins", "",
            "The splits are by material id; these rows leave out the held-out materials whose structure a "
            "training set also holds (`vgnn_core/training/twins.json`).", "",
            "| split | n | bands MAE mean | Γ MAE mean |", "|---|---|---|---|", *rows]


def render_markdown(card: dict) -> str:
    lines = [
        f"# Model card: `{card['name']}` ({card['kind'].upper()})",
        "",
        f"- file `{card['file']}`, {card['bytes'] / 1e6:.2f} MB, sha256 `{card['sha256']}`",
        f"- {card['parameters']:,} parameters"
        + (f" ({card['members']} members, each of this architecture)" if card.get("members", 1) > 1 else "")
        + f"; architecture: `{json.dumps(card['architecture'])}`",
        f"- data: {card['data']['source']}; split {card['data']['split']}",
        f"- targets: {card['data']['targets']}",
        *([f"- data: {card['data']['phonondb']['source']}; split {card['data']['phonondb']['split']} "
           f"(`{card['data']['phonondb']['split_file']}`)", f"- targets: {card['data']['phonondb']['targets']}"]
          if card["data"].get("phonondb") else []),
        *_training_lines(card["training"]),
        "",
        "## Metrics (cm⁻¹; MAE per material, mean / median)",
        "",
        "| split | n | bands MAE | bands R² | bands nMSE | Γ MAE | Γ R² | Γ nMSE | acoustic |ω(Γ)| mean / max | s / material |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, m in card["metrics"].items():
        b, g, a = m.get("bands"), m.get("gamma"), m["acoustic_gamma_cm1"]
        lines.append(
            f"| {split} | {m['n_materials']} | {_fmt(b, 'mae')} | {_fmt(b, 'r2')} | "
            f"{b['nmse']['mean']:.4f} | " if b else f"| {split} | {m['n_materials']} | – | – | – | "
        )
        lines[-1] += (
            f"{_fmt(g, 'mae')} | {_fmt(g, 'r2')} | {g['nmse']['mean']:.4f} | " if g else "– | – | – | "
        ) + f"{a['mean']:.2e} / {a['max']:.2e} | {m['seconds_per_material']:.4f} |"
    lines += _trust_lines(card) + _supercell_lines(card) + _twin_lines(card)
    pub = card.get("published_reference_test_subset")
    if pub:
        lines += ["", f"Published `{pub['checkpoint']}` on the same 66 reference materials: "
                  + ", ".join(f"{k} {v}" for k, v in pub.items() if k != "checkpoint")]
    heat = card["metrics"].get("test", {}).get("heat_capacity")
    if heat:
        lines += ["", "Heat capacity (the paper's third metric; `vgnn evaluate --model kmvn --split test "
                  "--heat-capacity`): C_v(T) from a Γ-centred q-mesh against the DFPT thermo block of the "
                  f"{heat['n_materials']} `test` materials that have one: relative error at 300 K "
                  f"{100 * heat['cv300_relative_error']['mean']:.1f} % mean, "
                  f"{100 * heat['cv300_relative_error']['median']:.1f} % median; C_v(T) MAE over 5–800 K "
                  f"{heat['cv_mae_J_K_mol']['mean']:.2f} / {heat['cv_mae_J_K_mol']['median']:.2f} J/K/mol "
                  "(mean / median, per formula unit)."]
    lines += ["", "## Limitations", ""] + [f"- {x}" for x in card["limitations"]] + [""]
    return "\n".join(lines)
