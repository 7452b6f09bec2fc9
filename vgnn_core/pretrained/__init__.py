"""Shipped checkpoints: the registry (sha256-verified loading) and model cards."""

from .._lazy import lazy

#: public name → the module that defines it (imported on first use: no torch at ``import``)
_EXPORTS = {
    "ChecksumError": ".registry",
    "PretrainedNotAvailableError": ".registry",
    "combine_runs": ".registry",
    "load_checkpoint": ".registry",
    "load_pretrained_model": ".registry",
    "save_checkpoint": ".registry",
    "shipped_checkpoints": ".registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
