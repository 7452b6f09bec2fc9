"""Shipped checkpoints: the registry (sha256-verified loading) and model cards."""

from .registry import (
    ChecksumError,
    PretrainedNotAvailableError,
    combine_runs,
    load_checkpoint,
    load_pretrained_model,
    save_checkpoint,
    shipped_checkpoints,
)

__all__ = ["ChecksumError", "PretrainedNotAvailableError", "combine_runs", "load_checkpoint",
           "load_pretrained_model", "save_checkpoint", "shipped_checkpoints"]
