"""Training VGNN models on Petretto's DFPT bands and/or Togo's phonondb force sets, resumable and
fully seeded.

Fit on ``train``, select on ``val`` (early stopping, best checkpoint), never look at ``test``.
Every epoch writes ``last.pt`` (model, optimiser, schedule, epoch, history) so a killed run
resumes exactly, ``best.pt`` (the model alone, in the shipped checkpoint format) when the
validation loss improves, and one JSON line per epoch to ``log.jsonl``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..crystal.graph import collate
from ..files import atomic_write, write_text_atomic
from ..nn.config import VGNNConfig
from ..nn.model import Model, make_model
from ..phonons.dynamical_matrix import band_frequencies, gamma_frequencies
from ..phonons.units import EV_ANGSTROM2_AMU_TO_CM1
from ..pretrained.registry import save_checkpoint
from .evaluation import evaluate
from .loss import LOSSES, MAE_SCALE_CM1
from .samples import PhononSample
from .weights import WeightAverage, warm_start


@dataclass
class TrainConfig:
    """Optimisation settings (the architecture lives in :class:`VGNNConfig`)."""

    epochs: int = 120
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-5
    warmup_epochs: float = 2.0
    final_lr_ratio: float = 0.02
    grad_clip: float = 10.0
    #: k-MVN: q-points drawn per material per step (Γ always included); 0 = all of them
    q_per_material: int = 32
    patience: int = 40
    #: exponential moving average of the weights (0 = off); validation and checkpoints use it
    ema_decay: float = 0.0
    #: validation metric that selects the best epoch: "mae" (cm⁻¹, the reported metric) or "nmse"
    select_on: str = "nmse"
    #: training loss: "nmse" (the paper's) or "mae" (per-material MAE in cm⁻¹; see vgnn_core.training.loss)
    loss: str = "nmse"
    #: validate on every n-th q-point of each path (1 = all); see validation_score
    val_q_stride: int = 1
    #: k-MVN: weight of the force-constant block loss (samples with DFT blocks; see block_error_cm1)
    block_weight: float = 1.0
    #: training data: "petretto2018" (DFPT path bands) and / or "phonondb" (Togo's force sets)
    data: list = field(default_factory=lambda: ["petretto2018"])
    seed: int = 0
    device: str = "cpu"
    model: dict = field(default_factory=lambda: {"kind": "kmvn"})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of ``d``; an unknown key is an error that names the known ones."""
        d = {k: v for k, v in d.items() if k != "init_from"}  # recorded beside the settings by train()
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {', '.join(cls.__dataclass_fields__)}")
        cfg = cls(**d)
        VGNNConfig.from_dict(cfg.model)  # the architecture is checked as strictly
        return cfg


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_ratio`` at the last epoch."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def usable(samples: Sequence[PhononSample], model: Model) -> list[PhononSample]:
    """Samples with the target this model needs (Γ for MVN / VVN)."""
    return [s for s in samples if model.supports_bands or s.gamma is not None]


def batch_loss(model: Model, chunk: Sequence[PhononSample], rng: np.random.Generator, cfg: TrainConfig) -> torch.Tensor:
    """The ``cfg.loss`` of one batch (k-MVN on a random subset of each path's q-points)."""
    loss_fn = LOSSES[cfg.loss]
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    batch = collate([s.graph for s in chunk], dtype=dtype, device=device)
    if not model.has_force_constants:
        preds = model.gamma_frequencies(batch)
        return loss_fn(preds, [torch.as_tensor(s.gamma, device=device) for s in chunk])
    fcs = model.force_constants(batch)  # float64
    if not model.supports_bands:
        preds = gamma_frequencies(fcs)
        return loss_fn(preds, [torch.as_tensor(s.gamma, device=device) for s in chunk])
    qs, targets = [], []
    for s in chunk:
        idx = np.arange(len(s.qpoints))
        if cfg.q_per_material and len(idx) > cfg.q_per_material:
            idx = np.sort(rng.choice(idx, cfg.q_per_material, replace=False))
        qs.append(torch.as_tensor(s.qpoints[idx], device=device))
        targets.append(torch.as_tensor(s.bands[idx], device=device))
    loss = loss_fn(band_frequencies(fcs, qs), targets)
    with_blocks = [(fc, s) for fc, s in zip(fcs, chunk) if s.block_edges is not None and len(s.block_edges)]
    if cfg.block_weight and with_blocks:
        errors = [block_error_cm1(fc, s.block_edges, s.block_values) for fc, s in with_blocks]
        loss = loss + cfg.block_weight * torch.stack(errors).mean() / MAE_SCALE_CM1
    return loss


