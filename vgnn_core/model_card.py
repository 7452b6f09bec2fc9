"""Model cards and shipping a trained checkpoint into the package.

``ship(run_dir, name)`` evaluates a run's ``best.pt`` on ``val``, ``test`` and
``reference_test_subset``, copies it to ``vgnn_core/checkpoints/<name>.pt``, records its sha256
in ``registry.json`` and writes ``<name>.card.json`` (everything, with per-material rows) and
``<name>.md`` (the human-readable card).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from .checkpoints import load_checkpoint
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


def data_sources(run_dir: Path) -> list[str]:
    """The training data of a run (``train_config.json``'s ``data``), or of every ensemble member."""
    if (run_dir / "ensemble.json").is_file():
        members = json.loads((run_dir / "ensemble.json").read_text())["members"]
        return sorted({d for m in members for d in data_sources(Path(m))})
    cfg = json.loads((run_dir / "train_config.json").read_text())
    return list(cfg.get("data", ["petretto2018"]))


def evaluate_splits(model, sources: list[str]) -> dict[str, dict]:
    """Evaluations keyed ``<split>`` (Petretto) and ``phonondb_<split>`` (path bands from the
    DFT force constants) for every source the model was trained on."""
    from . import phonondb

    split = load_split()
    cutoff = model.config.graph_cutoff
    evals = {s: evaluate(model, load_samples(split[s], r_max=cutoff)) for s in SPLITS}
    if model.supports_bands:  # C_v(T) on the test materials that have a DFPT thermo block
        records = list(iter_petretto(ids=split["test"]))
        evals["test"]["summary"]["heat_capacity"] = evaluate_heat_capacity(model, records)["summary"]
    if "phonondb" in sources:
        r_bond = model.config.r_bond or model.config.r_max
        db_split = phonondb.load_split()
        for s in ("val", "test"):
            samples = phonondb.load_samples(db_split[s], cutoff, r_bond, evaluation=True)
            evals[f"phonondb_{s}"] = evaluate(model, samples)
    return evals


def calibrate_uncertainty(val_evals: list[dict]) -> float | None:
    """The factor that turns an ensemble's spread into the expected per-material MAE.

    Chosen on validation materials only, so that the mean calibrated uncertainty equals the
    mean actual MAE there; ``None`` for a single network (no spread).
    """
    spread, error = [], []
    for ev in val_evals:
        key = ev["summary"].get("uncertainty", {}).get("error")
        for row in ev["materials"]:
            if key and key in row and "spread_cm1" in row:
                spread.append(row["spread_cm1"])
                error.append(row[key])
    if not spread or sum(spread) <= 0:
        return None
    return float(sum(error) / sum(spread))


def training_domain(sources: list[str], cutoff: float, r_bond: float) -> dict:
    """The :class:`~vgnn_core.domain.TrainingDomain` of the training splits of ``sources``."""
    from . import phonondb
    from .domain import TrainingDomain

    graphs = []
    if "petretto2018" in sources:
        graphs += [s.graph for s in load_samples(load_split()["train"], r_max=cutoff)]
    if "phonondb" in sources:
        graphs += [s.graph for s in phonondb.load_samples(phonondb.load_split()["train"], cutoff, r_bond)]
    return TrainingDomain.from_graphs(graphs).to_dict()


def ship(run_dir: str | Path, name: str, dest: Path = CHECKPOINT_DIR) -> dict:
    """Evaluate and install ``run_dir/best.pt`` as the shipped checkpoint ``name``.

    An ensemble's uncertainty is calibrated on the validation splits, and the training domain
    is recorded; both travel in the checkpoint's metadata.
    """
    from .checkpoints import save_checkpoint

    run_dir = Path(run_dir)
    model = load_checkpoint(run_dir / "best.pt")
    sources = data_sources(run_dir)
    evals = evaluate_splits(model, sources)
    scale = calibrate_uncertainty([evals[k] for k in ("val", "phonondb_val") if k in evals])
    for ev in evals.values():
        if scale is not None and "uncertainty" in ev["summary"]:
            ev["summary"]["uncertainty"]["scale"] = scale
            for row in ev["materials"]:
                row["uncertainty_cm1"] = scale * row["spread_cm1"]
    metadata = dict(model.checkpoint_metadata)
    metadata["domain"] = training_domain(sources, model.config.graph_cutoff, model.config.r_bond or model.config.r_max)
    if scale is not None:
        metadata["uncertainty_scale"] = scale
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}.pt"
    digest = save_checkpoint(model, target, metadata)
    registry_path = dest / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[name] = {"file": target.name, "sha256": digest}
    registry_path.write_text(json.dumps(registry, indent=1, sort_keys=True) + "\n")
    split = load_split()
    data = {
        "source": "Petretto et al., Sci. Data 5, 180065 (2018), doi:10.6084/m9.figshare.c.3938023",
        "split": {s: len(v) for s, v in split.items()},
        "targets": "k-MVN: every q-point of the stored path; MVN/VVN: the first Γ point of the path "
                   "(materials whose path has no Γ point are left out of Γ training and metrics)",
        "training_data": sources,
    }
    if "phonondb" in sources:
        from . import phonondb

        data["phonondb"] = {
            "source": "A. Togo, phonondb (ph20180417, VASP PBEsol finite displacements), CC BY 4.0; "
                      "Togo & Tanaka, Scr. Mater. 108, 1 (2015)",
            "split": {s: len(v) for s, v in phonondb.load_split().items()},
            "split_file": "vgnn_core/phonondb_split.json",
            "targets": "frequencies at the q-points commensurate with each supercell, and force-constant "
                       "blocks of the bonds whose shortest supercell image is unique within r_bond "
                       "(training); path bands interpolated by phonopy from the DFT force constants, "
                       "without NAC (evaluation)",
        }
    card = {
        "name": name,
        "kind": model.kind,
        "file": target.name,
        "sha256": digest,
        "bytes": target.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "members": len(getattr(model, "members", ())) or 1,
        "architecture": model.config.to_dict(),
        "data": data,
        "training": training_summary(run_dir),
        "metrics": {s: ev["summary"] for s, ev in evals.items()},
        "uncertainty_scale": scale,
        "domain": {"elements": len(metadata["domain"]["elements"]), "max_atoms": metadata["domain"]["max_atoms"],
                   "bond_pairs": len(metadata["domain"]["bond_pairs"])},
        "published_reference_test_subset": PUBLISHED.get(model.kind),
        "limitations": limitations(sources, model.config.full_blocks),
        "per_material": {s: evals[s]["materials"] for s in evals if s.endswith("test") or s == "reference_test_subset"},
    }
    (dest / f"{name}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    (dest / f"{name}.md").write_text(render_markdown(card))
    return card


def limitations(sources: list[str], full_blocks: bool) -> list[str]:
    """The card's limitations for a model trained on ``sources``."""
    data = ("Trained on 1,229 Petretto (ABINIT, PBEsol) materials with 2-40 atoms"
            + (" and 8,580 phonondb (VASP, PBEsol) materials with up to 200 atoms per primitive cell"
               if "phonondb" in sources else "")
            + "; elements or bonding absent from that data (see `in_domain`), and strongly anharmonic "
              "cells, are extrapolation.")
    blocks = ("Force-constant blocks are whole 3x3 matrices (antisymmetric part divergence-free) and vanish "
              "beyond the bond cutoff r_bond." if full_blocks else
              "Force-constant blocks are symmetric 3x3 tensors and vanish beyond the bond cutoff r_bond.")
    return [LIMITATIONS[0], data, blocks]


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
        ins, hyd = b.get("instability"), b.get("mae_hydrogen")
        if not (ins or u or hyd):
            continue
        cells = [split]
        cells.append(f"{ins['precision']:.2f} / {ins['recall']:.2f} / {ins['f1']:.2f} ({ins['n_unstable']})" if ins else "–")
        cells.append(f"{hyd['mean']:.1f} ({hyd['n']})" if hyd else "–")
        cells.append(f"{u['spearman']:.2f}" if u else "–")
        cells.append(f"{u['top_mean_error']:.1f} / {u['rest_mean_error']:.1f} ({u['top_to_rest_ratio']:.1f}×)" if u else "–")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    scale = card.get("uncertainty_scale")
    return ["", "## Instabilities, hydrogen, uncertainty", "",
            "Unstable = lowest ω on the path below −5 cm⁻¹. Uncertainty = the members' spread"
            + (f" × {scale:.2f} (calibrated on val: mean uncertainty = mean MAE)" if scale else "")
            + "; ranked against the actual per-material MAE.", "",
            "| split | instability precision / recall / F1 (n unstable) | H-bearing bands MAE (n) | "
            "Spearman(uncertainty, MAE) | MAE of the 10 % most uncertain / the rest |",
            "|---|---|---|---|---|", *rows]


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
    lines += _trust_lines(card)
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
