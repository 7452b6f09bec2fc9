"""Shipping a trained run: evaluate it, calibrate its uncertainty, record its domain, write
the checkpoint, its sha256 in ``registry.json`` and its model card into a folder.

``ship(run_dir, name, dest)`` evaluates ``run_dir/best.pt`` on Petretto ``val``, ``test`` and
``reference_test_subset`` (and phonondb ``val`` / ``test`` when it trained on them) and writes
``dest/<name>.pt``, ``<name>.card.json`` (everything, with per-material rows) and ``<name>.md``.
``vgnn ship`` points ``dest`` at the source tree's ``vgnn_core/pretrained/checkpoints``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_text_atomic
from ..nn.uncertainty import UncertaintyModel
from ..pretrained.cards import PUBLISHED, render_markdown, training_summary
from ..pretrained.registry import load_checkpoint, save_checkpoint
from . import phonondb
from .domain import training_domain_of
from .evaluation import error_predictors, evaluate, evaluate_heat_capacity, score_uncertainty
from .petretto import iter_petretto, load_samples, load_split
from .twins import load_twins

SPLITS = ("val", "test", "reference_test_subset")

LIMITATIONS = [
    "The force constants have no non-analytic term: without `nac` the LO-TO jump of polar crystals "
    "at Γ is missing (the Γ target is the first Γ point of each DFPT path, split along that path); "
    "`nac=True` adds it from the Born heads (`born_heads.md`; the jump at Γ alone), metals excluded.",
    "Trained on 1,229 Petretto (ABINIT, PBEsol) materials with 2-40 atoms; elements or bonding "
    "absent from that set, and much larger or strongly anharmonic cells, are extrapolation.",
    "Force-constant blocks are symmetric 3x3 tensors and vanish beyond the bond cutoff r_bond.",
]


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
        # the supercell's commensurate q-points: exact for the DFT data (no interpolation)
        samples = phonondb.load_samples(db_split["test"], cutoff, r_bond, evaluation=False)
        evals["phonondb_test_commensurate"] = evaluate(model, samples)
    for key, ev in evals.items():
        ev["summary"]["twin_free"] = twin_free_summary(key, ev["materials"])
    return evals


def twin_free_summary(key: str, rows: list[dict]) -> dict:
    """Mean per-material MAE without the held-out materials that have a structural twin in the
    training data (:mod:`~vgnn_core.training.twins`)."""
    source, split = ("phonondb", key.split("_")[1]) if key.startswith("phonondb_") else ("petretto2018", key)
    twins = load_twins().get(source, {}).get(split, {})
    kept = [r for r in rows if r["material_id"] not in twins]
    out: dict = {"n": len(kept), "n_twins_left_out": len(rows) - len(kept)}
    for metric in ("bands_mae", "gamma_mae"):
        values = [r[metric] for r in kept if metric in r]
        if values:
            out[f"{metric}_mean"] = float(sum(values) / len(values))
    return out


def calibrate_uncertainty(val_evals: list[dict]) -> UncertaintyModel | None:
    """The :class:`~vgnn_core.nn.uncertainty.UncertaintyModel` that turns an ensemble's agreement
    into the expected per-material MAE.

    Fitted on validation materials only (every split given, pooled), so that the mean uncertainty
    equals the mean actual MAE there; ``None`` for a single network (no spread).
    """
    rows = []
    for ev in val_evals:
        key = ev["summary"].get("uncertainty", {}).get("error")
        rows += [(r, r[key]) for r in ev["materials"] if key and key in r and "spread_cm1" in r and r[key] > 0]
    if not rows or sum(r["spread_cm1"] for r, _ in rows) <= 0:
        return None
    return UncertaintyModel.fit([error_predictors(r) for r, _ in rows], [e for _, e in rows])


def ship(run_dir: str | Path, name: str, dest: str | Path) -> dict:
    """Evaluate and install ``run_dir/best.pt`` as the shipped checkpoint ``name``.

    An ensemble's uncertainty is calibrated on the validation splits, and the training domain
    is recorded; both travel in the checkpoint's metadata.
    """

    run_dir, dest = Path(run_dir), Path(dest)
    model = load_checkpoint(run_dir / "best.pt")
    sources = data_sources(run_dir)
    evals = evaluate_splits(model, sources)
    expected_error = calibrate_uncertainty([evals[k] for k in ("val", "phonondb_val") if k in evals])
    for ev in evals.values():
        if expected_error is not None and "uncertainty" in ev["summary"]:
            ev["summary"]["uncertainty"] = score_uncertainty(ev["materials"], ev["summary"]["uncertainty"]["error"],
                                                             expected_error)
    metadata = dict(model.checkpoint_metadata)
    for old in ("uncertainty_scale", "uncertainty_model"):  # a re-shipped checkpoint: the new fit replaces it
        metadata.pop(old, None)
    metadata["domain"] = training_domain_of(sources, model.config.graph_cutoff, model.config.r_bond or model.config.r_max)
    if expected_error is not None:
        metadata["uncertainty_model"] = expected_error.to_dict()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}.pt"
    digest = save_checkpoint(model, target, metadata)
    registry_path = dest / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[name] = {"file": target.name, "sha256": digest}
    write_text_atomic(registry_path, json.dumps(registry, indent=1, sort_keys=True) + "\n")
    split = load_split()
    data = {
        "source": "Petretto et al., Sci. Data 5, 180065 (2018), doi:10.6084/m9.figshare.c.3938023",
        "split": {s: len(v) for s, v in split.items()},
        "targets": "k-MVN: every q-point of the stored path; MVN/VVN: the first Γ point of the path "
                   "(materials whose path has no Γ point are left out of Γ training and metrics)",
        "training_data": sources,
    }
    if "phonondb" in sources:
        data["phonondb"] = {
            "source": "A. Togo, phonondb (ph20180417, VASP PBEsol finite displacements), CC BY 4.0; "
                      "Togo & Tanaka, Scr. Mater. 108, 1 (2015)",
            "split": {s: len(v) for s, v in phonondb.load_split().items()},
            "split_file": "vgnn_core/training/phonondb_split.json",
            "targets": "frequencies at the q-points commensurate with each supercell, and force-constant "
                       "blocks of the bonds whose shortest supercell image is unique within r_bond and "
                       "shares its supercell pair with no other bond within r_bond (training); path bands "
                       "interpolated by phonopy from the DFT force constants, without NAC (evaluation; "
                       "`phonondb_test_commensurate`: the exact commensurate frequencies)",
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
        "uncertainty_model": expected_error.to_dict() if expected_error is not None else None,
        "domain": {"elements": len(metadata["domain"]["elements"]), "max_atoms": metadata["domain"]["max_atoms"],
                   "bond_pairs": len(metadata["domain"]["bond_pairs"])},
        "published_reference_test_subset": PUBLISHED.get(model.kind),
        "limitations": limitations(sources, model.config.full_blocks),
        "per_material": {s: evals[s]["materials"] for s in evals if s.endswith("test") or s == "reference_test_subset"},
    }
    write_text_atomic(dest / f"{name}.card.json", json.dumps(card, indent=1) + "\n")
    write_text_atomic(dest / f"{name}.md", render_markdown(card))
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