#: Frequency (cm⁻¹) at which a block error is turned into a frequency error, δω ≈ δλ / 2ω.
BLOCK_ERROR_FREQUENCY_CM1 = 300.0


def block_error_cm1(fc, edges: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """Mean |Φ_pred − Φ_DFT| / √(M_i M_j) of a crystal's supervised bonds, as a frequency (cm⁻¹).

    The mass-weighted error δλ (eV/Å²/amu) is expressed as the shift δω = δλ·C² / 2ω̄ it
    would cause on a mode at ω̄ = :data:`BLOCK_ERROR_FREQUENCY_CM1`, so the block loss is on
    the scale of the frequency loss and light atoms (hydrogen) weigh as much as their modes do.
    ``edges`` index the crystal's graph edges, the first entries of ``fc`` (off-site bonds).
    """
    edges_t = torch.as_tensor(edges, device=fc.blocks.device)
    target = torch.as_tensor(values, dtype=fc.blocks.dtype, device=fc.blocks.device)
    weighted = fc.mass_weighted_blocks()[edges_t]
    inv_sqrt = torch.rsqrt(fc.masses[fc.src[edges_t]] * fc.masses[fc.dst[edges_t]]).to(target.dtype)
    delta = (weighted - target * inv_sqrt[:, None, None]).abs().mean()
    return delta * EV_ANGSTROM2_AMU_TO_CM1**2 / (2.0 * BLOCK_ERROR_FREQUENCY_CM1)


def validation_score(model: Model, samples: Sequence[PhononSample], q_stride: int = 1) -> dict:
    """val MAE and nMSE: the mean over data sources of each source's per-material mean.

    With one source this is that source's mean; with Petretto and phonondb both count equally,
    whatever their sizes. Each source's own numbers are recorded too (``val_mae_<source>``).
    """
    key = "bands" if model.supports_bands else "gamma"
    samples = thinned(samples, q_stride)
    sources = sorted({s.source for s in samples})
    out: dict = {}
    for source in sources:
        res = evaluate(model, [s for s in samples if s.source == source])["summary"]
        out[f"val_nmse_{source}"] = res[key]["nmse"]["mean"]
        out[f"val_mae_{source}"] = res[key]["mae"]["mean"]
    out["val_nmse"] = float(np.mean([out[f"val_nmse_{s}"] for s in sources]))
    out["val_mae"] = float(np.mean([out[f"val_mae_{s}"] for s in sources]))
    return out


def thinned(samples: Sequence[PhononSample], q_stride: int) -> list[PhononSample]:
    """Samples keeping every ``q_stride``-th q-point (and Γ, the first point of the path)."""
    if q_stride <= 1:
        return list(samples)
    from dataclasses import replace

    out = []
    for s in samples:
        keep = np.zeros(len(s.qpoints), dtype=bool)
        keep[::q_stride] = True
        out.append(replace(s, qpoints=s.qpoints[keep], bands=s.bands[keep]))
    return out


def train(
    train_samples: Sequence[PhononSample],
    val_samples: Sequence[PhononSample],
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: Callable[[str], None] | None = print,
    init_from: str | Path | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train until ``cfg.epochs`` or early stopping; returns the final state summary.

    ``stop_after`` ends this call after that epoch of the schedule (the learning-rate schedule
    still spans ``cfg.epochs``); ``resume=True`` continues from there.

    ``init_from`` starts from another checkpoint's weights (e.g. an MVN fine-tuned on Γ from a
    k-MVN trained on bands: the two have the same parameters).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = make_model(VGNNConfig.from_dict(cfg.model)).to(cfg.device)
    if init_from is not None and not resume:
        from ..pretrained.registry import load_checkpoint

        warm_start(model, load_checkpoint(init_from), str(init_from))
    train_s, val_s = usable(train_samples, model), usable(val_samples, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_s) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg))
    if cfg.select_on not in ("mae", "nmse"):
        raise ValueError(f"select_on must be 'mae' or 'nmse', not {cfg.select_on!r}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, not {cfg.loss!r}")
    if cfg.block_weight and cfg.loss != "mae" and any(s.block_edges is not None for s in train_s):
        raise ValueError("the force-constant block loss is on the scale of the mae loss (cm⁻¹); train with "
                         "--loss mae, or --block-weight 0 with the nmse loss")
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": -1, "stale": 0}
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = torch.load(last, map_location=cfg.device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        if ema is not None and "ema" in ckpt:
            ema.shadow = ckpt["ema"]
        if progress:
            progress(f"resumed from {last} after epoch {state['epoch']}")
    recorded = {**asdict(cfg), **({"init_from": str(init_from)} if init_from is not None else {})}
    if resume and state["epoch"] and (out / "train_config.json").is_file():
        # resumed with other settings (e.g. a shorter schedule): the earlier ones stay on record
        before = json.loads((out / "train_config.json").read_text())
        history = before.pop("resumed", [])
        if before != recorded:
            history.append({"until_epoch": state["epoch"], "config": before})
        if history:
            recorded["resumed"] = history
    write_text_atomic(out / "train_config.json", json.dumps(recorded, indent=1))
    log = open(out / "log.jsonl", "a")
    try:
        end = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
        while state["epoch"] < end and state["stale"] < cfg.patience:
            epoch = state["epoch"]
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(len(train_s))
            model.train()
            t0 = time.perf_counter()
            losses = []
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       disable=not (progress and sys.stderr.isatty()))
            for b in bar:
                chunk = [train_s[k] for k in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
                loss = batch_loss(model, chunk, rng, cfg)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                if torch.isfinite(grad_norm):
                    optimizer.step()
                    if ema is not None:
                        ema.update(model)
                scheduler.step()
                losses.append(loss.detach().item())
                bar.set_postfix(loss=f"{np.mean(losses):.5f}")
                if progress and bar.disable and (b + 1) % max(1, steps_per_epoch // 4) == 0:
                    progress(f"  epoch {epoch + 1} step {b + 1}/{steps_per_epoch} loss {np.mean(losses):.5f}")
            scored = ema.averaged(model) if ema is not None else model
            val = validation_score(scored, val_s, cfg.val_q_stride)
            record = {
                "epoch": epoch + 1, f"train_{cfg.loss}": float(np.mean(losses)), **val,
                "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
            }
            state["epoch"] = epoch + 1
            score = val[f"val_{cfg.select_on}"]
            if score < state["best_val"]:
                state.update(best_val=score, best_epoch=epoch + 1, stale=0)
                save_checkpoint(scored, out / "best.pt", metadata={"epoch": epoch + 1, **val})
            else:
                state["stale"] += 1
            snapshot = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state}
            if ema is not None:
                snapshot["ema"] = ema.shadow
            atomic_write(last, lambda fh, snap=snapshot: torch.save(snap, fh))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if progress:
                progress(
                    f"epoch {epoch + 1}/{cfg.epochs} train {cfg.loss} {record[f'train_{cfg.loss}']:.5f} val nmse "
                    f"{val['val_nmse']:.5f} val MAE {val['val_mae']:.2f} cm-1 ({record['seconds']:.0f} s)"
                )
    finally:
        log.close()
    return state
