"""Model cards and shipping a trained checkpoint into the package.

``ship(run_dir, name)`` evaluates a run's ``best.pt`` on ``val``, ``test`` and
``reference_test_subset``, copies it to ``vgnn_core/checkpoints/<name>.pt``, records its sha256
in ``registry.json`` and writes ``<name>.card.json`` (everything, with per-material rows) and
``<name>.md`` (the human-readable card).
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import torch

from .checkpoints import load_checkpoint, sha256_file
from .dataset import iter_petretto, load_samples, load_split
from .evaluation import evaluate, evaluate_heat_capacity

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
SPLITS = ("val", "test", "reference_test_subset")

#: The published VGNN checkpoints on the 66 ``reference_test_subset`` materials (issue tracker).
PUBLISHED = {
    "kmvn": {"checkpoint": "kmvn_241026", "bands_mae_mean": 28.0, "bands_mae_median": 21.2, "bands_r2": 0.970,
             "bands_nmse": 0.0040, "acoustic_mean": 62.0, "acoustic_max": 249.0},
    "mvn": {"checkpoint": "mvn_241026", "gamma_mae_mean": 40.4, "gamma_mae_median": 31.9, "gamma_r2": 0.935,
            "gamma_nmse": 0.0101, "acoustic_mean": 39.0, "acoustic_max": 215.0},
}

LIMITATIONS = [
    "No long-range (non-analytic) term: LO-TO splitting of polar crystals is not modelled; the "
    "Γ target is the first Γ point of each DFPT path, whose LO-TO split follows that path direction.",
    "Trained on 1,229 Petretto (ABINIT, PBEsol) materials with 2-40 atoms; elements or bonding "
    "absent from that set, and much larger or strongly anharmonic cells, are extrapolation.",
    "Force-constant blocks are symmetric 3x3 tensors and vanish beyond the bond cutoff r_bond.",
]


def training_summary(run_dir: Path) -> dict:
    """Epochs, best epoch (by the run's own selection metric), wall time and hardware of a run;
    a run started from another run's checkpoint (``--init``) carries that run's summary too, and
    an ensemble (:func:`~vgnn_core.checkpoints.combine_runs`) carries each member's."""
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


def ship(run_dir: str | Path, name: str, dest: Path = CHECKPOINT_DIR) -> dict:
    """Evaluate and install ``run_dir/best.pt`` as the shipped checkpoint ``name``."""
    run_dir = Path(run_dir)
    model = load_checkpoint(run_dir / "best.pt")
    split = load_split()
    evals = {s: evaluate(model, load_samples(split[s], r_max=model.config.graph_cutoff)) for s in SPLITS}
    if model.supports_bands:  # C_v(T) on the test materials that have a DFPT thermo block
        records = list(iter_petretto(ids=split["test"]))
        evals["test"]["summary"]["heat_capacity"] = evaluate_heat_capacity(model, records)["summary"]
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}.pt"
    shutil.copyfile(run_dir / "best.pt", target)
    digest = sha256_file(target)
    registry_path = dest / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[name] = {"file": target.name, "sha256": digest}
    registry_path.write_text(json.dumps(registry, indent=1, sort_keys=True) + "\n")
    card = {
        "name": name,
        "kind": model.kind,
        "file": target.name,
        "sha256": digest,
        "bytes": target.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "members": len(getattr(model, "members", ())) or 1,
        "architecture": model.config.to_dict(),
        "data": {
            "source": "Petretto et al., Sci. Data 5, 180065 (2018), doi:10.6084/m9.figshare.c.3938023",
            "split": {s: len(v) for s, v in split.items()},
            "targets": "k-MVN: every q-point of the stored path; MVN/VVN: the first Γ point of the path "
                       "(materials whose path has no Γ point are left out of Γ training and metrics)",
        },
        "training": training_summary(run_dir),
        "metrics": {s: evals[s]["summary"] for s in SPLITS},
        "published_reference_test_subset": PUBLISHED.get(model.kind),
        "limitations": LIMITATIONS,
        "per_material": {s: evals[s]["materials"] for s in ("test", "reference_test_subset")},
    }
    (dest / f"{name}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    (dest / f"{name}.md").write_text(render_markdown(card))
    return card


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
