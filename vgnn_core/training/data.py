"""Training data: the samples of every source a :class:`~vgnn_core.training.train.TrainConfig` names."""

from __future__ import annotations

from pathlib import Path

from ..nn.config import VGNNConfig
from . import petretto, phonondb
from .samples import PhononSample
from .train import TrainConfig

#: The training data sources ``TrainConfig.data`` may name.
DATA_SOURCES = ("petretto2018", "phonondb")


def training_data(cfg: TrainConfig, split_file: str | Path | None = None) -> tuple[list[PhononSample], list[PhononSample]]:
    """(train, val) samples of every source in ``cfg.data``, each source's own fixed split.

    Petretto: DFPT path bands. phonondb: commensurate frequencies and force-constant blocks
    for training, DFT path bands for validation (prepare them once with
    :func:`vgnn_core.training.phonondb.prepare_targets`).
    """
    unknown = sorted(set(cfg.data) - set(DATA_SOURCES))
    if unknown or not cfg.data:
        raise ValueError(f"unknown training data {unknown or cfg.data}; known: {list(DATA_SOURCES)}")
    model_cfg = VGNNConfig.from_dict(cfg.model)
    r_max = model_cfg.graph_cutoff
    train_s: list[PhononSample] = []
    val_s: list[PhononSample] = []
    if "petretto2018" in cfg.data:
        split = petretto.load_split(split_file)
        train_s += petretto.load_samples(split["train"], r_max=r_max)
        val_s += petretto.load_samples(split["val"], r_max=r_max)
    if "phonondb" in cfg.data:
        r_bond = model_cfg.r_bond or model_cfg.r_max
        split = phonondb.load_split()
        train_s += phonondb.load_samples(split["train"], r_max, r_bond)
        val_s += phonondb.load_samples(split["val"], r_max, r_bond, evaluation=True)
    return train_s, val_s
